"""What trials write on workers survives an S3 outage: weights and saved states are retried
with back-off, and a store that stays down fails the trial as an infrastructure failure
(kind ``"store"``), which the driver runs again, never as the trial's own error."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import dask.config
import pytest
import scripted_trials
import torch

from morphml_dask.driver import run_trial
from morphml_dask.driver._health import INFRASTRUCTURE_FAILURES
from morphml_dask.faults import TcpOutage
from morphml_dask.optim import RandomSearch
from morphml_dask.space import FunctionSpace
from morphml_dask.storage import ExperimentStore, StoreOutageError, open_store
from morphml_dask.tasks import FunctionTask
from morphml_dask.testing import local_client
from morphml_dask.trial import TrialResult


def _bucket(options: dict[str, str]) -> str:
    import s3fs

    bucket = f"writes-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    return f"s3://{bucket}/search"


def _options(outage: TcpOutage) -> dict[str, str]:
    return {"key": "testing", "secret": "testing", "endpoint_url": outage.endpoint}


def test_a_weight_save_during_a_short_outage_lands_once_the_store_is_back(
    s3_endpoint: str,
) -> None:
    with TcpOutage(int(s3_endpoint.rsplit(":", 1)[1])) as outage:
        options = _options(outage)
        store = ExperimentStore(_bucket(options), options, outage_timeout=120)
        weights = {"layer.weight": torch.arange(6.0).reshape(2, 3)}
        outage.down()
        back = threading.Timer(3.0, outage.up)
        back.start()
        started = time.monotonic()
        try:
            store.save_weights("t000001", 1, weights, num_classes=3, in_channels=1)
        finally:
            back.cancel()
        assert time.monotonic() - started >= 3.0, "the save did not meet the outage"
        outage.down()
        threading.Timer(3.0, outage.up).start()
        loaded = store.load_weights("t000001")  # read during an outage too
    assert torch.equal(loaded["layer.weight"], weights["layer.weight"])


def test_a_store_down_longer_than_the_timeout_is_an_infrastructure_failure(
    s3_endpoint: str,
) -> None:
    """On a worker process: the trial's ``ctx.save`` cannot reach the store within
    ``morphml.store-outage-timeout``; its failure kind is ``store``, which the driver
    retries elsewhere."""
    assert "store" in INFRASTRUCTURE_FAILURES
    optimizer = RandomSearch(
        FunctionSpace(scripted_trials.space), budget=2, max_trials=1, seed=0, objective="score"
    )
    (trial,) = optimizer.ask(1)
    task = FunctionTask(scripted_trials.climb_saving, objective="score")
    with TcpOutage(int(s3_endpoint.rsplit(":", 1)[1])) as outage:
        options = _options(outage)
        url = _bucket(options)
        with (
            dask.config.set({"morphml.store-outage-timeout": 1}),
            local_client(n_workers=1, threads_per_worker=1) as client,
        ):
            outage.down()
            outcome = client.submit(run_trial, trial, task, url, options, pure=False).result()
    result = TrialResult.from_dict(outcome["result"])
    assert not result.ok and result.error_kind == "store", result.error
    assert "failed to reach" in str(result.error) and "store-outage-timeout" in str(result.error)


def test_errors_waiting_cannot_mend_are_not_retried(
    s3_url: str, s3_options: dict[str, Any]
) -> None:
    """A missing trial's weights, and a state that is not data, fail at once."""
    from morphml_dask.exceptions import StorageInputError

    store = open_store(s3_url, s3_options)
    started = time.monotonic()
    with pytest.raises(StorageInputError, match="no weights saved for trial 'missing'"):
        store.load_weights("missing")
    with pytest.raises(StorageInputError, match="cannot be stored as data"):
        store.save_state("t1", {"model": torch.nn.Linear(1, 1)})
    assert store.saved_state("t1") is None
    assert time.monotonic() - started < 5


def test_the_outage_error_names_the_store_the_path_and_the_fix(s3_endpoint: str) -> None:
    with TcpOutage(int(s3_endpoint.rsplit(":", 1)[1])) as outage:
        options = _options(outage)
        store = ExperimentStore(_bucket(options), options, outage_timeout=0.5)
        outage.down()
        with pytest.raises(
            StoreOutageError,
            match=r"(?s)failed to reach artifacts/t7/state.pt for 0.5 s.*"
            r"raise morphml.store-outage-timeout",
        ):
            store.save_state("t7", {"step": 1})
