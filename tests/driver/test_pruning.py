"""Pruning on a cluster of worker processes: live reports reach the driver, the pruner's
decisions equal a plain re-statement of its rule on the same reports, and stopped trials
are recorded as pruned with their curve up to the stop."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import scripted_trials
import yaml
from reference_pruners import median_stopping, successive_halving

from morphml_dask.chaos import driver_chaos, worker_chaos
from morphml_dask.driver import Search
from morphml_dask.exceptions import PrunerError
from morphml_dask.optim import RandomSearch
from morphml_dask.prune import BasePruner, Hyperband, MedianStopping, SuccessiveHalving
from morphml_dask.space import Config, FunctionSpace
from morphml_dask.storage import open_store
from morphml_dask.tasks import FunctionTask
from morphml_dask.testing import local_client

BUDGET = 9
TRIALS = 24

Reference = Callable[[list[tuple[str, int, float]]], list[tuple[str, int]]]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with local_client(n_workers=2, threads_per_worker=2) as client:
        yield client


def _search(client: Any, store: Path, pruner: BasePruner | None, **options: Any) -> Search:
    optimizer = RandomSearch(
        FunctionSpace(scripted_trials.space),
        budget=BUDGET,
        max_trials=TRIALS,
        seed=1,
        objective="score",
    )
    task = FunctionTask(scripted_trials.climb, objective="score", **options)
    return Search(optimizer, task, store=str(store), client=client, pruner=pruner)


CASES: list[tuple[BasePruner, Reference]] = [
    (
        MedianStopping(warmup_steps=2, min_trials=3),
        lambda inputs: median_stopping(inputs, warmup_steps=2, min_trials=3),
    ),
    (
        SuccessiveHalving(min_budget=1, eta=3, max_budget=BUDGET),
        lambda inputs: successive_halving(inputs, min_budget=1, eta=3, max_budget=BUDGET),
    ),
    (
        Hyperband(min_budget=1, eta=3, max_budget=BUDGET),
        lambda inputs: successive_halving(
            inputs, min_budget=1, eta=3, max_budget=BUDGET, brackets=2
        ),
    ),
]


@pytest.mark.parametrize(("pruner", "reference"), CASES, ids=lambda case: getattr(case, "name", ""))
def test_every_stop_is_what_the_rule_decides_on_the_reports_received(
    client: Any, tmp_path: Path, pruner: BasePruner, reference: Reference
) -> None:
    search = _search(client, tmp_path / "store", pruner)
    table = search.run()
    inputs, decisions = search.pruning

    # Predicted equals actual: the rule, restated plainly, on the reports in arrival order.
    assert decisions == reference(inputs)
    assert decisions, "the scripted curves must make the pruner stop trials"

    # The reports are those the trials made: each score is the scripted curve's.
    records = open_store(str(tmp_path / "store")).records()
    configs = {r.trial_id: r.trial.arch.value for r in records if isinstance(r.trial.arch, Config)}
    for trial_id, step, value in inputs:
        assert value == pytest.approx(scripted_trials.score(configs[trial_id]["quality"], step))

    assert len(table) == TRIALS and table["trial_id"].is_unique
    pruned = table[table["state"] == "pruned"]
    assert set(pruned["trial_id"]) <= {trial_id for trial_id, _ in decisions}
    assert len(pruned) > 0, "stopped trials should come back pruned"
    assert search.status().pruned == len(pruned)

    # A pruned row keeps its curve up to the stop and its last reported score.
    curves = open_store(str(tmp_path / "store")).curves()
    decided_at = dict(decisions)
    for row in pruned.itertuples():
        curve = curves.sel(trial=row.trial_id).dropna("epoch", subset=["score"])
        epochs = [int(e) for e in curve["epoch"].values]
        assert epochs == list(range(1, len(epochs) + 1))
        assert decided_at[str(row.trial_id)] <= epochs[-1] < BUDGET
        assert row.score == pytest.approx(float(curve["score"].values[-1]))
    # Under a pruner a trial waits for the verdict on each step: it stops at the step it lost.
    at_the_step = sum(decided_at[str(t)] == _epochs(curves, str(t)) for t in pruned["trial_id"])
    assert at_the_step >= len(pruned) / 2, (at_the_step, len(pruned))
    trained = sum(_epochs(curves, t) for t in table["trial_id"])
    assert trained < TRIALS * BUDGET


def _epochs(curves: Any, trial_id: str) -> int:
    curve = curves.sel(trial=trial_id).dropna("epoch", subset=["score"])
    return int(curve["epoch"].values.max())


def test_a_pruner_judging_a_metric_the_trials_never_report_stops_the_search(
    client: Any, tmp_path: Path
) -> None:
    optimizer = RandomSearch(
        FunctionSpace(scripted_trials.space),
        budget=BUDGET,
        max_trials=8,
        seed=1,
        objective="accuracy",
    )
    task = FunctionTask(scripted_trials.climb, objective="accuracy")
    search = Search(
        optimizer, task, store=str(tmp_path / "store"), client=client, pruner=MedianStopping()
    )
    with pytest.raises(
        PrunerError,
        match=r"(?s)judges trials by 'accuracy', which the trials do not report.*"
        r"received: reports of \['score'\].*fix: report accuracy from the task",
    ):
        search.run()


def test_a_search_without_a_pruner_trains_every_trial_to_its_budget(
    client: Any, tmp_path: Path
) -> None:
    search = _search(client, tmp_path / "store", None)
    table = search.run()
    assert set(table["state"]) == {"complete"}
    inputs, decisions = search.pruning
    assert (inputs, decisions) == ([], [])
    assert not any(math.isnan(v) for v in table["score"])


def test_killing_workers_while_trials_report_loses_no_trial_and_no_decision(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "executions"
    logs.mkdir()
    optimizer = RandomSearch(
        FunctionSpace(scripted_trials.space),
        budget=BUDGET,
        max_trials=60,
        seed=3,
        objective="score",
    )
    task = FunctionTask(scripted_trials.climb, objective="score")
    with local_client(n_workers=4, threads_per_worker=1) as client:
        report, search = worker_chaos(
            client,
            optimizer,
            task,
            str(tmp_path / "store"),
            logs,
            interval=1.5,
            pruner=SuccessiveHalving(min_budget=1, eta=3, max_budget=BUDGET),
        )
    assert report.kills >= 2 and report.interrupted > 0, report
    assert (report.requested, report.stored, report.duplicated, report.lost) == (60, 60, 0, 0)
    assert report.pruned > 0, report
    inputs, decisions = search.pruning
    assert decisions == successive_halving(inputs, min_budget=1, eta=3, max_budget=BUDGET)


def test_killing_the_driver_mid_search_with_a_pruner_runs_every_trial_once(
    tmp_path: Path,
) -> None:
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        yaml.safe_dump(
            {
                "name": "pruned-chaos",
                "python_path": [str(Path(scripted_trials.__file__).parent)],
                "space": {"function": "scripted_trials:space"},
                "task": {"function": "scripted_trials:climb", "objective": "score"},
                "optimizer": {"name": "random-search", "budget": BUDGET, "seed": 0},
                "pruner": {"name": "successive-halving", "min_budget": 1, "eta": 3},
                "max_trials": 60,
                "store": str(tmp_path / "unused"),
            }
        )
    )
    logs = tmp_path / "executions"
    logs.mkdir()
    with local_client(n_workers=2, threads_per_worker=2) as client:
        report = driver_chaos(
            client.scheduler.address,
            experiment,
            str(tmp_path / "store"),
            logs,
            kills=2,
            first_kill_after=(1.0, 2.5),
        )
    assert report.kills == 2, report
    assert (report.requested, report.stored, report.duplicated, report.lost) == (60, 60, 0, 0)
    store = open_store(str(tmp_path / "store"))
    checkpoint = store.load_checkpoint()
    assert checkpoint is not None and checkpoint.pruner is not None
    stopped = {t for t, (_, _, was_stopped) in checkpoint.pruner["trials"].items() if was_stopped}
    pruned = {r.trial_id for r in store.records() if r.result.state.value == "pruned"}
    assert pruned and pruned <= stopped  # every pruned row is a decision the checkpoint keeps


def test_a_paused_search_resumes_its_trials_from_their_saved_state(
    client: Any, tmp_path: Path
) -> None:
    store_url = str(tmp_path / "store")
    optimizer = RandomSearch(
        FunctionSpace(scripted_trials.space), budget=BUDGET, max_trials=8, seed=5, objective="score"
    )
    task = FunctionTask(scripted_trials.climb_saving, objective="score")
    search = Search(optimizer, task, store=store_url, client=client).start()
    store = open_store(store_url)
    deadline = time.monotonic() + 60
    while search.status().running < 4 or store.saved_state("t000001") is None:
        assert time.monotonic() < deadline, search.status()
        time.sleep(0.05)
    search.pause(grace=30)
    search.wait()

    checkpoint = store.load_checkpoint()
    assert checkpoint is not None
    paused = [trial.id for trial in checkpoint.in_flight]
    assert paused, "the paused trials stay pending in the checkpoint"
    saved = {trial_id: store.saved_state(trial_id) for trial_id in paused}
    assert all(s is not None and 1 <= s.step < BUDGET for s in saved.values()), saved
    # They returned (a cancelled trial's thread would go on training and saving).
    time.sleep(1.0)
    after = {t: store.saved_state(t) for t in paused}
    assert {t: s and s.step for t, s in after.items()} == {
        t: s and s.step for t, s in saved.items()
    }
    assert not set(paused) & {r.trial_id for r in store.records()}

    # Resumed on the same cluster, each paused trial continues after its saved step.
    resumed = Search(
        RandomSearch(
            FunctionSpace(scripted_trials.space),
            budget=BUDGET,
            max_trials=8,
            seed=5,
            objective="score",
        ),
        task,
        store=store_url,
        client=client,
    )
    resumed.optimizer.load_state_dict(checkpoint.optimizer)
    table = resumed.run()
    assert len(table) == 8 and set(table["state"]) == {"complete"}
    curves = store.curves()
    for trial_id in paused:
        curve = curves.sel(trial=trial_id).dropna("epoch", subset=["score"])
        assert [int(e) for e in curve["epoch"].values] == list(range(1, BUDGET + 1))


def test_a_search_refuses_a_pruner_that_is_not_one(tmp_path: Path) -> None:
    optimizer = RandomSearch(FunctionSpace(scripted_trials.space), max_trials=2, seed=0)
    task = FunctionTask(scripted_trials.climb, objective="score")
    with pytest.raises(
        PrunerError,
        match=r"(?s)invalid pruner.*a pruner of morphml_dask\.prune.*received: 'median' \(str\)"
        r".*fix: pass pruner=MedianStopping\(\)",
    ):
        Search(optimizer, task, store=str(tmp_path / "store"), pruner="median")  # type: ignore[arg-type]
