"""A small "kubelet" for the emulated Kubernetes API: it runs pods as local processes.

It plays, in one reconcile loop, the parts of Kubernetes that the dask-kubernetes operator
relies on and an API server alone does not do:

- the Deployment controller: each Deployment gets ``spec.replicas`` pods, and a deleted pod
  is replaced by a new one;
- the kubelet: each pod's container runs as a local process, its ``command``/``args`` with
  ``dask`` taken from this Python environment, ``0.0.0.0`` bound as ``127.0.0.1``, each
  declared container port (and the scheduler's 8786/8787) moved to a free local port,
  ``$(VAR)`` expanded and ``secretKeyRef`` resolved; the pod turns Running, and Ready once its
  readiness probe (``httpGet``) answers; an exited container is restarted; a deleted pod's
  process is stopped (SIGTERM, then SIGKILL);
- Services: a scheduler Service's ports become the local ports of the pod it selects (port
  and nodePort alike, so that a ``NodePort`` service is reached at ``127.0.0.1:nodePort``), its
  status is set once its DaskCluster is Pending (the operator then marks it Running), and
  addresses such as ``tcp://<service>.<namespace>.svc.cluster.local:8786`` in a pod's
  environment or arguments are rewritten to those local ports;
- the garbage collector: objects whose owners (``ownerReferences``) are all gone are deleted;
- one Node with the InternalIP 127.0.0.1 and the Namespace ``default``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from morphml_dask.testing import free_port

if TYPE_CHECKING:
    from kube.apiserver import KubernetesApi

__all__ = ["Kubelet", "is_ready"]

PODS, SERVICES, SECRETS = "v1/pods", "v1/services", "v1/secrets"
DEPLOYMENTS = "apps/v1/deployments"
CLUSTERS = "kubernetes.dask.org/v1/daskclusters"
# Kinds that the operator creates with owner references, children before owners: a snapshot
# taken in this order never holds a child whose live owner it missed.
_OWNED = (
    PODS,
    SERVICES,
    DEPLOYMENTS,
    "kubernetes.dask.org/v1/daskautoscalers",
    "kubernetes.dask.org/v1/daskworkergroups",
    CLUSTERS,
)
# Dask's default scheduler ports, moved like declared ones.
_SCHEDULER_PORTS = {"--port": 8786, "--dashboard-address": 8787}
_SERVICE_ADDRESS = re.compile(
    r"(?P<scheme>tcp://|http://)?(?P<service>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r"(\.(?P<namespace>[a-z0-9-]+))?(\.svc(\.cluster\.local)?)?:(?P<port>\d+)"
)
_GRACE_SECONDS = 5.0


@dataclass
class _Container:
    """The process of one pod's (first) container."""

    pod: str
    namespace: str
    ports: dict[int, int]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    ready: bool = False
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)


class Kubelet:
    """Runs the pods of a `kube.apiserver.KubernetesApi` as local processes (see the module
    docstring); `start` and `stop` it in the API's event loop."""

    def __init__(self, api: KubernetesApi, log_dir: Path) -> None:
        self.api = api
        self.log_dir = log_dir
        self.containers: dict[str, _Container] = {}  # by pod uid
        self.service_ports: dict[tuple[str, str], dict[int, int]] = {}  # original -> local
        self._service_pod: dict[str, str] = {}  # service uid -> the pod uid it was mapped to
        self._published: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Create the Namespace and the Node, then reconcile every 0.2 s until `stop`."""
        await self.api.add("v1/namespaces", {"metadata": {"name": "default"}})
        node = {
            "metadata": {"name": "emulated-node", "labels": {"kubernetes.io/os": "linux"}},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": "emulated-node"},
                ],
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
        await self.api.add("v1/nodes", node)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1))
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop reconciling and stop every process."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for container in list(self.containers.values()):
            self._stop_process(container)
        self.containers.clear()
        if self._stopping:
            await asyncio.gather(*self._stopping)
        if self._http is not None:
            await self._http.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception as error:
                print(f"kubelet: {error!r}", file=sys.stderr)
            await asyncio.sleep(0.2)

    async def reconcile(self) -> None:
        """One pass: garbage, Deployments, processes, Services."""
        snapshot = {kind: list(self.api.objects_of(kind)) for kind in _OWNED}
        await self._collect_garbage(snapshot)
        await self._run_deployments(snapshot[DEPLOYMENTS], snapshot[PODS])
        pods = list(self.api.objects_of(PODS))
        await self._sync_processes(pods)
        await self._publish_services(list(self.api.objects_of(SERVICES)), pods)

    # -- the garbage collector and the Deployment controller ------------------------------

    async def _collect_garbage(self, snapshot: Mapping[str, list[dict[str, Any]]]) -> None:
        uids = {obj["metadata"]["uid"] for objects in snapshot.values() for obj in objects}
        for kind, objects in snapshot.items():
            for obj in objects:
                owners = obj["metadata"].get("ownerReferences") or []
                if owners and not any(owner.get("uid") in uids for owner in owners):
                    await self._delete(kind, obj)

    async def _delete(self, kind: str, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        with contextlib.suppress(Exception):  # gone already
            await self.api.remove((kind, meta.get("namespace"), meta["name"]))

    async def _run_deployments(
        self, deployments: list[dict[str, Any]], pods: list[dict[str, Any]]
    ) -> None:
        for deployment in deployments:
            meta = deployment["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            owned = [pod for pod in pods if _owner_uid(pod) == meta["uid"]]
            for _ in range(int(deployment["spec"].get("replicas", 1)) - len(owned)):
                await self.api.add(PODS, _pod_of(deployment), namespace=meta["namespace"])
            ready = sum(1 for pod in owned if is_ready(pod))
            status = {
                "observedGeneration": meta.get("generation", 1),
                "replicas": len(owned),
                "readyReplicas": ready,
                "availableReplicas": ready,
            }
            if any(deployment.get("status", {}).get(k) != v for k, v in status.items()):
                key = (DEPLOYMENTS, meta["namespace"], meta["name"])
                with contextlib.suppress(Exception):
                    await self.api.change(key, {"status": status})

    # -- pods as processes ---------------------------------------------------------------

    async def _sync_processes(self, pods: list[dict[str, Any]]) -> None:
        live = {pod["metadata"]["uid"]: pod for pod in pods}
        for uid in [uid for uid in self.containers if uid not in live]:
            self._stop_process(self.containers.pop(uid))
        for uid, pod in live.items():
            if pod["metadata"].get("deletionTimestamp"):
                continue
            container = self.containers.get(uid)
            if container is None or container.process is None:
                await self._start(pod)
            elif container.process.poll() is not None:
                await self._restart(pod, container)
            elif not container.ready and await self._probe(pod, container):
                container.ready = True
                await self._set_status(pod, container)

    async def _start(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        container = self.containers.get(meta["uid"])
        if container is None:
            spec = pod["spec"]["containers"][0]
            ports = {int(p["containerPort"]): free_port() for p in spec.get("ports", [])}
            if spec.get("args", [])[1:2] == ["scheduler"]:
                for port in _SCHEDULER_PORTS.values():
                    ports.setdefault(port, free_port())
            log = self.log_dir / f"{meta['name']}.log"
            container = _Container(meta["name"], meta["namespace"], ports, log)
            self.containers[meta["uid"]] = container
        command = self._command(pod, container)
        if command is None:  # a Secret or a Service it needs is not there yet
            return
        argv, env = command
        with container.log.open("ab") as output:
            container.process = subprocess.Popen(
                argv,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # SIGTERM reaches the nanny and its worker
            )
        container.started = time.monotonic()
        await self._set_status(pod, container)

    async def _restart(self, pod: dict[str, Any], container: _Container) -> None:
        # As Kubernetes does (restartPolicy Always), with a short back-off.
        if container.ready:
            container.ready = False
            container.restarts += 1
            container.started = time.monotonic()
            await self._set_status(pod, container)
        if time.monotonic() - container.started > 1.0:
            container.process = None
            await self._start(pod)

    def _stop_process(self, container: _Container) -> None:
        process = container.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        task = asyncio.get_running_loop().create_task(_reap(process))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _command(
        self, pod: Mapping[str, Any], container: _Container
    ) -> tuple[list[str], dict[str, str]] | None:
        spec = pod["spec"]["containers"][0]
        env = self._env(spec.get("env", []), container.namespace)
        if env is None:
            return None
        argv = [_expand(arg, env) for arg in [*spec.get("command", []), *spec.get("args", [])]]
        argv = _local_command(argv, container.ports)
        rewritten = [self._local_addresses(arg, container.namespace) for arg in argv]
        values = {k: self._local_addresses(v, container.namespace) for k, v in env.items()}
        if any(arg is None for arg in rewritten) or any(v is None for v in values.values()):
            return None
        return [arg for arg in rewritten if arg is not None], {
            **os.environ,
            **{k: v for k, v in values.items() if v is not None},
        }

    def _env(self, variables: Iterable[Mapping[str, Any]], namespace: str) -> dict[str, str] | None:
        env: dict[str, str] = {}
        for var in variables:
            if "value" in var:
                env[var["name"]] = _expand(str(var["value"]), env)
                continue
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                continue
            secret = self.api.get_object(SECRETS, namespace, ref["name"])
            value = None if secret is None else _secret_value(secret, ref["key"])
            if value is not None:
                env[var["name"]] = value
            elif not ref.get("optional"):
                return None  # Kubernetes keeps such a pod waiting (CreateContainerConfigError)
        return env

    def _local_addresses(self, text: str, namespace: str) -> str | None:
        """``text`` with Service addresses made local, or None while one is not mapped."""
        missing = False

        def local(match: re.Match[str]) -> str:
            nonlocal missing
            service = (match["namespace"] or namespace, match["service"])
            if service not in self.service_ports and "." not in match[0].split(":")[-2]:
                return match[0]  # a bare host:port that names no Service: leave it
            port = self.service_ports.get(service, {}).get(int(match["port"]))
            if port is None:
                missing = True
                return match[0]
            return f"{match['scheme'] or ''}127.0.0.1:{port}"

        if text.startswith("127.0.0.1:") or "://127.0.0.1" in text:
            return text
        rewritten = _SERVICE_ADDRESS.sub(local, text)
        return None if missing else rewritten

    async def _probe(self, pod: Mapping[str, Any], container: _Container) -> bool:
        probe = pod["spec"]["containers"][0].get("readinessProbe", {}).get("httpGet")
        if probe is None:
            return True
        port = _container_port(pod["spec"]["containers"][0], probe["port"])
        if port not in container.ports or self._http is None:
            return True
        url = f"http://127.0.0.1:{container.ports[port]}{probe.get('path', '/')}"
        try:
            async with self._http.get(url) as response:
                return response.status < 400
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _set_status(self, pod: Mapping[str, Any], container: _Container) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(Exception):  # the pod is gone
            await self.api.change(
                (PODS, meta["namespace"], meta["name"]), {"status": _pod_status(pod, container)}
            )

    # -- Services ------------------------------------------------------------------------

    async def _publish_services(
        self, services: list[dict[str, Any]], pods: list[dict[str, Any]]
    ) -> None:
        for service in services:
            meta = service["metadata"]
            selector = service["spec"].get("selector") or {}
            chosen = [
                pod
                for pod in pods
                if pod["metadata"]["namespace"] == meta["namespace"]
                and selector
                and all(pod["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
                and pod["metadata"]["uid"] in self.containers
            ]
            if chosen and self._service_pod.get(meta["uid"]) != chosen[0]["metadata"]["uid"]:
                await self._map_ports(service, chosen[0])
            if meta["uid"] in self._service_pod and meta["uid"] not in self._published:
                await self._publish_status(service)

    async def _map_ports(self, service: dict[str, Any], pod: Mapping[str, Any]) -> None:
        meta = service["metadata"]
        key = (meta["namespace"], meta["name"])
        container = self.containers[pod["metadata"]["uid"]]
        original = self.service_ports.get(key)
        ports, mapping = [], {}
        for entry in service["spec"].get("ports", []):
            port = (
                int(entry["port"])
                if original is None
                else next(o for o, local in original.items() if local == int(entry["port"]))
            )
            target = _container_port(pod["spec"]["containers"][0], entry.get("targetPort", port))
            local = container.ports.get(target, port)
            mapping[port] = local
            ports.append({**entry, "port": local, "targetPort": local, "nodePort": local})
        self.service_ports[key] = mapping
        self._service_pod[meta["uid"]] = pod["metadata"]["uid"]
        await self.api.change(
            (SERVICES, meta["namespace"], meta["name"]), {"spec": {"ports": ports}}
        )

    async def _publish_status(self, service: dict[str, Any]) -> None:
        # The operator's own "Created -> Pending" patch would overwrite a "Running" set
        # earlier: the status comes once the DaskCluster is Pending.
        meta = service["metadata"]
        cluster = meta.get("labels", {}).get("dask.org/cluster-name")
        if cluster is not None:
            owner = self.api.get_object(CLUSTERS, meta["namespace"], cluster)
            if owner is None or owner.get("status", {}).get("phase") != "Pending":
                return
        status = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}
        await self.api.change((SERVICES, meta["namespace"], meta["name"]), {"status": status})
        self._published.add(meta["uid"])


async def _reap(process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _GRACE_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.to_thread(process.wait)


def _pod_status(pod: Mapping[str, Any], container: _Container) -> dict[str, Any]:
    """A running pod's status, Ready when its container is."""
    spec = pod["spec"]["containers"][0]
    ready = "True" if container.ready else "False"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "phase": "Running",
        "podIP": "127.0.0.1",
        "hostIP": "127.0.0.1",
        "startTime": now,
        "conditions": [
            {"type": kind, "status": ready, "lastTransitionTime": now}
            for kind in ("Initialized", "PodScheduled", "ContainersReady", "Ready")
        ],
        "containerStatuses": [
            {
                "name": spec.get("name", "main"),
                "ready": container.ready,
                "started": True,
                "restartCount": container.restarts,
                "state": {"running": {"startedAt": now}},
                "image": spec.get("image", ""),
            }
        ],
    }


def _pod_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    meta = deployment["metadata"]
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{meta['name']}-{uuid.uuid4().hex[:5]}",
            "labels": dict(template.get("metadata", {}).get("labels", {})),
            "annotations": dict(template.get("metadata", {}).get("annotations", {})),
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {**template["spec"], "nodeName": "emulated-node"},
        "status": {"phase": "Pending"},
    }


def _owner_uid(obj: Mapping[str, Any]) -> str | None:
    owners = obj["metadata"].get("ownerReferences") or [{}]
    uid: str | None = owners[0].get("uid")
    return uid


def is_ready(pod: Mapping[str, Any]) -> bool:
    """Whether a pod's Ready condition is True."""
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _container_port(container: Mapping[str, Any], port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"the container declares no port named {port!r}")


def _secret_value(secret: Mapping[str, Any], key: str) -> str | None:
    if key in secret.get("stringData", {}):
        return str(secret["stringData"][key])
    if key in secret.get("data", {}):
        return base64.b64decode(secret["data"][key]).decode()
    return None


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), text)


def _local_command(argv: list[str], ports: Mapping[int, int]) -> list[str]:
    """A container's command for this machine: ``dask`` of this environment, loopback only,
    ports moved to the local ones."""
    if argv and argv[0] == "dask":
        found = shutil.which("dask", path=str(Path(sys.executable).parent))
        argv = [found or "dask", *argv[1:]]
    elif argv and argv[0] in ("python", "python3"):
        argv = [sys.executable, *argv[1:]]
    role = argv[1] if len(argv) > 1 else ""
    local: list[str] = []
    skip = False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        flag = arg.split("=", 1)[0]
        if flag in ("--host", "--port", "--dashboard-address") and "=" not in arg:
            skip = index + 1 < len(argv)
        if flag in ("--host", "--port", "--dashboard-address"):
            value = arg.split("=", 1)[1] if "=" in arg else argv[index + 1]
            if flag == "--dashboard-address":
                port = int(value.rsplit(":", 1)[-1])
                local += [flag, f"127.0.0.1:{ports.get(port, 0)}"]
            elif flag == "--port":
                local += [flag, str(ports.get(int(value), 0))]
            continue
        local.append(arg)
    if role == "scheduler":
        for flag, port in _SCHEDULER_PORTS.items():
            if flag not in local:
                value = str(ports[port]) if flag == "--port" else f"127.0.0.1:{ports[port]}"
                local += [flag, value]
    if role in ("scheduler", "worker"):
        local += ["--host", "127.0.0.1"]
    return local
