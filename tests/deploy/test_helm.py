"""The Helm chart clusters/kubernetes/helm/morphml, linted, rendered and checked offline.

helm-python-sdk runs Helm's own Go library (lint, values.schema.json, templates) without a
``helm`` binary or a cluster. What it renders is checked as test_kubernetes.py checks the
hand-written manifests: core kinds with kubernetes-validate, the DaskCluster and DaskAutoscaler
against the operator's CRDs, the ServiceMonitor against the prometheus-operator CRD models.

The rendered DaskCluster is what ``morphml_dask.deploy.kubernetes_spec`` builds for the same
settings, except where the chart does more, each difference on purpose:

- ``metadata.labels``: Helm's standard labels (``app.kubernetes.io/*``, ``helm.sh/chart``);
- ``imagePullPolicy``: set from ``image.pullPolicy``, where ``kubernetes_spec`` leaves
  Kubernetes' default;
- the worker's arguments: ``--name`` first; the same arguments in another order (compared as
  distributed's command line parses them);
- ``nodeSelector``, ``imagePullSecrets`` and ``tolerations`` beyond the GPU one: chart values
  that ``kubernetes_spec`` has no argument for;
- ``env``: the chart's ``env`` map comes sorted by name (Helm ranges over maps in order).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from _helm import (
    CHART,
    as_core_objects,
    crd_errors,
    crd_validators,
    dask_cli,
    helm,
    kubernetes_validate,
    render_chart,
)
from _helm import container as _container

import morphml_dask
from morphml_dask.dashboard import routes_with_morphml

pytestmark = pytest.mark.kubernetes

GPU_VALUES = CHART / "ci" / "gpu-values.yaml"
CPU_VALUES = CHART / "ci" / "cpu-values.yaml"
EXISTING_SECRET = {"store": {"s3": {"existingSecret": "team-s3"}}}
SERVICE_LABELS = {"dask.org/component": "scheduler"}


def _values(path: Path) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(path.read_text())
    return values


CASES: dict[str, dict[str, Any] | None] = {
    "defaults": None,
    "gpu": _values(GPU_VALUES),
    "cpu": _values(CPU_VALUES),
    "existing-secret": EXISTING_SECRET,
}
KINDS = {
    "defaults": ["DaskAutoscaler", "DaskCluster"],
    "gpu": ["DaskAutoscaler", "DaskCluster", "Secret", "ServiceMonitor"],
    "cpu": ["DaskAutoscaler", "DaskCluster"],
    "existing-secret": ["DaskAutoscaler", "DaskCluster"],
}


def _of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}


# --- lint and render ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values_file", [None, GPU_VALUES, CPU_VALUES], ids=["defaults", "gpu", "cpu"]
)
def test_chart_lints_clean(values_file: Path | None) -> None:
    values = None if values_file is None else _values(values_file)
    report = helm().lint(CHART, values, strict=True, namespace="default")
    assert report["errors"] == []
    # Helm's only remark is informational: the chart has no icon.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "morphml"
    assert chart["appVersion"] == morphml_dask.__version__


@pytest.mark.parametrize("case", list(CASES))
def test_renders_the_expected_objects(case: str) -> None:
    objects = render_chart(copy.deepcopy(CASES[case]))
    assert sorted(obj["kind"] for obj in objects) == KINDS[case]
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "morphml"
        assert "namespace" not in obj["metadata"]  # helm install -n decides


@pytest.mark.parametrize("case", list(CASES))
def test_core_objects_validate_against_kubernetes(case: str) -> None:
    objects = render_chart(copy.deepcopy(CASES[case]))
    for obj in objects:
        if "/" not in obj["apiVersion"]:
            kubernetes_validate(obj)
    for core_object in as_core_objects(_of_kind(objects, "DaskCluster")):
        kubernetes_validate(core_object)


@pytest.mark.parametrize("case", list(CASES))
def test_dask_objects_validate_against_the_operator_crds(case: str) -> None:
    validators = crd_validators()
    for obj in render_chart(copy.deepcopy(CASES[case])):
        if obj["apiVersion"] == "kubernetes.dask.org/v1":
            assert crd_errors(validators, obj) == [], obj["kind"]


def test_servicemonitor_validates_against_the_prometheus_operator_crd() -> None:
    models = pytest.importorskip(
        "cloudcoil.models.prometheus_operator.v1",
        reason="the ServiceMonitor schema comes from cloudcoil-models-prometheus-operator: "
        "pip install cloudcoil-models-prometheus-operator",
    )
    monitor = _of_kind(render_chart(_values(GPU_VALUES)), "ServiceMonitor")
    parsed = models.ServiceMonitor.model_validate(monitor)
    # The models ignore unknown fields: the round trip shows any that were dropped.
    assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == monitor


# --- what the values wire together ----------------------------------------------------------


@pytest.mark.parametrize(("case", "gpus"), [("defaults", 1), ("gpu", 4), ("cpu", 0)])
def test_gpus_per_worker_set_the_limit_and_the_dask_resources_together(
    case: str, gpus: int
) -> None:
    cluster = _of_kind(render_chart(copy.deepcopy(CASES[case])), "DaskCluster")
    worker = _container(cluster, "worker")
    params = dask_cli(worker["args"])
    limits = worker["resources"]["limits"]
    tolerations = cluster["spec"]["worker"]["spec"].get("tolerations", [])
    if gpus:
        assert limits["nvidia.com/gpu"] == str(gpus)  # the CRD takes strings only
        assert params["resources"] == f"GPU={gpus}"
        assert params["nthreads"] == gpus  # one trial per GPU at a time
        assert tolerations[0] == {
            "key": "nvidia.com/gpu",
            "operator": "Exists",
            "effect": "NoSchedule",
        }
    else:
        assert "nvidia.com/gpu" not in limits and params["resources"] is None
        assert params["nthreads"] == 2 and tolerations == []
    assert params["name"] == "$(DASK_WORKER_NAME)"
    assert "nvidia.com/gpu" not in str(_container(cluster, "scheduler")["resources"])


def test_the_pieces_point_at_each_other() -> None:
    objects = render_chart(_values(GPU_VALUES))
    cluster = _of_kind(objects, "DaskCluster")
    name = cluster["metadata"]["name"]
    assert _of_kind(objects, "DaskAutoscaler")["spec"] == {
        "cluster": name,
        "minimum": 0,
        "maximum": 4,
    }
    service = cluster["spec"]["scheduler"]["service"]
    # The operator labels the scheduler Service with these (controller.py).
    assert service["selector"] == {"dask.org/cluster-name": name, **SERVICE_LABELS}
    monitor = _of_kind(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == service["selector"]
    ports = {port["name"]: port["port"] for port in service["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert ports[endpoint["port"]] == 8787 and endpoint["path"] == "/metrics"
    params = dask_cli(_container(cluster, "scheduler")["args"])
    assert params["dashboard"] and params["dashboard_address"] == ":8787"


def test_the_secret_holds_exactly_what_the_workers_read() -> None:
    objects = render_chart(_values(GPU_VALUES))
    secret = _of_kind(objects, "Secret")
    cluster = _of_kind(objects, "DaskCluster")
    refs = [
        var["valueFrom"]["secretKeyRef"]
        for var in _container(cluster, "worker")["env"]
        if "valueFrom" in var
    ]
    assert (
        {ref["name"] for ref in refs} == {secret["metadata"]["name"]} == {"morphml-s3-credentials"}
    )
    assert {ref["key"] for ref in refs} == set(secret["stringData"])
    assert secret["stringData"]["AWS_ENDPOINT_URL"] == "http://minio.minio.svc.cluster.local:9000"
    assert [ref["key"] for ref in refs if ref.get("optional")] == ["AWS_ENDPOINT_URL"]
    # Only the workers touch the store.
    assert "AWS_ACCESS_KEY_ID" not in _env(_container(cluster, "scheduler"))


def test_an_existing_secret_is_read_and_none_is_made() -> None:
    objects = render_chart(copy.deepcopy(EXISTING_SECRET))
    assert "Secret" not in {obj["kind"] for obj in objects}
    env = _env(_container(_of_kind(objects, "DaskCluster"), "worker"))
    assert {ref["secretKeyRef"]["name"] for ref in env.values()} == {"team-s3"}


def test_without_credentials_the_workers_get_none() -> None:
    worker = _container(_of_kind(render_chart(), "DaskCluster"), "worker")
    assert "env" not in worker  # an empty or null env breaks the operator


def test_the_store_url_reaches_dask_config_in_both_containers() -> None:
    import dask.config

    values = {"store": {"url": "s3://bucket/runs"}, "env": {"DASK_LOGGING__DISTRIBUTED": "info"}}
    cluster = _of_kind(render_chart(values), "DaskCluster")
    for part in ("scheduler", "worker"):
        env = _env(_container(cluster, part))
        read = dask.config.collect_env({k: v for k, v in env.items() if isinstance(v, str)})
        assert read["morphml"]["store"] == "s3://bucket/runs"
        assert read["logging"]["distributed"] == "info"


def test_the_scheduler_serves_the_morphml_page_unless_routes_are_emptied() -> None:
    import dask.config

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["scheduler"]["httpRoutes"] == routes_with_morphml()
    routes = _env(_container(_of_kind(render_chart(), "DaskCluster"), "scheduler"))
    # Read the way `dask scheduler` reads its environment.
    read = dask.config.collect_env(routes)
    assert read["distributed"]["scheduler"]["http"]["routes"] == routes_with_morphml()
    cluster = _of_kind(render_chart({"scheduler": {"httpRoutes": []}}), "DaskCluster")
    assert "env" not in _container(cluster, "scheduler")


def test_quantities_become_strings_as_the_crd_needs() -> None:
    # Helm merges maps into the defaults; null deletes a default (limits.memory here).
    limits = {"cpu": 0.5, "memory": None}
    values = {"worker": {"resources": {"requests": {"cpu": 4, "memory": "1Gi"}, "limits": limits}}}
    cluster = _of_kind(render_chart(values), "DaskCluster")
    assert _container(cluster, "worker")["resources"] == {
        "requests": {"cpu": "4", "memory": "1Gi"},
        "limits": {"cpu": "0.5", "nvidia.com/gpu": "1"},
    }
    assert crd_errors(crd_validators(), cluster) == []


@pytest.mark.parametrize(
    ("release", "values", "name"),
    [
        ("morphml", {}, "morphml"),
        ("search", {}, "search-morphml"),
        ("morphml-digits", {}, "morphml-digits"),
        ("search", {"fullnameOverride": "nas"}, "nas"),
        ("r" * 52, {}, "r" * 52),  # trimmed to 53, then of its trailing "-"
    ],
)
def test_every_object_is_named_after_the_release(
    release: str, values: dict[str, Any], name: str
) -> None:
    objects = render_chart(values, release=release)
    cluster = _of_kind(objects, "DaskCluster")
    assert cluster["metadata"]["name"] == name
    assert _of_kind(objects, "DaskAutoscaler")["spec"]["cluster"] == name
    kubernetes_validate(next(as_core_objects(cluster)))


def test_the_notes_say_how_to_reach_this_release() -> None:
    with helm().Chart.load(CHART) as chart:
        rendered = chart.render(None, name="search", namespace="nas")
    notes = rendered["morphml/templates/NOTES.txt"]
    assert "kubectl port-forward -n nas svc/search-morphml-scheduler 8786:8786 8787:8787" in notes
    assert "http://localhost:8787/morphml" in notes
    assert "The workers get no S3 credentials" in notes


# --- the chart and kubernetes_spec agree ----------------------------------------------------


def _kubernetes_spec_for(values: dict[str, Any] | None) -> dict[str, Any]:
    """What `kubernetes_spec` builds for the settings of a chart release named "morphml"."""
    pytest.importorskip(
        "dask_kubernetes",
        reason="kubernetes_spec needs dask-kubernetes: pip install 'morphml_dask[kubernetes]'",
    )
    from morphml_dask.deploy import kubernetes_spec

    with helm().Chart.load(CHART) as chart:
        merged = chart.merge_values(copy.deepcopy(values))
        app_version = chart.metadata["appVersion"]
    store, worker, scheduler = merged["store"], merged["worker"], merged["scheduler"]
    s3 = store["s3"]
    secret = s3["existingSecret"] or ("morphml-s3-credentials" if s3["accessKeyId"] else None)
    env = {"DASK_MORPHML__STORE": store["url"]} if store["url"] else {}
    return kubernetes_spec(
        "morphml",
        image=f"{merged['image']['repository']}:{merged['image']['tag'] or app_version}",
        n_workers=worker["replicas"],
        gpus_per_worker=worker["gpus"],
        threads_per_worker=worker.get("threads"),  # Helm drops keys that are null
        resources=worker["resources"],
        scheduler_resources=scheduler["resources"],
        env=env | dict(sorted(merged["env"].items())),
        credentials_secret=secret,
        worker_args=worker["extraArgs"],
        idle_timeout=merged["idleTimeout"],
        scheduler_service_type=scheduler["serviceType"],
    )


def _in_substance(cluster: dict[str, Any]) -> dict[str, Any]:
    """The DaskCluster without the differences the module docstring lists."""
    cluster = copy.deepcopy(cluster)
    cluster["metadata"] = {"name": cluster["metadata"]["name"]}
    for part in ("scheduler", "worker"):
        pod = cluster["spec"][part]["spec"]
        for key in ("nodeSelector", "imagePullSecrets"):
            pod.pop(key, None)
        for container in pod["containers"]:
            container.pop("imagePullPolicy", None)
            container["args"] = dask_cli(container["args"])
    return cluster


@pytest.mark.parametrize("case", list(CASES))
def test_the_daskcluster_is_what_kubernetes_spec_builds(case: str) -> None:
    rendered = _of_kind(render_chart(copy.deepcopy(CASES[case])), "DaskCluster")
    built = _kubernetes_spec_for(CASES[case])
    assert _in_substance(rendered) == _in_substance(built)


def test_the_comparison_sees_a_difference() -> None:
    rendered = _of_kind(render_chart({"worker": {"threads": 3}}), "DaskCluster")
    assert _in_substance(rendered) != _in_substance(_kubernetes_spec_for(None))


# --- bad values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"worker": {"replicas": -1}}, r"at '/worker/replicas': minimum: got -1, want 0"),
        ({"autoscaler": {"minimum": -2}}, r"at '/autoscaler/minimum': minimum: got -2, want 0"),
        ({"autoscaler": {"maximum": 0}}, r"at '/autoscaler/maximum': minimum: got 0, want 1"),
        ({"worker": {"gpus": "two"}}, r"at '/worker/gpus': got string, want integer"),
        ({"worker": {"threads": 0}}, r"at '/worker/threads': minimum: got 0, want 1"),
        ({"workers": {"replicas": 2}}, r"at '': additional properties 'workers' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, r"at '/image/pullPolicy': value must be one of"),
        ({"scheduler": {"serviceType": "Ingress"}}, r"at '/scheduler/serviceType': value must be"),
        (
            {"worker": {"resources": {"limit": {}}}},
            r"at '/worker/resources': additional prop.*'limit'",
        ),
        (
            {"worker": {"resources": {"limits": {"cpu": "4 cores"}}}},
            r"at '/worker/resources/limits/cpu': '4 cores' does not match pattern",
        ),
        ({"fullnameOverride": "Morph_ML"}, r"at '/fullnameOverride': 'Morph_ML' does not match"),
        (
            {"serviceMonitor": {"interval": "15 s"}},
            r"at '/serviceMonitor/interval': '15 s' does not",
        ),
    ],
)
def test_the_schema_rejects_bad_values(values: dict[str, Any], match: str) -> None:
    with pytest.raises(helm().HelmValuesError, match=r"schema.*\nmorphml:\n- " + match):
        render_chart(values)
    # `helm lint -f values.yaml` reports the same.
    report = helm().lint(CHART, values)
    assert any(re.search(match, error) for error in report["errors"])


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (
            {"autoscaler": {"minimum": 5, "maximum": 2}},
            r"autoscaler.minimum is above autoscaler.maximum\n  expected: minimum <= maximum\n"
            r"  received: minimum=5, maximum=2\n  fix: --set autoscaler.maximum=5",
        ),
        (
            {"worker": {"gpus": 1, "resources": {"limits": {"nvidia.com/gpu": 2}}}},
            r"the workers' GPU resources disagree with worker.gpus\n"
            r"  expected: nvidia.com/gpu: 1 .*\n"
            r"  received: worker.resources.limits.nvidia.com/gpu = 2\n  fix: remove",
        ),
        (
            {"scheduler": {"resources": {"limits": {"nvidia.com/gpu": 1}}}},
            r"the scheduler asks for GPUs\n.*\n  received: scheduler.resources.limits.nvidia.com/gpu\n"
            r"  fix: remove it",
        ),
        (
            {"worker": {"extraArgs": ["--nthreads=2"]}},
            r"worker.extraArgs sets what the chart decides\n.*\n  received: --nthreads=2\n"
            r"  fix: use worker.threads and worker.gpus",
        ),
        (
            {"store": {"s3": {"accessKeyId": "AKIA"}}},
            r"only one of store.s3.accessKeyId and store.s3.secretAccessKey\n.*\n.*\n  fix: --set-string",
        ),
        (
            {"store": {"s3": {"endpointUrl": "https://minio.example.com"}}},
            r"store.s3.endpointUrl without credentials\n.*\n  received: store.s3.endpointUrl alone",
        ),
        (
            {
                "store": {
                    "s3": {"existingSecret": "team-s3", "endpointUrl": "https://minio.example.com"}
                }
            },
            r"store.s3.existingSecret together with keys for the chart's Secret\n.*\n"
            r"  received: existingSecret=team-s3 .*\n  fix: put AWS_ENDPOINT_URL in the Secret team-s3",
        ),
    ],
)
def test_the_templates_reject_what_the_schema_cannot_express(
    values: dict[str, Any], match: str
) -> None:
    # Helm's lint skips `fail`: only rendering (helm template/install/upgrade) stops here.
    with pytest.raises(helm().HelmRenderError, match=match):
        render_chart(values)


def test_a_disabled_autoscaler_bounds_nothing() -> None:
    values = {"autoscaler": {"enabled": False, "minimum": 5, "maximum": 2}}
    assert sorted(obj["kind"] for obj in render_chart(values)) == ["DaskCluster"]
