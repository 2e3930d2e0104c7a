"""`SearchBoard`: the scheduler-side views stay right and bounded at 100,000 trials; what
the driver sends (`summarise`, `SearchStatus`) arrives intact through `receive`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from morphml_dask.dashboard import TrialSummary, receive
from morphml_dask.dashboard._board import (
    KEPT_BOARDS,
    SCATTER_POINTS,
    TIMELINE_TRIALS,
    SchedulerBoards,
    SearchBoard,
)
from morphml_dask.dashboard._extension import boards_of
from morphml_dask.driver._monitor import summarise
from morphml_dask.optim import RandomSearch
from morphml_dask.space import CellSpace
from morphml_dask.status import SearchStatus
from morphml_dask.trial import Trial, TrialRecord, TrialResult

TRIALS = 100_000


def _trials(count: int, seed: int = 0) -> list[TrialSummary]:
    rng = np.random.default_rng(seed)
    values = rng.normal(80, 5, count)
    params = rng.lognormal(13, 1, count)
    failed = rng.random(count) < 0.1
    return [
        (
            f"t{i:06d}",
            not failed[i],
            None if failed[i] else float(values[i]),
            float(params[i]),
            12 if i % 4 else 200,
            0 if i % 4 else 1,
            f"tcp://127.0.0.1:{4000 + i % 8}",
            "cuda:0" if i % 2 else "cpu",
            1000.0 + i,
            1000.5 + i,
        )
        for i in range(count)
    ]


def _brute_force_front(trials: list[TrialSummary]) -> set[str]:
    """Trials no other trial beats on both fewer-or-equal parameters and a higher value."""
    points = sorted((t[3], -t[2], t[0]) for t in trials if t[1] and t[2] is not None)
    front, best = set(), float("-inf")
    for _, negative, trial_id in points:
        if -negative > best:
            front.add(trial_id)
            best = -negative
    return front


def test_views_are_bounded_and_right_with_100000_trials() -> None:
    trials = _trials(TRIALS)
    board = SearchBoard("search", "val_accuracy", "maximize")
    for start in range(0, TRIALS, 500):  # as the driver sends them: a batch a second
        board.update(trials[start : start + 500], SearchStatus(running=50))

    ok = [t for t in trials if t[1]]
    assert board.done == TRIALS
    assert board.failed == TRIALS - len(ok)
    best = max(ok, key=lambda t: t[2])  # type: ignore[arg-type,return-value]
    assert (board.best, board.best_trial) == (best[2], best[0])
    # The best-so-far curve holds only improvements, increasing, ending at the best.
    curve = [value for _, _, value in board.best_curve]
    assert curve == sorted(curve) and curve[-1] == best[2]
    assert len(curve) < 50
    assert {trial_id for _, _, trial_id in board.front} == _brute_force_front(trials)
    assert len(board.scatter) <= SCATTER_POINTS
    assert len(board.scatter) > SCATTER_POINTS // 4
    assert len(board.timeline) == TIMELINE_TRIALS
    assert board.timeline[-1][0] == trials[-1][0]
    assert board.rungs == {12: TRIALS * 3 // 4, 200: TRIALS // 4}
    assert len(board.history) <= 4000


def test_a_minimised_objective_keeps_the_lowest() -> None:
    board = SearchBoard("search", "loss", "minimize")
    board.update(
        [
            ("a", True, 0.5, 10.0, 1, 0, None, None, None, 1.0),
            ("b", True, 0.2, 20.0, 1, 0, None, None, None, 2.0),
            ("c", True, 0.9, 5.0, 1, 0, None, None, None, 3.0),
        ],
        SearchStatus(),
    )
    assert (board.best, board.best_trial) == (0.2, "b")
    assert [t for _, _, t in board.front] == ["c", "a", "b"]


def _trial(budget: int = 12, rung: int = 0) -> Trial:
    (trial,) = RandomSearch(CellSpace(), budget=budget, seed=0).ask(1)
    return Trial(trial.id, trial.arch, budget, rung=rung)


def test_a_finished_record_is_summarised_from_its_typed_fields() -> None:
    trial = _trial(budget=12, rung=1)
    record = TrialRecord(
        trial,
        TrialResult.complete(trial.id, {"val_accuracy": 91.5, "params": 1.2e6}),
        worker="tcp://127.0.0.1:4001",
        device="cuda:0",
        start_time=10.0,
        end_time=12.5,
        attempt=2,
    )
    assert summarise(record, "val_accuracy") == (
        trial.id,
        True,
        91.5,
        1.2e6,
        12,
        1,
        "tcp://127.0.0.1:4001",
        "cuda:0",
        10.0,
        12.5,
    )
    # An objective the task did not report is None; the parameter count is still shown.
    assert summarise(record, "loss")[2:4] == (None, 1.2e6)


def test_failed_and_reused_records_are_summarised_without_a_value() -> None:
    trial = _trial()
    failed = TrialRecord(trial, TrialResult.failed(trial.id, "boom"), worker="w", start_time=3.0)
    assert summarise(failed, "val_accuracy") == (
        trial.id, False, None, None, 12, 0, "w", None, 3.0, 3.0
    )  # fmt: skip
    reused = TrialRecord(trial, TrialResult.complete(trial.id, {"val_accuracy": 80.0}), reused=True)
    # A reused result ran nowhere: no worker, no start, and it "ends" at 0.
    assert summarise(reused, "val_accuracy") == (
        trial.id, True, 80.0, None, 12, 0, None, None, None, 0.0
    )  # fmt: skip


class _Scheduler:
    """What the boards read of a scheduler: its extensions and workers."""

    def __init__(self) -> None:
        self.extensions: dict[str, Any] = {}
        self.workers: dict[str, Any] = {}


def test_the_status_crosses_to_the_scheduler_and_back_intact() -> None:
    scheduler = _Scheduler()
    status = SearchStatus(
        done=7,
        failed=2,
        reused=1,
        retried=3,
        submitted=9,
        running=2,
        waiting_for_a_worker=1,
        kept_off_retiring_workers=4,
        waiting_for_store=True,
        store_retries=5,
        store_longest_write_s=0.75,
        store_last_write_s=0.25,
        store_backlog_batches=6,
        quarantined=("tcp://10.0.0.1:4000",),
        best_trial="t000004",
        elapsed=12.5,
        finished=False,
    )
    trials: list[TrialSummary] = [("t000004", True, 0.9, 10.0, 1, 0, None, None, None, 1.0)]
    receive("run-1", "search", "val_accuracy", "maximize", trials, status.to_dict(), scheduler)

    board = boards_of(scheduler).boards["run-1"]
    assert board.status == status
    assert (board.done, board.best, board.best_trial, board.running) == (1, 0.9, "t000004", 2)
    summary = board.summary()
    assert summary["status"] == status.to_dict()
    assert summary["finished"] is False and summary["running"] == 2

    # A driver of another release: keys this one does not know are ignored.
    receive("run-1", "search", "val_accuracy", "maximize", [],
            {**SearchStatus(finished=True).to_dict(), "new_counter": 1}, scheduler)  # fmt: skip
    assert board.status == SearchStatus(finished=True)
    assert board.summary()["finished"] is True


def test_a_scheduler_keeps_the_latest_boards() -> None:
    boards = SchedulerBoards(_Scheduler())
    for run in range(KEPT_BOARDS + 3):
        boards.board(f"run-{run}", "search", "loss", "minimize").update([], SearchStatus())
    assert len(boards.boards) == KEPT_BOARDS
    assert "run-0" not in boards.boards
    latest = boards.latest()
    assert latest is boards.boards[f"run-{KEPT_BOARDS + 2}"]


def test_an_extension_of_another_plugin_under_our_name_is_refused() -> None:
    scheduler = _Scheduler()
    scheduler.extensions["morphml"] = object()
    with pytest.raises(
        TypeError,
        match=r"the scheduler extension 'morphml' is not morphml's boards: expected "
        r"SchedulerBoards, received object; another plugin took the name",
    ):
        boards_of(scheduler)
