{{/*
The name of the DaskCluster and of everything else: at most 53 characters, because the
operator names the scheduler Service "<name>-scheduler" and Kubernetes names stop at 63.
*/}}
{{- define "morphml.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 53 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 53 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 53 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "morphml.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "morphml.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
The Secret the workers read their S3 credentials from: the user's, the chart's, or none ("").
*/}}
{{- define "morphml.secretName" -}}
{{- $s3 := .Values.store.s3 -}}
{{- if $s3.existingSecret -}}
{{- $s3.existingSecret -}}
{{- else if or $s3.accessKeyId $s3.secretAccessKey -}}
{{- printf "%s-s3-credentials" (include "morphml.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
Environment variables of both containers: the store's URL, then `env` (sorted by name).
*/}}
{{- define "morphml.sharedEnv" -}}
{{- if .Values.store.url }}
- name: DASK_MORPHML__STORE
  value: {{ .Values.store.url | quote }}
{{- end }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/*
The scheduler's route modules as Python reads them (dask.config parses the variable with
ast.literal_eval), written as morphml_dask.deploy.kubernetes_spec writes them.
*/}}
{{- define "morphml.schedulerEnv" -}}
{{- include "morphml.sharedEnv" . }}
{{- with .Values.scheduler.httpRoutes }}
{{- $quoted := list }}
{{- range . }}
{{- $quoted = append $quoted (squote .) }}
{{- end }}
- name: DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES
  value: {{ printf "[%s]" (join ", " $quoted) | quote }}
{{- end }}
{{- end -}}

{{/*
The workers' variables: the shared ones and the credentials, by reference to the Secret
(s3fs, through botocore, reads them; AWS_ENDPOINT_URL may be missing).
*/}}
{{- define "morphml.workerEnv" -}}
{{- include "morphml.sharedEnv" . }}
{{- $secret := include "morphml.secretName" . }}
{{- if $secret }}
{{- range $key := list "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "AWS_ENDPOINT_URL" }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      {{- if eq $key "AWS_ENDPOINT_URL" }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A container's resources with every quantity a string (the DaskCluster CRD accepts no numbers
there) and, given "gpus", the limit nvidia.com/gpu: gpus. Called with (dict "resources" r
"gpus" n); renders nothing when there is nothing to ask for.
*/}}
{{- define "morphml.resources" -}}
{{- $out := dict -}}
{{- range $part, $quantities := .resources -}}
{{- $strings := dict -}}
{{- range $name, $quantity := $quantities -}}
{{- $_ := set $strings $name (toString $quantity) -}}
{{- end -}}
{{- if $strings -}}
{{- $_ := set $out $part $strings -}}
{{- end -}}
{{- end -}}
{{- if .gpus -}}
{{- $limits := get $out "limits" | default dict -}}
{{- $_ := set $limits "nvidia.com/gpu" (toString .gpus) -}}
{{- $_ := set $out "limits" $limits -}}
{{- end -}}
{{- if $out -}}
{{- toYaml $out -}}
{{- end -}}
{{- end -}}

{{/*
What values.schema.json cannot say, as errors that name the value, what was expected and the
fix. Included by daskcluster.yaml, so `helm template/install/lint` stop on them.
*/}}
{{- define "morphml.validate" -}}
{{- $a := .Values.autoscaler -}}
{{- if and $a.enabled (gt (int $a.minimum) (int $a.maximum)) -}}
{{- fail (printf "\nautoscaler.minimum is above autoscaler.maximum\n  expected: minimum <= maximum\n  received: minimum=%d, maximum=%d\n  fix: --set autoscaler.maximum=%d (or lower autoscaler.minimum)" (int $a.minimum) (int $a.maximum) (int $a.minimum)) -}}
{{- end -}}
{{- $gpus := int .Values.worker.gpus -}}
{{- range $part, $quantities := .Values.worker.resources -}}
{{- if hasKey $quantities "nvidia.com/gpu" -}}
{{- $asked := toString (get $quantities "nvidia.com/gpu") -}}
{{- if ne $asked (toString $gpus) -}}
{{- fail (printf "\nthe workers' GPU resources disagree with worker.gpus\n  expected: nvidia.com/gpu: %d (or none: the chart adds it), for worker.gpus=%d\n  received: worker.resources.%s.nvidia.com/gpu = %s\n  fix: remove nvidia.com/gpu from worker.resources and set worker.gpus" $gpus $gpus $part $asked) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $part, $quantities := .Values.scheduler.resources -}}
{{- if hasKey $quantities "nvidia.com/gpu" -}}
{{- fail (printf "\nthe scheduler asks for GPUs\n  expected: scheduler.resources without nvidia.com/gpu: the scheduler runs no trials\n  received: scheduler.resources.%s.nvidia.com/gpu\n  fix: remove it from scheduler.resources; set worker.gpus instead" $part) -}}
{{- end -}}
{{- end -}}
{{- range .Values.worker.extraArgs -}}
{{- if regexMatch "^--(nthreads|resources|name)(=|$)" . -}}
{{- fail (printf "\nworker.extraArgs sets what the chart decides\n  expected: no --nthreads, --resources or --name in worker.extraArgs\n  received: %s\n  fix: use worker.threads and worker.gpus instead; the operator names workers" .) -}}
{{- end -}}
{{- end -}}
{{- $s3 := .Values.store.s3 -}}
{{- if and $s3.existingSecret (or $s3.accessKeyId $s3.secretAccessKey $s3.endpointUrl) -}}
{{- fail (printf "\nstore.s3.existingSecret together with keys for the chart's Secret\n  expected: either store.s3.existingSecret or store.s3.accessKeyId/secretAccessKey/endpointUrl\n  received: existingSecret=%s and the chart's keys\n  fix: put AWS_ENDPOINT_URL in the Secret %s, or leave store.s3.existingSecret empty" $s3.existingSecret $s3.existingSecret) -}}
{{- end -}}
{{- if and $s3.endpointUrl (not $s3.existingSecret) (not (or $s3.accessKeyId $s3.secretAccessKey)) -}}
{{- fail "\nstore.s3.endpointUrl without credentials\n  expected: store.s3.accessKeyId and store.s3.secretAccessKey with it (the endpoint goes into their Secret)\n  received: store.s3.endpointUrl alone\n  fix: --set-string store.s3.accessKeyId=...,store.s3.secretAccessKey=..., or use store.s3.existingSecret" -}}
{{- end -}}
{{- if and (or $s3.accessKeyId $s3.secretAccessKey) (not (and $s3.accessKeyId $s3.secretAccessKey)) -}}
{{- fail "\nonly one of store.s3.accessKeyId and store.s3.secretAccessKey\n  expected: both, or neither (credentials from store.s3.existingSecret or the pod's identity)\n  received: one of them\n  fix: --set-string store.s3.accessKeyId=...,store.s3.secretAccessKey=..." -}}
{{- end -}}
{{- end -}}
