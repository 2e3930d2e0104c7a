"""`EmulatedKubernetes`: the API emulator and the kubelet in a background thread, a
kubeconfig that points at them, and the real dask-kubernetes operator as a process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml

from kube.apiserver import RESOURCES, KubernetesApi
from kube.cluster_dns import DNS_SWITCH
from kube.kubelet import CLUSTERS, PODS, SERVICES, Kubelet, is_ready

__all__ = ["EmulatedKubernetes"]

_T = TypeVar("_T")
# Where `apply` creates a manifest's object, by its kind.
_PLACES = {kind: path for path, kind, _, _ in RESOURCES}


class EmulatedKubernetes:
    """An emulated Kubernetes with the real dask-kubernetes operator, on 127.0.0.1.

    Use it as a context manager; ``env`` holds the ``KUBECONFIG`` for clients (kr8s reads
    it: set it before `dask_kubernetes.operator.KubeCluster` starts). Logs of the operator
    and of each pod are written under ``workdir``.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.env = {"KUBECONFIG": str(self.kubeconfig)}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._operator: subprocess.Popen[bytes] | None = None
        self.api: KubernetesApi | None = None
        self.kubelet: Kubelet | None = None
        self._server: Any = None

    # -- lifetime ------------------------------------------------------------------------

    def __enter__(self) -> EmulatedKubernetes:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 60) -> None:
        """Start the API, the kubelet and the operator; return once the operator watches
        DaskClusters."""
        (self.workdir / "pods").mkdir(parents=True, exist_ok=True)
        self._thread.start()
        port = self.call(self._start_api)
        self.kubeconfig.write_text(yaml.safe_dump(_kubeconfig(f"http://127.0.0.1:{port}")))
        command = [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            "-n",
            "default",
            str(Path(__file__).with_name("cluster_dns.py")),
            "-m",
            "dask_kubernetes.operator.controller",
        ]
        with (self.workdir / "operator.log").open("ab") as log:
            self._operator = subprocess.Popen(
                command,
                env={**os.environ, **self.env, DNS_SWITCH: "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.wait_for(self._operator_watches, timeout, "the operator to watch DaskClusters")

    async def _start_api(self) -> int:
        import kmock  # after kube.apiserver, which skips the tests without it

        self.api = KubernetesApi()
        await self.api.__aenter__()
        self._server = kmock.Server(self.api)
        await self._server.__aenter__()
        self.kubelet = Kubelet(self.api, self.workdir / "pods")
        await self.kubelet.start()
        port: int = self._server.port
        return port

    def _operator_watches(self) -> bool:
        if self._operator is not None and self._operator.poll() is not None:
            raise RuntimeError(f"the operator exited: {self.log('operator.log')[-3000:]}")
        api = self.api
        return api is not None and any(resource == CLUSTERS for resource, _ in api._watchers)

    def stop(self) -> None:
        """Stop the operator, then every pod's process, then the API."""
        if self._operator is not None and self._operator.poll() is None:
            self._operator.terminate()
            try:
                self._operator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._operator.kill()
                self._operator.wait()
        if self._thread.is_alive():
            self.call(self._stop_api)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    async def _stop_api(self) -> None:
        if self.kubelet is not None:
            await self.kubelet.stop()
        if self._server is not None:
            await self._server.__aexit__(None, None, None)
        if self.api is not None:
            await self.api.__aexit__(None, None, None)

    # -- use -----------------------------------------------------------------------------

    def call(self, function: Callable[[], Coroutine[Any, Any, _T]], timeout: float = 30) -> _T:
        """Run a coroutine function in the emulator's event loop and return its result."""
        future: concurrent.futures.Future[_T] = asyncio.run_coroutine_threadsafe(
            function(), self._loop
        )
        return future.result(timeout)

    def apply(self, manifest: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
        """Create the object of a manifest (a DaskCluster, DaskAutoscaler, Secret, or any
        kind of `kube.apiserver.RESOURCES`), as ``kubectl create -f`` does."""
        place = _PLACES[manifest["kind"]]
        api = self._api()
        return self.call(lambda: api.add(place, manifest, namespace=namespace))

    def delete(self, resource: str, name: str, namespace: str = "default") -> None:
        """Delete an object, e.g. ``delete("v1/pods", "morphml-default-worker-...")``."""
        api = self._api()
        self.call(lambda: api.remove((resource, namespace, name)))

    def objects(
        self, resource: str, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """The live objects of a resource whose labels include ``labels``."""
        wanted = dict(labels or {})

        async def listed() -> list[dict[str, Any]]:
            return [
                obj
                for obj in self._api().objects_of(resource)
                if wanted.items() <= obj["metadata"].get("labels", {}).items()
            ]

        return self.call(listed)

    def get(self, resource: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        """One live object, or None."""
        api = self._api()

        async def got() -> dict[str, Any] | None:
            return api.get_object(resource, namespace, name)

        return self.call(got)

    def worker_pods(self, cluster: str) -> list[dict[str, Any]]:
        """The worker pods of a DaskCluster."""
        return self.objects(PODS, _component(cluster, "worker"))

    def run_daskcluster(
        self, manifest: dict[str, Any], namespace: str = "default", timeout: float = 90
    ) -> str:
        """Apply a DaskCluster manifest and return its scheduler's address
        (``tcp://127.0.0.1:<port>``) once the operator says it is Running and the scheduler
        pod is ready."""
        self.apply(manifest, namespace)
        return self.scheduler_address(manifest["metadata"]["name"], namespace, timeout)

    def scheduler_address(self, name: str, namespace: str = "default", timeout: float = 90) -> str:
        """The address of a running DaskCluster's scheduler (waiting up to ``timeout``)."""
        return "tcp://127.0.0.1:" + str(self._service_port(name, namespace, "tcp-comm", timeout))

    def dashboard_address(self, name: str, namespace: str = "default", timeout: float = 90) -> str:
        """The ``http://127.0.0.1:<port>`` of a running DaskCluster's scheduler dashboard."""
        port = self._service_port(name, namespace, "http-dashboard", timeout)
        return f"http://127.0.0.1:{port}"

    def _service_port(self, name: str, namespace: str, port_name: str, timeout: float) -> int:
        def running() -> bool:
            cluster = self.get(CLUSTERS, name, namespace)
            pods = self.objects(PODS, _component(name, "scheduler"))
            return (
                cluster is not None
                and cluster.get("status", {}).get("phase") == "Running"
                and any(is_ready(pod) for pod in pods)
            )

        self.wait_for(running, timeout, f"DaskCluster {namespace}/{name} to run")
        service = self.get(SERVICES, f"{name}-scheduler", namespace)
        assert service is not None
        [port] = [p["port"] for p in service["spec"]["ports"] if p.get("name") == port_name]
        return int(port)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``condition`` every 0.1 s until it holds; fail with the operator's log."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"waited {timeout} s for {what}; the operator's log ends with:\n"
                    + self.log("operator.log")[-4000:]
                )
            time.sleep(0.1)

    def log(self, name: str) -> str:
        """A log under ``workdir``: ``operator.log`` or ``pods/<pod>.log``."""
        path = self.workdir / name
        return path.read_text(errors="replace") if path.exists() else ""

    def _api(self) -> KubernetesApi:
        if self.api is None:
            raise RuntimeError("the emulated Kubernetes is not started")
        return self.api


def _component(cluster: str, component: str) -> dict[str, str]:
    return {"dask.org/cluster-name": cluster, "dask.org/component": component}


def _kubeconfig(server: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulated", "cluster": {"server": server}}],
        "users": [{"name": "emulated", "user": {"token": "emulated"}}],
        "contexts": [
            {
                "name": "emulated",
                "context": {"cluster": "emulated", "user": "emulated", "namespace": "default"},
            }
        ],
        "current-context": "emulated",
    }
