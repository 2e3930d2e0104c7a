"""Walltime-aware placement: a long trial is kept off a worker that retires before it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster

from morphml_dask.chaos import ExecutionLog, executions
from morphml_dask.driver import Search
from morphml_dask.optim import RandomSearch
from morphml_dask.space import CellSpace
from morphml_dask.tasks import NB201TabularTask

LIFETIME_S = 25
LONG_S, SHORT_S = 6.0, 0.3


def test_long_trials_stay_off_a_worker_about_to_retire(tmp_path: Path) -> None:
    class LongAndShort(NB201TabularTask):
        """Every fourth architecture trains for 6 s, the others for 0.3 s; it says so."""

        def expected_seconds(self, arch: Any, epochs: int) -> float:
            return LONG_S if CellSpace().to_index(arch) % 4 == 0 else SHORT_S

        def evaluate(self, arch: Any, budget: int = 12, **kwargs: Any) -> Any:
            time.sleep(self.expected_seconds(arch, budget))
            return super().evaluate(arch, budget, **kwargs)

    logs = tmp_path / "executions"
    logs.mkdir()
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        client.register_plugin(ExecutionLog(logs))
        staying = set(client.scheduler_info()["workers"])
        retiring = subprocess.Popen(
            [
                *(Path(sys.executable).parent / "dask", "worker", cluster.scheduler_address),
                *("--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard", "--no-nanny"),
                *("--lifetime", f"{LIFETIME_S}s", "--lifetime-stagger", "0s"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client.wait_for_workers(2, timeout=60)
            (leaving,) = set(client.scheduler_info()["workers"]) - staying
            search = Search(
                RandomSearch(CellSpace(), max_trials=40, seed=0),
                LongAndShort(),
                store=str(tmp_path / "store"),
                client=client,
                lookahead=0,
            )
            table = search.run()
            retiring.wait(timeout=60)  # it leaves by itself at the end of its lifetime
        finally:
            retiring.kill()

    ran = table.dropna(subset=["worker"])
    on_leaving = ran[ran["worker"] == leaving]
    assert len(on_leaving) > 0, "the retiring worker ran nothing: the test shows nothing"
    long_trials = ran[(ran["end_time"] - ran["start_time"]) > LONG_S - 1]
    assert len(long_trials) >= 4
    # No trial was cut off by the retirement: every trial ran once and completed.
    runs = Counter(key for _, key in executions(logs))
    assert max(runs.values()) == 1, runs.most_common(3)
    assert len(table) == 40 and (table["state"] == "complete").all()
    assert (table["attempt"] == 1).all()
    # Long trials went elsewhere once the retiring worker had too little time left for them.
    status = search.status()
    assert status.kept_off_retiring_workers > 0


def test_a_trial_whose_only_workers_all_left_is_submitted_again(tmp_path: Path) -> None:
    """Placement restricts each trial strictly to the workers that outlive it. When all of
    them leave while the trial is queued or running (here the nanny of the only such worker
    restarts it under a new address), the trial is cancelled and submitted again, and the
    cancelled task that Dask hands back to the driver is ignored."""

    class SaysLong(NB201TabularTask):
        """Announces 60 s per trial, which keeps trials off the worker retiring in 40 s;
        takes one."""

        def expected_seconds(self, arch: Any, epochs: int) -> float:
            return 60.0

        def evaluate(self, arch: Any, budget: int = 12, **kwargs: Any) -> Any:
            time.sleep(1.0)
            return super().evaluate(arch, budget, **kwargs)

    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        staying = set(client.scheduler_info()["workers"])
        retiring = subprocess.Popen(
            [
                *(Path(sys.executable).parent / "dask", "worker", cluster.scheduler_address),
                *("--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard", "--no-nanny"),
                *("--lifetime", "40s", "--lifetime-stagger", "0s"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client.wait_for_workers(2, timeout=60)
            search = Search(
                RandomSearch(CellSpace(), max_trials=6, seed=0),
                SaysLong(),
                store=str(tmp_path / "store"),
                client=client,
                lookahead=0,
            ).start()
            deadline = time.monotonic() + 60
            while search.status().running < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # the first trial is running, the second queued behind it
            (pid,) = client.run(os.getpid, workers=list(staying)).values()
            os.kill(pid, signal.SIGKILL)
            table = search.wait(timeout=120)
        finally:
            retiring.kill()

    assert len(table) == 6 and table["trial_id"].is_unique
    assert (table["state"] == "complete").all()
    ran = table[~table["reused"]]
    assert not set(ran["worker"]) & staying, "a trial completed on the killed worker"
    status = search.status()
    assert status.retried >= 2, "the stranded trials were not submitted again"
    assert (ran["attempt"] - 1).sum() == status.retried
    assert status.kept_off_retiring_workers >= len(ran)
