"""Faults with real processes: an S3 endpoint that goes away, trials that fail."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client, LocalCluster

from morphml_dask.chaos import stored_id_counts
from morphml_dask.driver import Search
from morphml_dask.faults import BrokenWorkerTask, FlakyTask, TcpOutage
from morphml_dask.optim import RandomSearch, RegularizedEvolution
from morphml_dask.space import CellSpace
from morphml_dask.storage import open_store
from morphml_dask.tasks import NB201TabularTask
from morphml_dask.testing import local_client


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with local_client(n_workers=2, threads_per_worker=2) as client:
        yield client


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_an_s3_outage_pauses_the_search_and_loses_nothing(client: Client, s3_endpoint: str) -> None:
    import s3fs

    with TcpOutage(int(s3_endpoint.rsplit(":", 1)[1])) as outage:
        options = {"key": "testing", "secret": "testing", "endpoint_url": outage.endpoint}
        bucket = f"outage-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(**options).mkdir(bucket)
        url = f"s3://{bucket}/search"
        search = Search(
            RandomSearch(CellSpace(), max_trials=120, seed=3),
            NB201TabularTask(time_scale=0.001),  # trials of about 0.1 s on 4 slots
            store=url,
            storage_options=options,
            client=client,
            persist_interval=0.2,
        ).start()
        _wait_for(lambda: len(open_store(url, options).trials()) >= 20, 60, "20 stored trials")

        outage.down()
        down_at = time.monotonic()
        _wait_for(lambda: search.status().waiting_for_store, 10, "the search to hold back")
        held = search.status()
        time.sleep(10 - (time.monotonic() - down_at))
        status = search.status()
        assert search.running and status.waiting_for_store
        # No new trial was submitted; only those already running or queued finished.
        assert status.submitted == held.submitted
        assert status.done - held.done <= held.running
        assert status.done < 120
        outage.up()
        table = search.wait(timeout=120)

        assert len(table) == 120 and table["trial_id"].is_unique
        # The outage was felt: our retries, or one write that s3fs's own retries stretched
        # across it.
        final = search.status()
        assert final.store_retries > 0 or final.store_longest_write_s > 5
        counts = stored_id_counts(open_store(url, options))
        assert len(counts) == 120 and set(counts.values()) == {1}, "a trial was written twice"
        checkpoint = open_store(url, options).load_checkpoint()
        assert checkpoint is not None and checkpoint.in_flight == []


def test_failing_and_diverging_trials_are_rows_and_evolution_still_improves(
    client: Client, tmp_path: Path
) -> None:
    store = str(tmp_path / "store")  # a folder the worker processes share with the driver
    task = FlakyTask(NB201TabularTask(time_scale=0.0001), raise_rate=0.2, nan_rate=0.05, seed=1)
    Search(
        RegularizedEvolution(
            CellSpace(), population_size=10, sample_size=3, max_trials=300, seed=2
        ),
        task,
        store=store,
        client=client,
    ).run()
    table = open_store(store).trials().sort_values("trial_id")
    assert len(table) == 300 and table["trial_id"].is_unique
    failed = table[table["state"] == "fail"]
    raised = failed[failed["error_kind"] == "error"]
    diverged = failed[failed["error_kind"] == "diverged"]
    assert raised["error"].str.contains("injected failure").all() and len(raised) > 20
    assert diverged["error"].str.contains("val_accuracy came out nan").all()
    assert len(diverged) > 3
    complete = table[table["state"] == "complete"]["val_accuracy"].to_numpy()
    # The first population is random; what evolution proposes later must be better.
    first, last = float(np.median(complete[:10])), float(np.median(complete[-100:]))
    assert last > first + 1.0, f"no improvement: {first:.2f} -> {last:.2f}"


def test_a_worker_whose_trials_keep_failing_is_quarantined(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=3, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        broken = next(a for a, w in client.scheduler_info()["workers"].items() if w["name"] == 0)
        search = Search(
            RandomSearch(CellSpace(), max_trials=60, seed=4),
            BrokenWorkerTask(NB201TabularTask(time_scale=0.0005), broken={"0"}),
            store=str(tmp_path / "store"),
            client=client,
            max_retries=2,
            quarantine_after=3,
        )
        with caplog.at_level("WARNING", logger="morphml_dask.driver"):
            table = search.run()
        _wait_for(
            lambda: broken not in client.scheduler_info()["workers"], 30, "the worker to retire"
        )
        healthy = set(client.scheduler_info()["workers"])

    status = search.status()
    assert status.quarantined == (broken,)
    assert f"quarantined worker {broken}: 3 trials in a row failed there" in caplog.text
    # Every trial that failed on the broken worker completed on another one: no FAIL rows.
    assert len(table) == 60 and (table["state"] == "complete").all()
    assert set(table["worker"].dropna()) <= healthy  # reused results have no worker
    assert status.retried >= 3
    assert (table["attempt"] - 1).sum() == status.retried  # each row counts its retries


def test_a_trial_failing_the_same_way_everywhere_is_failed_not_retried_forever(
    client: Client, tmp_path: Path
) -> None:
    store = str(tmp_path / "store")
    task = FlakyTask(
        NB201TabularTask(time_scale=0.0001),
        raise_rate=0.2,
        nan_rate=0.0,
        message="CUDA out of memory",
    )
    search = Search(
        RandomSearch(CellSpace(), max_trials=30, seed=5), task, store=store, client=client
    )
    table = search.run()
    failed = table[table["state"] == "fail"]
    assert len(table) == 30 and len(failed) > 0
    assert (failed["error_kind"] == "oom").all()
    assert failed["error"].str.contains("the same on every attempt").all()
    assert search.status().quarantined == ()
    # Each failing trial ran 1 + max_retries (2) times, then gave up.
    assert search.status().retried == 2 * len(failed)


def test_flaky_task_refuses_rates_that_cannot_be_probabilities() -> None:
    from morphml_dask.exceptions import TaskError

    with pytest.raises(
        TaskError, match=r"(?s)invalid failure rates.*raise_rate=0\.7, nan_rate=0\.5"
    ):
        FlakyTask(NB201TabularTask(), raise_rate=0.7, nan_rate=0.5)
