"""Real-training chaos on S3: trials that train on digits and write weights, promoted by
ASHA from their parents' weights or made as Lamarckian children of them, on the moto S3
server, while worker processes are SIGKILLed every few seconds and the store's endpoint goes
down for 10 s."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

import s3fs
from distributed import Client, LocalCluster

from morphml_dask.chaos import ChaosReport, training_chaos
from morphml_dask.faults import TcpOutage
from morphml_dask.models import build_model
from morphml_dask.optim import ASHA, BaseOptimizer, RegularizedEvolution
from morphml_dask.space import DagSpace
from morphml_dask.storage import open_store
from morphml_dask.tasks import TrainingTask
from morphml_dask.testing import morph_space
from morphml_dask.trial import TrialRecord

TRIALS = 24
LAMARCKIAN_TRIALS = 16


def _chaos_on_s3(
    tmp_path: Path, s3_endpoint: str, optimizer: BaseOptimizer, task: TrainingTask
) -> tuple[ChaosReport, dict[str, TrialRecord], dict[str, dict[str, Any]]]:
    """`training_chaos` on a fresh bucket of the moto S3 server, two worker processes; the
    report, the stored records by trial id, and the weights of every trial another trial
    trained on from (read while the endpoint is still up)."""
    logs = tmp_path / "executions"
    logs.mkdir()
    with TcpOutage(int(s3_endpoint.rsplit(":", 1)[1])) as outage:
        options = {"key": "testing", "secret": "testing", "endpoint_url": outage.endpoint}
        bucket = f"chaos-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(**options).mkdir(bucket)
        url = f"s3://{bucket}/search"
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        )
        client = Client(cluster)  # type: ignore[no-untyped-call]
        try:
            report, _ = training_chaos(
                client,
                optimizer,
                task,
                url,
                logs,
                outage,
                storage_options=options,
                interval=6.0,
                outage_after=3.0,
                outage_seconds=10.0,
            )
        finally:
            # As in test_chaos: bound a teardown that can hang while a nanny restarts a
            # killed worker; it is not what this test is about.
            with contextlib.suppress(TimeoutError):
                client.close(timeout=30)  # type: ignore[no-untyped-call]
                cluster.close(timeout=60)
        store = open_store(url, options)
        records = {record.trial_id: record for record in store.records()}
        # A reused trial trained nothing and loaded nothing (its result is an earlier one's).
        trained = [r for r in records.values() if not r.reused]
        parents = {p for r in trained if (p := r.trial.parent) is not None}
        loaded = {parent: store.load_weights(parent) for parent in parents}
    return report, records, loaded


def _assert_survived(report: ChaosReport, trials: int) -> None:
    assert (report.requested, report.stored, report.duplicated, report.lost) == (
        (trials, trials, 0, 0)
    ), report
    assert report.kills >= 3 and report.interrupted > 0, report
    assert len(report.outage_s) == 2 and report.outage_s[1] - report.outage_s[0] >= 10, report
    assert report.failed_by_chaos == 0 and report.failed_lost == 0, report
    assert report.parents_missing == [], report
    # Reported; its size depends on how fast a killed worker restarts (it imports torch),
    # which on a loaded 2-core machine takes from seconds to over a minute.
    assert report.longest_kill_to_rerun_s is not None and report.longest_kill_to_rerun_s > 0


def test_training_under_kills_and_an_outage_keeps_every_trial_and_its_weights(
    tmp_path: Path, s3_endpoint: str
) -> None:
    report, records, loaded = _chaos_on_s3(
        tmp_path,
        s3_endpoint,
        ASHA(DagSpace(max_nodes=3), budgets=[1, 3, 9], eta=3, max_trials=TRIALS, seed=0),
        TrainingTask("digits", max_epochs=9, batch_size=128),
    )
    _assert_survived(report, TRIALS)
    # Every promoted trial's parent weights are in the store and load.
    promoted = [r for r in records.values() if r.trial.parent and not r.reused]
    assert report.promoted == len(promoted) > 0, report
    assert loaded and all(loaded.values())


def test_lamarckian_children_under_kills_and_an_outage_corrupt_no_parent(
    tmp_path: Path, s3_endpoint: str
) -> None:
    """Children load their parents' weights from S3 and save their own while workers die
    and the endpoint goes down: no trial lost, and every parent's weights still load into
    the parent's own network, whole."""
    space = morph_space()
    report, records, loaded = _chaos_on_s3(
        tmp_path,
        s3_endpoint,
        RegularizedEvolution(
            space,
            population_size=4,
            sample_size=2,
            budget=2,
            inherit_weights=True,
            child_budget=1,
            max_trials=LAMARCKIAN_TRIALS,
            seed=0,
        ),
        TrainingTask("digits", batch_size=128),
    )
    _assert_survived(report, LAMARCKIAN_TRIALS)
    children = [r for r in records.values() if r.trial.inherits]
    assert len(children) >= LAMARCKIAN_TRIALS // 2, "too few children to mean anything"
    assert all(0 < (r.inherited_fraction or 0) <= 1 for r in children if not r.reused)
    for parent, weights in loaded.items():
        network = build_model(records[parent].trial.arch, 10, in_channels=1)  # type: ignore[arg-type]
        network.load_state_dict(weights)  # strict: every tensor there, every shape right
