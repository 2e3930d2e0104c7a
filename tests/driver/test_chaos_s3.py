"""Real-training chaos on S3: trials that train on digits and write weights, promoted by
ASHA from their parents' weights, on the moto S3 server, while worker processes are
SIGKILLed every few seconds and the store's endpoint goes down for 10 s."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import s3fs
from distributed import Client, LocalCluster

from morphml_dask.chaos import training_chaos
from morphml_dask.faults import TcpOutage
from morphml_dask.optim import ASHA
from morphml_dask.space import DagSpace
from morphml_dask.storage import open_store
from morphml_dask.tasks import TrainingTask

TRIALS = 24


def test_training_under_kills_and_an_outage_keeps_every_trial_and_its_weights(
    tmp_path: Path, s3_endpoint: str
) -> None:
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
                ASHA(DagSpace(max_nodes=3), budgets=[1, 3, 9], eta=3, max_trials=TRIALS, seed=0),
                TrainingTask("digits", max_epochs=9, batch_size=128),
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
        # Every promoted trial's parent weights are in the store and load.
        parents = [p for r in store.records() if (p := r.trial.parent) is not None]
        loaded = {parent: store.load_weights(parent) for parent in parents}
    assert (report.requested, report.stored, report.duplicated, report.lost) == (
        (TRIALS, TRIALS, 0, 0)
    ), report
    assert report.kills >= 3 and report.interrupted > 0, report
    assert len(report.outage_s) == 2 and report.outage_s[1] - report.outage_s[0] >= 10, report
    assert report.failed_by_chaos == 0 and report.failed_lost == 0, report
    assert report.promoted == len(parents) > 0 and report.parents_missing == [], report
    assert all(loaded.values())
    # Reported; its size depends on how fast a killed worker restarts (it imports torch),
    # which on a loaded 2-core machine takes from seconds to over a minute.
    assert report.longest_kill_to_rerun_s is not None and report.longest_kill_to_rerun_s > 0
