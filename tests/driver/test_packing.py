"""Packing tiny trials into one Dask task: one row per trial, failures stay the trial's own,
and a stopped search resumes neither losing nor running again what was stored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from distributed import Client, get_task_stream

from morphml_dask.driver import Search
from morphml_dask.driver._packing import PackSize
from morphml_dask.optim import RandomSearch
from morphml_dask.space import CellSpace
from morphml_dask.storage import open_store
from morphml_dask.tasks import NB201TabularTask
from morphml_dask.testing import local_client


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with local_client(n_workers=2, threads_per_worker=2) as client:
        yield client


def _durations(pack: PackSize, seconds: float, count: int = 8) -> PackSize:
    for _ in range(count):
        pack.observe(0.0, seconds)
    return pack


def test_the_pack_size_follows_the_measured_durations() -> None:
    assert _durations(PackSize(), 0.0, count=7).size() == 1  # too few samples yet
    assert _durations(PackSize(), 0.0).size() == 32
    assert _durations(PackSize(), 0.0005).size() == 32
    assert _durations(PackSize(work_s=0.005), 0.0005).size() == 10
    assert _durations(PackSize(), 0.002).size() == 1, "a few milliseconds: one per task"
    assert _durations(PackSize(), 0.5).size() == 1
    assert _durations(PackSize(max_pack=1), 0.0).size() == 1
    longer = _durations(_durations(PackSize(window=8), 0.0), 1.0)
    assert longer.size() == 1, "trials that got longer go one per task again"
    with pytest.raises(ValueError, match="max_pack must be at least 1"):
        PackSize(max_pack=0)


def _packed_keys(stream: Any) -> list[str]:
    return [str(task["key"]) for task in stream.data if "+" in str(task["key"])]


def test_tiny_trials_are_packed_and_keep_one_row_each(client: Client, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    with get_task_stream(client) as stream:
        Search(
            RandomSearch(CellSpace(), max_trials=300, seed=0),
            NB201TabularTask(),
            store=store,
            client=client,
            max_pack=8,
        ).run()
    table = open_store(store).trials()
    assert len(table) == 300 and table["trial_id"].is_unique
    assert (table["state"] == "complete").all()
    packed = _packed_keys(stream)
    assert packed, "no task carried more than one trial"
    assert all(1 <= int(key.rsplit("+", 1)[1]) <= 7 for key in packed)


class _Flaky(NB201TabularTask):
    """Every third cell raises; those whose index is also even raise a CUDA error (an
    infrastructure failure, which the driver retries on its own)."""

    def evaluate(self, arch: Any, budget: int = 12, **kwargs: Any) -> Any:
        index = CellSpace().to_index(arch)
        if index % 3 == 0:
            raise RuntimeError("CUDA error: boom" if index % 2 == 0 else f"bad cell {index}")
        return super().evaluate(arch, budget, **kwargs)


def test_a_failure_in_a_pack_is_that_trials_alone(client: Client, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    with get_task_stream(client) as stream:
        Search(
            RandomSearch(CellSpace(), max_trials=200, seed=1), _Flaky(), store=store, client=client
        ).run()
    assert _packed_keys(stream)
    table = open_store(store).trials()
    assert len(table) == 200 and table["trial_id"].is_unique
    cells = table["arch"].map(lambda text: CellSpace().to_index(_arch(text)))
    failing = cells % 3 == 0
    assert (table.loc[~failing, "state"] == "complete").all()
    # A failing cell may share its fingerprint with a cell that completed, whose result it
    # then reuses; every other one ran and failed on its own.
    failed = table[failing & ~table["reused"]]
    assert (failed["state"] == "fail").all() and len(failed) > 0
    cuda = failed[cells[failed.index] % 2 == 0]
    assert cuda["error"].str.contains("the same on every attempt").all()
    assert (cuda["attempt"] == 3).all(), "CUDA failures were retried one by one"


def _arch(text: str) -> Any:
    import json

    from morphml_dask.space import ArchGraph

    return ArchGraph.from_dict(json.loads(text))


class _Slow(NB201TabularTask):
    """A third of a millisecond a trial: short enough to pack, long enough to stop the
    search midway."""

    def evaluate(self, arch: Any, budget: int = 12, **kwargs: Any) -> Any:
        time.sleep(0.0003)
        return super().evaluate(arch, budget, **kwargs)


def test_a_stopped_packed_search_resumes_losing_and_rerunning_nothing(
    client: Client, tmp_path: Path
) -> None:
    url = str(tmp_path / "store")
    first = Search(
        RandomSearch(CellSpace(), max_trials=1500, seed=0), _Slow(), store=url, client=client
    ).start()
    while first.status().done < 300 and first.running:
        time.sleep(0.01)
    first.stop()
    first.wait()
    stored = open_store(url).trials()
    checkpoint = open_store(url).load_checkpoint()
    assert checkpoint is not None and 0 < len(stored) < 1500

    optimizer = RandomSearch(CellSpace(), max_trials=1500, seed=0)
    optimizer.load_state_dict(checkpoint.optimizer)
    second = Search(optimizer, _Slow(), store=url, client=client)
    table = second.run()
    assert len(table) == 1500 and table["trial_id"].is_unique
    # Every trial recorded in this run was missing from the store: no stored trial ran again
    # (the store would have dropped its second row, so count what the driver recorded).
    status = second.status()
    assert status.done == 1500 - len(stored), "a stored trial ran again"
    assert status.submitted == status.done - status.reused
    again = table.set_index("trial_id").loc[stored["trial_id"], "start_time"]
    # Unchanged rows: nothing stored ran again (reused rows never ran: no start time).
    assert np.array_equal(
        again.to_numpy(float), stored["start_time"].to_numpy(float), equal_nan=True
    )
