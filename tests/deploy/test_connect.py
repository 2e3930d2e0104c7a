"""`connect`: the cluster a command runs on, and what it says when it cannot get one."""

from __future__ import annotations

from typing import Any

import dask.config
import pytest

from morphml_dask.deploy import connect
from morphml_dask.exceptions import ClusterError, SchedulerUnreachableError


def _refused(*args: Any, **kwargs: Any) -> Any:
    raise OSError("Timed out trying to connect to tcp://127.0.0.1:9 after 30 s")


@pytest.mark.parametrize(
    ("address", "fix"),
    [
        ("tcp://127.0.0.1:9", "a scheduler that requires TLS has a tls:// address and needs"),
        ("tls://127.0.0.1:9", r"a tls:// scheduler needs --tls-ca-file, --tls-cert and --tls-key"),
    ],
)
def test_an_unreachable_scheduler_is_an_outage_not_bad_input(
    monkeypatch: pytest.MonkeyPatch, address: str, fix: str
) -> None:
    import distributed

    monkeypatch.setattr(distributed, "Client", _refused)
    with (
        pytest.raises(
            SchedulerUnreachableError,
            match=rf"cannot connect to the Dask scheduler at {address}\n"
            r"  expected: a running scheduler that accepts this client\n"
            r"  received: OSError: Timed out trying to connect to tcp://127.0.0.1:9 after 30 s\n"
            rf"  fix: check the address and that the scheduler runs; {fix}",
        ) as raised,
        connect(address, None, name="search", gpus_per_trial=0),
    ):
        pass
    # `except ValueError` (bad input) in a user's code does not swallow an outage.
    assert isinstance(raised.value, OSError) and not isinstance(raised.value, ValueError)


def test_an_unknown_cluster_kind_is_refused() -> None:
    with (
        pytest.raises(
            ClusterError,
            match=r"unknown cluster kind 'slurn'\n  expected: one of local, slurm, kubernetes\n"
            r"  received: 'slurn'\n  fix: pass --cluster local, slurm or kubernetes \(or set "
            r"morphml.cluster.kind\)",
        ),
        connect(None, "slurn", name="search", gpus_per_trial=0),
    ):
        pass


def test_an_address_and_a_cluster_kind_together_are_refused() -> None:
    with (
        pytest.raises(
            ClusterError,
            match=r"both a scheduler address and a cluster kind\n"
            r"  expected: --scheduler ADDRESS or --cluster KIND\n"
            r"  received: --scheduler tcp://127.0.0.1:9 --cluster slurm\n"
            r"  fix: drop one of them: --scheduler connects to a running cluster, --cluster "
            r"starts one",
        ),
        connect("tcp://127.0.0.1:9", "slurm", name="search", gpus_per_trial=0),
    ):
        pass


def test_kubernetes_without_an_image_says_which_setting_to_set() -> None:
    with (
        dask.config.set({"morphml.cluster.image": None}),
        pytest.raises(
            ClusterError,
            match=r"no image for the Kubernetes workers\n"
            r"  expected: the image built from clusters/kubernetes/Dockerfile\n"
            r"  received: morphml.cluster.image is null\n"
            r"  fix: set DASK_MORPHML__CLUSTER__IMAGE=registry/morphml-dask:TAG",
        ),
        connect(None, "kubernetes", name="search", gpus_per_trial=1),
    ):
        pass


def test_the_local_kind_leaves_the_cluster_to_the_search() -> None:
    with connect(None, "local", name="search", gpus_per_trial=0) as client:
        assert client is None


# -- whole GPUs per worker, whatever share of one a trial takes --------------------------------

# A SLURM job of this machine's shape: dask-jobqueue renders its script without SLURM.
SLURM_SITE = {
    "jobqueue.slurm.cores": 4,
    "jobqueue.slurm.memory": "1GB",
    "jobqueue.slurm.walltime": "00:10:00",
    "jobqueue.slurm.interface": "lo",
    "jobqueue.slurm.scheduler-options": {"dashboard_address": "127.0.0.1:0"},
}


@pytest.mark.parametrize(("gpus_per_trial", "gpus"), [(0.5, 1), (0.25, 1), (1, 1), (2, 2)])
def test_slurm_jobs_ask_for_whole_gpus_and_offer_them_to_dask(
    gpus_per_trial: float, gpus: int
) -> None:
    pytest.importorskip("dask_jobqueue", reason="the SLURM helper needs dask-jobqueue")
    from morphml_dask.deploy._connect import _start

    with dask.config.set(SLURM_SITE):  # dask-jobqueue reads it for each job it makes
        cluster = _start("slurm", "search", gpus_per_trial)
        try:
            script = str(cluster.job_script())
        finally:
            cluster.close()
    assert f"#SBATCH --gres=gpu:{gpus}\n" in script
    assert f"--resources GPU={gpus} " in script
    # One worker process per job, a thread per core: up to four trials share its GPU.
    assert "--nthreads 4 " in script and "--nworkers" not in script


def test_a_slurm_job_with_fewer_cores_than_trials_sharing_its_gpu_is_refused() -> None:
    pytest.importorskip("dask_jobqueue", reason="the SLURM helper needs dask-jobqueue")
    from morphml_dask.deploy._connect import _start

    with (
        dask.config.set({**SLURM_SITE, "jobqueue.slurm.cores": 2}),
        pytest.raises(
            ClusterError,
            match=r"(?s)a SLURM job has fewer cores than trials share its GPU.*"
            r"jobqueue.slurm.cores of 4 or more.*received: jobqueue.slurm.cores = 2.*"
            r"fix: set jobqueue.slurm.cores to 4 \(or more\), or gpus_per_trial to 0.5",
        ),
    ):
        _start("slurm", "search", 0.25)


@pytest.mark.parametrize(
    ("gpus_per_trial", "gpus", "threads"), [(0.5, 1, "2"), (0.25, 1, "4"), (1, 1, "1"), (2, 2, "2")]
)
def test_kubernetes_workers_ask_for_whole_gpus_and_run_the_trials_that_share_them(
    monkeypatch: pytest.MonkeyPatch, gpus_per_trial: float, gpus: int, threads: str
) -> None:
    operator = pytest.importorskip("dask_kubernetes.operator")
    from morphml_dask.deploy._connect import _start

    specs: list[dict[str, Any]] = []

    def record(*, custom_cluster_spec: dict[str, Any], **kwargs: Any) -> str:
        specs.append(custom_cluster_spec)
        return "cluster"

    monkeypatch.setattr(operator, "KubeCluster", record)
    with dask.config.set({"morphml.cluster.image": "registry.example/morphml-dask:1"}):
        assert _start("kubernetes", "search", gpus_per_trial) == "cluster"
    (spec,) = specs
    (worker,) = spec["spec"]["worker"]["spec"]["containers"]
    assert worker["resources"]["limits"] == {"nvidia.com/gpu": str(gpus)}
    args = worker["args"]
    assert args[args.index("--resources") + 1] == f"GPU={gpus}"
    assert args[args.index("--nthreads") + 1] == threads
