"""SLURM deployment: `slurm_cluster` against real SLURM daemons on this machine.

The module fixture starts slurmctld, slurmd and munged with ``scripts/slurm-local.sh``: one
node, every daemon on 127.0.0.1, two fake GPUs (GRES ``fakegpu``). Workers are real SLURM
jobs submitted with sbatch by dask-jobqueue; trials and tasks run inside them. The wiring
and error tests only build job scripts (no daemons needed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask.config
import pytest
import yaml

from morphml_dask.exceptions import ClusterError

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "slurm-local.sh"
STATE = Path(os.environ.get("MORPHML_SLURM_DIR", "/tmp/morphml-slurm"))
# The settings for one node on this machine: loopback only, a dashboard on a free port.
LOCAL: dict[str, Any] = {
    "cores": 1,
    "memory": "1GB",
    "walltime": "00:10:00",
    "queue": "debug",
    "interface": "lo",
    "scheduler_options": {"dashboard_address": "127.0.0.1:0"},
}


@pytest.fixture(scope="module")
def slurm() -> Iterator[None]:
    """SLURM up for this module; stopped again at the end unless it was running before."""
    pytest.importorskip("dask_jobqueue", reason="the SLURM tests need dask-jobqueue (slurm extra)")
    was_running = _script("status").returncode == 0
    started = _script("start")
    if started.returncode == 2:  # not root, or no apt-get: this machine cannot run SLURM
        pytest.skip(f"scripts/slurm-local.sh cannot start SLURM here: {started.stderr.strip()}")
    assert started.returncode == 0, f"scripts/slurm-local.sh start failed:\n{started.stderr}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(STATE / "slurm.conf"))
        yield
    if not was_running:
        _script("stop")


@pytest.fixture
def make_cluster(slurm: None, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Builds `slurm_cluster`s with fake GPUs; closes them and cancels their jobs after."""
    from morphml_dask.deploy._slurm import slurm_cluster

    clusters: list[Any] = []

    def make(**options: Any) -> Any:
        cluster = slurm_cluster(
            **LOCAL,
            gpus_per_worker=1,
            gres="fakegpu",
            worker_extra_args=["--dashboard-address", "127.0.0.1:0"],
            job_extra_directives=["--no-requeue"],
            log_directory=str(tmp_path / "slurm-logs"),
            **options,
        )
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()
    jobs = list(_squeue())
    if jobs:
        subprocess.run(["scancel", *jobs], check=False)
    assert _eventually(lambda: not _squeue(), 30), f"jobs left over: {_squeue()}"


def _script(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), command], capture_output=True, text=True, timeout=300, check=False
    )


def _squeue() -> dict[str, tuple[str, str]]:
    """Job id -> (state, reason) of every job SLURM lists."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %t %r"], capture_output=True, text=True, check=True
    ).stdout
    return {
        job: (state, reason) for job, state, reason in (line.split() for line in out.splitlines())
    }


def _eventually(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# -- real SLURM ------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_search_runs_in_slurm_jobs_two_fake_gpus(
    make_cluster: Callable[..., Any], tmp_path: Path
) -> None:
    from distributed import Client

    from morphml_dask.deploy._slurm import worker_job_id
    from morphml_dask.driver import Search
    from morphml_dask.optim import RandomSearch
    from morphml_dask.space import CellSpace
    from morphml_dask.tasks import NB201TabularTask

    cluster = make_cluster()
    cluster.scale(jobs=3)  # one GPU each, two GPUs: the third job waits for one
    with Client(cluster) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(2, timeout=60)
        jobs: dict[str, str] = client.run(worker_job_id)
        listed = _squeue()
        assert sorted(state for state, _ in listed.values()) == ["PD", "R", "R"], listed

        def waits_for_resources() -> bool:
            # A new job pends for "Priority" until SLURM's next scheduling pass looks at it.
            pending = {reason for state, reason in _squeue().values() if state == "PD"}
            return pending == {"Resources"}

        assert _eventually(waits_for_resources, 30), _squeue()
        assert {listed[job][0] for job in jobs.values()} == {"R"}

        table = Search(
            RandomSearch(CellSpace(), max_trials=20, seed=0),
            NB201TabularTask(time_scale=0.001),
            store=str(tmp_path / "store"),
            client=client,
            gpus_per_trial=1,
        ).run()
        assert len(client.scheduler_info()["workers"]) == 2  # the third job still waits
    assert len(table) == 20 and (table["state"] == "complete").all()
    ran = table[~table["reused"]]
    assert not ran.empty and set(ran["worker"]) <= set(jobs)
    # Each trial's row names the SLURM job of the worker it ran on.
    assert ran["job_id"].tolist() == [jobs[worker] for worker in ran["worker"]]


@pytest.mark.timeout(120)
def test_adapt_submits_jobs_for_work_and_cancels_them_after(
    make_cluster: Callable[..., Any],
) -> None:
    from distributed import Client

    def sleep_in_job(seconds: float) -> str | None:
        # Nested, so pickled by value: the workers cannot import this test module.
        from morphml_dask.deploy._slurm import worker_job_id

        time.sleep(seconds)
        return worker_job_id()

    cluster = make_cluster()
    cluster.adapt(minimum=0, maximum=2, interval="500ms", wait_count=2, target_duration="1s")
    assert not _squeue()
    seen: dict[str, tuple[str, str]] = {}
    peak = 0
    with Client(cluster) as client:  # type: ignore[no-untyped-call]
        futures = client.map(sleep_in_job, [1.5] * 6, pure=False, resources={"GPU": 1})
        deadline = time.monotonic() + 60
        while not all(future.done() for future in futures) and time.monotonic() < deadline:
            listed = _squeue()
            seen.update(listed)
            peak = max(peak, sum(state in ("PD", "CF", "R") for state, _ in listed.values()))
            time.sleep(0.2)
        ran_in = set(client.gather(futures))
        assert len(ran_in) >= 1 and ran_in <= set(seen), (ran_in, seen)
        assert any(state == "R" for state, _ in seen.values()), seen
        assert 1 <= peak <= 2, seen  # adapt's maximum: never more than two jobs at once
        # Idle, and no results held (a worker holding data is kept): adapt retires the
        # workers and dask-jobqueue cancels their jobs.
        del futures
        assert _eventually(lambda: not _squeue(), 30), f"jobs still there: {_squeue()}"
        assert not client.scheduler_info()["workers"]


# -- wiring and errors (job scripts only) -----------------------------------------------------


def _job_script(**options: Any) -> str:
    from morphml_dask.deploy._slurm import slurm_cluster

    cluster = slurm_cluster(**{**LOCAL, **options})
    try:
        return str(cluster.job_script())  # type: ignore[no-untyped-call]
    finally:
        cluster.close()


def test_gpus_resources_and_lifetime_are_wired_together() -> None:
    pytest.importorskip("dask_jobqueue")
    script = _job_script(gpus_per_worker=1, gres="fakegpu")
    assert "#SBATCH --gres=fakegpu:1" in script
    assert "--resources GPU=1" in script
    # Ten minutes of walltime: retire after 550 s, give or take 40 s, before SLURM's kill.
    assert "--lifetime 550s --lifetime-stagger 40s" in script
    assert "-t 00:10:00" in script

    script = _job_script(
        gpus_per_worker=2,
        walltime="1-00:00:00",
        worker_extra_args=["--resources", "MEM=3"],
        dashboard_address="127.0.0.1:0",
    )
    assert "#SBATCH --gres=gpu:2" in script and "--resources MEM=3,GPU=2" in script
    assert "--lifetime 85800s --lifetime-stagger 480s" in script  # a day: 10 min of margin

    plain = _job_script()
    assert "--gres" not in plain and "--resources" not in plain and "--lifetime 550s" in plain


def test_the_shipped_jobqueue_yaml_works_with_slurm_cluster() -> None:
    pytest.importorskip("dask_jobqueue")
    document = yaml.safe_load((ROOT / "clusters" / "slurm" / "jobqueue.yaml").read_text())
    site = {f"jobqueue.slurm.{key}": value for key, value in document["jobqueue"]["slurm"].items()}
    with dask.config.set(site):
        script = _job_script(
            gpus_per_worker=1,
            cores=None,
            memory=None,
            walltime=None,
            queue=None,
            interface="lo",
        )
        assert script.count("--gres=gpu:1") == 1 and script.count("--resources GPU=1") == 1
        assert script.count("--lifetime") == 2  # --lifetime and --lifetime-stagger, once
        # Sites spell GPU requests differently: the same count is the same request.
        for site_gpus in ("--gpus=1", "--gres=gpu:a100:1", "-G 1"):
            with dask.config.set({"jobqueue.slurm.job-extra-directives": [site_gpus]}):
                script = _job_script(gpus_per_worker=1, walltime=None, interface="lo")
            asks = [line for line in script.splitlines() if "gpu" in line or "-G" in line]
            assert asks[:1] == [f"#SBATCH {site_gpus}"] and "--gres" not in "".join(asks[1:])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gpus_per_worker": -1}, r"invalid gpus_per_worker.*fix: pass e\.g\. gpus_per_worker=1"),
        ({"gpus_per_worker": True}, r"invalid gpus_per_worker.*received: True"),
        ({"gpus_per_worker": 1, "gres": "gpu 1"}, r"invalid gres.*received: 'gpu 1'.*sinfo -o %G"),
        (
            {"gres": "fakegpu"},
            r"gres is set but no GPUs are asked for.*fix: pass gpus_per_worker=1 \(or more\) with gres='fakegpu'",
        ),
        (
            {"gpus_per_worker": 1, "job_extra_directives": ["--gres=gpu:2"]},
            r"GPUs are asked for twice, differently.*expected: one GPU request per job, here '--gres=gpu:1'.*received: .*'--gres=gpu:2'",
        ),
        (
            {"gpus_per_worker": 1, "worker_extra_args": ["--resources", "GPU=2"]},
            r"GPU resources disagree with gpus_per_worker.*fix: remove GPU from --resources",
        ),
        (
            {"gpus_per_worker": 1, "processes": 2},
            r"GPU jobs must run one worker process.*received: processes=2",
        ),
        (
            {"walltime": "1:00:xx"},
            r"invalid walltime.*'D-HH:MM:SS'.*fix: pass e\.g\. walltime='01:00:00'",
        ),
        ({"walltime": "00:00:00"}, r"invalid walltime.*received: '00:00:00'"),
        (
            {"walltime": "01:00:00", "lifetime": "70m"},
            r"workers would outlive their SLURM jobs.*below the walltime \(3600s\).*received: lifetime 4200s",
        ),
        (
            {"walltime": "01:00:00", "lifetime": "50m", "lifetime_stagger": "15m"},
            r"workers would outlive.*lifetime 3000s, lifetime_stagger 900s",
        ),
        (
            {"lifetime": "soon"},
            r"invalid lifetime.*received: 'soon'.*fix: pass e\.g\. lifetime='55m'",
        ),
        (
            {"lifetime": "50m", "worker_extra_args": ["--lifetime", "40m"]},
            r"worker lifetime is set twice.*fix: drop --lifetime and --lifetime-stagger",
        ),
        (
            {"worker_extra_args": ["--lifetime", "11m"]},
            r"workers would outlive.*below the walltime \(600s\)",
        ),
        ({"cores": 0}, r"invalid cores.*received: 0.*fix: pass e\.g\. cores=8"),
        ({"memory": "lots"}, r"invalid memory.*received: 'lots'.*fix: pass e\.g\. memory='64GB'"),
        (
            {"cores": None, "memory": None},
            r"size of a SLURM job is not set.*fix: pass e\.g\. slurm_cluster\(cores=8, memory='64GB'\)",
        ),
    ],
)
def test_bad_arguments_say_what_to_do(options: dict[str, Any], message: str) -> None:
    pytest.importorskip("dask_jobqueue")
    with pytest.raises(ClusterError, match=f"(?s){message}"):
        _job_script(**options)


def test_missing_dask_jobqueue_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from morphml_dask.deploy._slurm import slurm_cluster

    for module in ("dask_jobqueue", "dask_jobqueue.slurm"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(
        ClusterError,
        match=r"(?s)dask-jobqueue is not installed.*fix: pip install 'morphml_dask\[slurm\]'",
    ):
        slurm_cluster(gpus_per_worker=1, cores=1, memory="1GB")


def test_worker_job_id_outside_slurm_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    from morphml_dask.deploy._slurm import worker_job_id

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert worker_job_id() is None
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    assert worker_job_id() == "1234"


@pytest.mark.timeout(240)
def test_morphml_run_cluster_slurm_runs_the_search_in_slurm_jobs(
    slurm: None, tmp_path: Path
) -> None:
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        yaml.safe_dump(
            {
                "name": "cli-slurm",
                "space": {"name": "nb201-cell"},
                "task": {"name": "nb201-tabular", "time_scale": 0.005},
                "optimizer": {"name": "random-search", "seed": 3},
                "max_trials": 12,
                "gpus_per_trial": 1,
                "store": str(tmp_path / "store"),
            }
        )
    )
    # The site's dask-jobqueue settings, as a jobqueue.yaml would give them.
    site = {
        "DASK_JOBQUEUE__SLURM__CORES": "1",
        "DASK_JOBQUEUE__SLURM__MEMORY": "1GB",
        "DASK_JOBQUEUE__SLURM__WALLTIME": "00:10:00",
        "DASK_JOBQUEUE__SLURM__QUEUE": "debug",
        "DASK_JOBQUEUE__SLURM__INTERFACE": "lo",
        "DASK_JOBQUEUE__SLURM__SCHEDULER_OPTIONS": '{"dashboard_address": "127.0.0.1:0"}',
        "DASK_JOBQUEUE__SLURM__WORKER_EXTRA_ARGS": '["--dashboard-address", "127.0.0.1:0"]',
        "DASK_JOBQUEUE__SLURM__JOB_EXTRA_DIRECTIVES": '["--no-requeue"]',
        "DASK_MORPHML__CLUSTER__GRES": "fakegpu",
        "DASK_JOBQUEUE__SLURM__LOG_DIRECTORY": str(tmp_path / "slurm-logs"),
        "DASK_MORPHML__CLUSTER__MAXIMUM_WORKERS": "2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "morphml_dask.cli", "run", str(experiment), "--cluster", "slurm"],
        env={**os.environ, **site},
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    from morphml_dask.storage import open_store

    table = open_store(str(tmp_path / "store")).trials()
    assert len(table) == 12 and (table["state"] == "complete").all()
    ran = table.dropna(subset=["worker"])
    assert len(ran) > 0 and ran["job_id"].notna().all()
    assert _eventually(lambda: not _squeue(), 30), "the CLI left SLURM jobs behind"
