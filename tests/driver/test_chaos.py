"""Chaos with real processes: worker processes and the driver SIGKILLed mid-search."""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml
from distributed import Client, LocalCluster

from morphml_dask.chaos import driver_chaos, worker_chaos
from morphml_dask.optim import RegularizedEvolution
from morphml_dask.space import CellSpace
from morphml_dask.tasks import NB201TabularTask


def test_killing_worker_processes_loses_and_duplicates_no_trial(tmp_path: Path) -> None:
    logs = tmp_path / "executions"
    logs.mkdir()
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=4, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    )
    client = Client(cluster)  # type: ignore[no-untyped-call]
    try:
        report, _ = worker_chaos(
            client,
            RegularizedEvolution(CellSpace(), population_size=20, max_trials=300, seed=0),
            NB201TabularTask(time_scale=0.002),  # trials of about 0.2 s
            str(tmp_path / "store"),
            logs,
            interval=2.0,
        )
    finally:
        # Closing a LocalCluster whose nanny is restarting a SIGKILLed worker can hang in
        # distributed (seen once in CI, after the search had finished): bound the teardown,
        # which is not what this test is about.
        with contextlib.suppress(TimeoutError):
            client.close(timeout=30)  # type: ignore[no-untyped-call]
            cluster.close(timeout=60)
    assert report.kills >= 3, report
    assert report.interrupted > 0, report
    assert (report.requested, report.stored, report.duplicated, report.lost) == (300, 300, 0, 0)
    assert report.failed_lost == 0, report
    assert report.longest_kill_to_rerun_s is not None and report.longest_kill_to_rerun_s < 30


def test_killing_the_driver_and_resuming_runs_every_trial_once(tmp_path: Path) -> None:
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        yaml.safe_dump(
            {
                "name": "driver-chaos",
                "space": {"name": "nb201-cell"},
                "task": {"name": "nb201-tabular", "dataset": "cifar10", "time_scale": 0.002},
                "optimizer": {"name": "regularized-evolution", "population_size": 20, "seed": 0},
                "max_trials": 200,
                "store": str(tmp_path / "unused"),
            }
        )
    )
    logs = tmp_path / "executions"
    logs.mkdir()
    with LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0"
    ) as cluster:
        report = driver_chaos(
            cluster.scheduler_address,
            experiment,
            str(tmp_path / "store"),
            logs,
            kills=2,
            first_kill_after=(1.0, 4.0),
        )
    assert report.kills == 2, report
    assert (report.requested, report.stored, report.duplicated, report.lost) == (200, 200, 0, 0)
    assert report.reruns <= report.in_flight_at_kills, report
    assert not (tmp_path / "unused").exists()
