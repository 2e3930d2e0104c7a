"""The real dask-kubernetes operator running our Kubernetes resources, against an emulated
Kubernetes API (``kube/``: kmock, a kubelet that runs pods as local processes).

What runs for real: the operator (``kopf run -m dask_kubernetes.operator.controller``), its
clients (kr8s, kopf), `KubeCluster`, ``dask scheduler`` / ``dask worker`` with the arguments of
``clusters/kubernetes/daskcluster.yaml`` and of `morphml_dask.deploy.kubernetes_spec`, the
operator's autoscaler asking the scheduler for workers, and searches. What does not: Kubernetes
itself (scheduling, images, resource limits, GPUs).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client
    from kube import EmulatedKubernetes

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

MANIFESTS = Path(__file__).parents[2] / "clusters" / "kubernetes"
PODS = "v1/pods"
WORKER_GROUPS = "kubernetes.dask.org/v1/daskworkergroups"
# NAS-Bench-201 trials of about 0.5-1.5 s (110 simulated seconds on average).
TIME_SCALE = 0.008


@pytest.fixture(scope="module")
def emulated_kubernetes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedKubernetes]:
    """The emulated Kubernetes with the operator running, for the whole module."""
    pytest.importorskip(
        "dask_kubernetes", reason="needs dask-kubernetes: pip install 'morphml_dask[kubernetes]'"
    )
    pytest.importorskip("kopf", reason="needs kopf: pip install 'morphml_dask[kubernetes]'")
    from kube import EmulatedKubernetes

    with EmulatedKubernetes(tmp_path_factory.mktemp("kubernetes")) as kube:
        yield kube


@pytest.fixture(scope="module")
def manifest_cluster(emulated_kubernetes: EmulatedKubernetes) -> Iterator[str]:
    """``clusters/kubernetes/daskcluster.yaml`` (and its Secret) running; its scheduler's
    address."""
    kube = emulated_kubernetes
    kube.apply(_manifest("s3-credentials.yaml"))
    address = kube.run_daskcluster(_manifest("daskcluster.yaml"), timeout=90)
    yield address
    kube.delete("kubernetes.dask.org/v1/daskclusters", "morphml")
    kube.wait_for(lambda: not kube.objects(PODS), 30, "the cluster's pods to go")


def _manifest(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return loaded


def _search(client: Client, store: Path, trials: int, **options: Any) -> pd.DataFrame:
    from morphml_dask.driver import Search
    from morphml_dask.optim import RandomSearch
    from morphml_dask.space import CellSpace
    from morphml_dask.tasks import NB201TabularTask

    return Search(
        RandomSearch(CellSpace(), max_trials=trials, seed=1),
        NB201TabularTask(time_scale=TIME_SCALE),
        store=str(store),
        client=client,
        gpus_per_trial=1,
        max_pack=1,
        **options,
    ).run()


def _in_background(run: Callable[[], pd.DataFrame]) -> tuple[threading.Thread, list[Any]]:
    """``run`` in a thread; the list gets its result or its error."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(run())
        except BaseException as error:
            out.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def _result(thread: threading.Thread, out: list[Any], timeout: float) -> pd.DataFrame:
    thread.join(timeout)
    assert out, f"the search did not finish in {timeout} s"
    if isinstance(out[0], BaseException):
        raise out[0]
    table: pd.DataFrame = out[0]
    return table


def _assert_each_trial_once(table: pd.DataFrame, trials: int) -> None:
    assert len(table) == trials, table
    assert table["trial_id"].is_unique
    assert (table["state"] == "complete").all(), table["state"].value_counts()


@pytest.mark.timeout(150)
def test_the_manifest_runs_a_search_and_a_deleted_worker_pod_loses_no_trial(
    emulated_kubernetes: EmulatedKubernetes, manifest_cluster: str, tmp_path: Path
) -> None:
    from distributed import Client

    kube = emulated_kubernetes
    with Client(manifest_cluster) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(2, timeout=60)
        workers = client.scheduler_info()["workers"]
        # The operator names each worker after its Deployment (DASK_WORKER_NAME).
        assert {w["name"] for w in workers.values()} == {
            pod["metadata"]["ownerReferences"][0]["name"] for pod in kube.worker_pods("morphml")
        }
        assert {w["resources"].get("GPU") for w in workers.values()} == {1}
        thread, out = _in_background(lambda: _search(client, tmp_path / "store", 16))
        page = _get(f"{kube.dashboard_address('morphml')}/morphml")
        assert "bokeh" in page.lower(), "the manifest's scheduler serves no morphml page"

        busy: list[str] = []

        def a_trial_runs() -> bool:
            # Some trials done, one running: it is lost with its worker and must run again.
            if time.monotonic() - start > 2:
                busy.extend(w for w, keys in _processing(client).items() if keys)
            return bool(busy)

        start = time.monotonic()
        kube.wait_for(a_trial_runs, 60, "a worker running a trial")
        victim = workers[busy[0]]["name"]
        [pod] = [
            p
            for p in kube.worker_pods("morphml")
            if p["metadata"]["ownerReferences"][0]["name"] == victim
        ]
        kube.delete(PODS, pod["metadata"]["name"])
        table = _result(thread, out, 120)
        _assert_each_trial_once(table, 16)
        # The Deployment got a new pod, whose worker joined under the same name.
        kube.wait_for(
            lambda: any(
                p["metadata"]["ownerReferences"][0]["name"] == victim
                and p["metadata"]["name"] != pod["metadata"]["name"]
                for p in kube.worker_pods("morphml")
            ),
            30,
            "the worker's Deployment to replace its pod",
        )
        client.wait_for_workers(2, timeout=60)
    from morphml_dask.storage import open_store

    _assert_each_trial_once(open_store(str(tmp_path / "store")).trials(), 16)


@pytest.mark.timeout(150)
def test_the_autoscaler_adds_workers_while_trials_wait_and_removes_them_after(
    emulated_kubernetes: EmulatedKubernetes, manifest_cluster: str, tmp_path: Path
) -> None:
    from distributed import Client

    kube = emulated_kubernetes
    autoscaler = _manifest("autoscaler.yaml")
    assert autoscaler["spec"]["cluster"] == "morphml"
    autoscaler["spec"]["maximum"] = 3  # as many worker processes as two cores bear

    def replicas() -> int:
        group = kube.get(WORKER_GROUPS, "morphml-default")
        assert group is not None
        return int(group["spec"]["worker"]["replicas"])

    with Client(manifest_cluster) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(2, timeout=60)
        assert replicas() == 2
        # Ten trials queued beyond the two free slots: the scheduler wants more workers.
        thread, out = _in_background(lambda: _search(client, tmp_path / "store", 24, lookahead=10))
        kube.wait_for(lambda: len(_processing(client)) == 2 and _queued(client) >= 4, 30, "trials")
        kube.apply(autoscaler)
        kube.wait_for(lambda: replicas() == 3, 30, "the autoscaler to ask for a third worker")
        client.wait_for_workers(3, timeout=60)
        assert len(kube.worker_pods("morphml")) == 3
        _assert_each_trial_once(_result(thread, out, 120), 24)
        # Idle, it scales down once its 15 s cool-down after the scale-up has passed.
        kube.wait_for(lambda: replicas() < 3, 45, "the autoscaler to remove a worker")
        kube.wait_for(lambda: len(kube.worker_pods("morphml")) < 3, 30, "a worker pod to go")
    kube.delete("kubernetes.dask.org/v1/daskautoscalers", "morphml")


def _queued(client: Client) -> int:
    """Trials submitted and not yet running (on two one-trial workers)."""
    return sum(len(keys) for keys in _processing(client).values()) - 2


def _processing(client: Client) -> dict[str, list[str]]:
    """The keys each worker holds to run."""
    processing: dict[str, list[str]] = client.processing()  # type: ignore[no-untyped-call]
    return processing


@pytest.mark.timeout(150)
def test_kubernetes_cluster_comes_up_and_its_scheduler_serves_the_morphml_page(
    emulated_kubernetes: EmulatedKubernetes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from distributed import Client

    from morphml_dask.deploy import kubernetes_cluster

    kube = emulated_kubernetes
    for name, value in kube.env.items():
        monkeypatch.setenv(name, value)
    cluster = kubernetes_cluster(
        "morphml-python",
        image="ghcr.io/morphml/morphml-dask:latest",  # not pulled: the kubelet runs local dask
        n_workers=1,
        gpus_per_worker=1,
        scheduler_service_type="NodePort",  # reached at the Node's InternalIP, 127.0.0.1
        resource_timeout=60,
    )
    try:
        assert cluster.scheduler_address == kube.scheduler_address("morphml-python")
        with Client(cluster) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(1, timeout=60)
            table = _search(client, tmp_path / "store", 4)
            _assert_each_trial_once(table, 4)
            dashboard = kube.dashboard_address("morphml-python")
            page = _get(f"{dashboard}/morphml")
            assert "<html" in page.lower() and "bokeh" in page.lower()
            assert "search" in _get(f"{dashboard}/morphml/state.json")
            metrics = _get(f"{dashboard}/metrics")
            assert "dask_scheduler_workers" in metrics
            assert 'morphml_trials{search="' in metrics, "the search's progress is not scraped"
    finally:
        cluster.close()
    # Closing deletes the DaskCluster; its Deployments, Service and pods go with it.
    kube.wait_for(
        lambda: not kube.objects(PODS, {"dask.org/cluster-name": "morphml-python"}),
        30,
        "the cluster's pods to go",
    )
    assert kube.get("v1/services", "morphml-python-scheduler") is None


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


@pytest.mark.timeout(150)
def test_the_helm_charts_daskcluster_runs_a_search(
    emulated_kubernetes: EmulatedKubernetes, tmp_path: Path
) -> None:
    """The DaskCluster the chart renders (default values but one worker, with credentials)
    is the one the operator runs: its workers take GPU trials and its scheduler serves the
    morphml page."""
    from _helm import render_chart  # skips, saying how to install it, without Helm's library
    from distributed import Client

    kube = emulated_kubernetes
    values = {
        "worker": {"replicas": 1},
        "store": {"s3": {"accessKeyId": "a", "secretAccessKey": "b"}},
    }
    rendered = {o["kind"]: o for o in render_chart(values, release="chart")}
    kube.apply(rendered["Secret"])
    address = kube.run_daskcluster(rendered["DaskCluster"], timeout=90)
    name = rendered["DaskCluster"]["metadata"]["name"]
    try:
        with Client(address) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(1, timeout=60)
            [worker] = client.scheduler_info()["workers"].values()
            assert worker["resources"] == {"GPU": 1}
            _assert_each_trial_once(_search(client, tmp_path / "store", 4), 4)
            page = _get(f"{kube.dashboard_address(name)}/morphml")
            assert "bokeh" in page.lower()
    finally:
        kube.delete("kubernetes.dask.org/v1/daskclusters", name)
    kube.wait_for(
        lambda: not kube.objects(PODS, {"dask.org/cluster-name": name}), 30, "the pods to go"
    )
