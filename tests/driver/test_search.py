from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from distributed import Client, LocalCluster
from distributed.utils_test import gen_cluster

from morphml_dask.driver import Search
from morphml_dask.exceptions import SearchStalledError, UnschedulableError
from morphml_dask.optim import ASHA, BaseOptimizer, RandomSearch, RegularizedEvolution
from morphml_dask.space import CellSpace, DagSpace
from morphml_dask.storage import open_store
from morphml_dask.tasks import NB201TabularTask, TrainingTask
from morphml_dask.trial import Trial, TrialResult


def _memory_url() -> str:
    """A store in this process's memory: only for workers in this process (`gen_cluster`,
    ``processes=False``); worker processes get a folder, which they share with the driver."""
    return f"memory://search-{uuid.uuid4().hex}"


def _search_on(address: str, **kwargs: Any) -> Search:
    with Client(address) as client:
        search = Search(client=client, **kwargs)
        search.run()
        return search


@gen_cluster(
    client=False,
    nthreads=[("127.0.0.1", 2), ("127.0.0.1", 2)],
    worker_kwargs={"resources": {"GPU": 1}},
    timeout=60,
    # zarr keeps an I/O thread for the life of the process; it is not a leak of ours.
    clean_kwargs={"threads": False},
)
async def test_one_trial_per_gpu_at_a_time(scheduler: Any, *workers: Any) -> None:
    store = _memory_url()
    search = await asyncio.to_thread(
        _search_on,
        scheduler.address,
        optimizer=RandomSearch(CellSpace(), max_trials=16, seed=0),
        task=NB201TabularTask(time_scale=0.00002),
        store=store,
        gpus_per_trial=1,
    )
    table = open_store(store).trials()
    assert len(table) == 16 and table["trial_id"].is_unique
    assert (table["state"] == "complete").all()
    for _, runs in table.groupby("worker"):
        spans = sorted(zip(runs["start_time"], runs["end_time"], strict=True))
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
    assert table["worker"].nunique() == 2
    assert search.status().running == 0
    assert not scheduler.tasks, "tasks were left on the scheduler"


@pytest.fixture(scope="module")
def client() -> Any:
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def test_evolution_on_a_process_cluster_reuses_known_architectures(
    client: Client, tmp_path: Path
) -> None:
    store = str(tmp_path / "store")
    search = Search(
        RegularizedEvolution(CellSpace(), population_size=5, max_trials=60, seed=0),
        NB201TabularTask(time_scale=0.00001),
        store=store,
        client=client,
    )
    table = search.run()
    assert len(table) == 60 and table["trial_id"].is_unique
    reused = table[table["reused"]]
    assert search.status().reused == len(reused) > 0
    # A reused row carries the metrics of the earlier trial with the same architecture.
    first = table[~table["reused"]].drop_duplicates("fingerprint").set_index("fingerprint")
    for _, row in reused.iterrows():
        assert row["val_accuracy"] == first.loc[row["fingerprint"], "val_accuracy"]
    checkpoint = open_store(store).load_checkpoint()
    assert checkpoint is not None and checkpoint.in_flight == []
    assert not client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks))


def test_asha_promotions_continue_from_the_parents_weights(client: Client, tmp_path: Any) -> None:
    store = str(tmp_path / "asha")
    optimizer = ASHA(
        DagSpace(max_nodes=2, widths=(8,)), budgets=[1, 3], eta=2, max_trials=12, seed=1
    )
    Search(optimizer, TrainingTask(max_epochs=3), store=store, client=client, lookahead=0).run()
    table = open_store(store).trials().set_index("trial_id")
    promoted = table[table["parent_id"].notna()]
    assert len(promoted) > 0
    curves = open_store(store).curves()
    for trial_id, row in promoted.iterrows():
        parent = table.loc[row["parent_id"]]
        assert row["fingerprint"] == parent["fingerprint"] and row["budget"] == 3
        epochs = curves["val_accuracy"].sel(trial=trial_id).dropna("epoch")["epoch"].values
        assert epochs.tolist() == [2, 3], "a promotion trained from scratch"
    # Promotions were asked with a higher priority than new trials.
    assert (promoted["rung"] == 1).all()


class _Silent(BaseOptimizer):
    name = "silent"

    def _suggest(self, n: int) -> list[Trial]:
        return []

    def _observe(self, trial: Trial, result: TrialResult, score: float) -> None:
        pass


def test_a_stalled_optimizer_is_named(client: Client, tmp_path: Path) -> None:
    search = Search(
        _Silent(CellSpace()), NB201TabularTask(), store=str(tmp_path / "store"), client=client
    )
    with pytest.raises(
        SearchStalledError, match=r"(?s)_Silent stalled.*nothing running, nothing asked"
    ):
        search.run()


def test_gpu_trials_without_gpu_workers_fail_fast(client: Client, tmp_path: Path) -> None:
    search = Search(
        RandomSearch(CellSpace(), max_trials=2),
        NB201TabularTask(),
        store=str(tmp_path / "store"),
        client=client,
        gpus_per_trial=1,
        worker_wait=0.5,
    )
    started = time.monotonic()
    with pytest.raises(
        UnschedulableError, match=r"(?s)no worker can run the trials.*1 GPU.*--resources GPU=1"
    ):
        search.run()
    assert time.monotonic() - started < 5


def test_a_failing_trial_is_data_not_a_crash(client: Client, tmp_path: Path) -> None:
    class Flaky(NB201TabularTask):
        def evaluate(self, arch: Any, budget: int = 12, **kwargs: Any) -> Any:
            if CellSpace().to_index(arch) % 3 == 0:
                raise RuntimeError("CUDA error: device-side assert triggered")
            return super().evaluate(arch, budget, **kwargs)

    store = str(tmp_path / "store")
    Search(
        RandomSearch(CellSpace(), max_trials=30, seed=2), Flaky(), store=store, client=client
    ).run()
    table = open_store(store).trials()
    failed = table[table["state"] == "fail"]
    assert len(table) == 30 and len(failed) > 0
    assert failed["error"].str.contains("device-side assert").all()
    assert (failed["error_kind"] == "cuda").all()


def test_start_status_stop_and_wait(client: Client, tmp_path: Path) -> None:
    search = Search(
        RandomSearch(CellSpace(), max_trials=10_000, seed=0),
        NB201TabularTask(time_scale=0.0001),
        store=str(tmp_path / "store"),
        client=client,
    ).start()
    deadline = time.monotonic() + 30
    while search.status().done < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    search.stop()
    table = search.wait(timeout=30)
    status = search.status()
    assert 10 <= status.done < 10_000 and status.running == 0
    assert len(table) == status.done


def _record_priorities(dask_scheduler: Any) -> None:
    from distributed.diagnostics.plugin import SchedulerPlugin

    class Log(SchedulerPlugin):
        name = "morphml-priorities"

        def __init__(self, scheduler: Any) -> None:
            self.scheduler = scheduler
            self.seen: dict[str, Any] = {}

        def transition(self, key: Any, start: str, finish: str, *args: Any, **kw: Any) -> None:
            ts = self.scheduler.tasks.get(key)
            if ts is not None and isinstance(key, str) and "/t" in key:
                self.seen.setdefault(key, ts.priority)

    dask_scheduler.add_plugin(Log(dask_scheduler))


def _priorities(dask_scheduler: Any) -> dict[str, Any]:
    return dict(dask_scheduler.plugins["morphml-priorities"].seen)


def test_asha_on_a_process_cluster_matches_a_replay_of_its_inputs(
    client: Client, tmp_path: Path
) -> None:
    """Predicted equals actual: the decisions ASHA made on the cluster are exactly what a
    fresh ASHA decides when fed the same asks and results in the same order (and
    `tests/optim/test_asha.py` checks that against the paper's algorithm)."""
    client.run_on_scheduler(_record_priorities)
    store = str(tmp_path / "store")

    def make() -> ASHA:
        return ASHA(CellSpace(), budgets=[12, 200], eta=3, max_trials=90, seed=4)

    search = Search(
        make(), NB201TabularTask(time_scale=0.00002), store=store, client=client, name="asha"
    )
    table = search.run().set_index("trial_id")
    promoted = table[table["parent_id"].notna()]
    assert len(table) == 90 and len(promoted) > 5

    replay = make()
    asked: dict[str, Trial] = {}
    for event in search.events:
        if event[0] == "ask":
            trials = replay.ask(event[1])
            assert [t.id for t in trials] == event[2]
            asked.update((t.id, t) for t in trials)
        else:
            row = table.loc[event[1]]
            trial = asked[event[1]]
            assert trial.arch.fingerprint == row["fingerprint"]
            parent = None if pd.isna(row["parent_id"]) else row["parent_id"]
            assert trial.rung == row["rung"]
            asked_parent = None if trial.parent is None else table.loc[trial.parent]
            if asked_parent is not None and asked_parent["reused"]:
                # A promotion of a reused result ran on from the trial that trained it, or,
                # reused itself, names that trial as its parent.
                trainer = table.loc[parent]
                assert not trainer["reused"]
                assert trainer["fingerprint"] == asked_parent["fingerprint"]
                assert trainer["budget"] == asked_parent["budget"]
            else:
                assert trial.parent == parent
            replay.tell(TrialResult.complete(event[1], {"val_accuracy": row["val_accuracy"]}))
    assert replay.finished

    # The scheduler saw promotions with a higher priority than new trials (reused results
    # never reached it).
    seen = client.run_on_scheduler(_priorities)
    submitted = table[~table["reused"]]
    assert (submitted["rung"] == 1).any()
    for trial_id, row in submitted.iterrows():
        assert seen[f"asha/{trial_id}"][0] == -row["rung"]


def test_stop_returns_at_once_while_long_trials_run() -> None:
    """`stop` does not wait for a running trial to finish: the running trials are cancelled
    and the checkpoint lists them, to run again on `resume`."""
    store = _memory_url()
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        search = Search(
            RandomSearch(CellSpace(), max_trials=20, seed=0),
            NB201TabularTask(time_scale=0.03),  # trials of about 3 s
            store=store,
            client=client,
            lookahead=1,
        ).start()
        deadline = time.monotonic() + 30
        while search.status().running < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        asked = time.monotonic()
        search.stop()
        search.wait(timeout=10)
        assert time.monotonic() - asked < 1.0 and not search.running
    checkpoint = open_store(store).load_checkpoint()
    assert checkpoint is not None
    assert len(checkpoint.in_flight) == 3  # two running, one queued
    assert open_store(store).trials().empty


def test_results_reach_the_store_while_the_search_runs(client: Client, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    search = Search(
        RandomSearch(CellSpace(), max_trials=60, seed=1),
        NB201TabularTask(time_scale=0.002),  # trials of about 0.2 s, 4 slots: about 3 s
        store=store,
        client=client,
        persist_interval=0.3,
    ).start()
    seen_while_running: list[int] = []
    while search.running:
        rows = len(open_store(store).trials())
        if search.running:
            seen_while_running.append(rows)
        time.sleep(0.1)
    table = search.wait()
    assert len(table) == 60 and table["trial_id"].is_unique
    assert any(0 < rows < 60 for rows in seen_while_running)
    assert seen_while_running == sorted(seen_while_running)


def test_a_cpu_search_never_loads_torch_on_its_workers(tmp_path: Path) -> None:
    """Registering the GPU plugin finds no GPUs until a trial asks for one: a search of CPU
    trials (a tabular benchmark) leaves torch unimported on the workers, which saves each
    worker a second or more at the start of a search."""
    import sys

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        Search(
            RandomSearch(CellSpace(), max_trials=8, seed=0),
            NB201TabularTask(time_scale=0.00001),
            store=str(tmp_path / "store"),
            client=client,
        ).run()
        loaded = client.run(lambda: "torch" in sys.modules)
    assert list(loaded.values()) == [False]
