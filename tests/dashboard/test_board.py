"""`SearchBoard`: the scheduler-side views stay right and bounded at 100,000 trials."""

from __future__ import annotations

import json

import numpy as np

from morphml_dask.dashboard._board import (
    SCATTER_POINTS,
    TIMELINE_TRIALS,
    SearchBoard,
    TrialSummary,
)
from morphml_dask.driver._monitor import summarise

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
        board.update(trials[start : start + 500], {"running": 50})

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
        {},
    )
    assert (board.best, board.best_trial) == (0.2, "b")
    assert [t for _, _, t in board.front] == ["c", "a", "b"]


def test_driver_rows_are_summarised_from_the_trials_table_columns() -> None:
    row = {
        "trial_id": "t000007",
        "state": "complete",
        "metrics": json.dumps({"val_accuracy": 91.5, "params": 1.2e6}),
        "budget": 12,
        "rung": 0,
        "worker": "tcp://127.0.0.1:4001",
        "device": "cuda:0",
        "start_time": 10.0,
        "end_time": 12.5,
    }
    assert summarise(row, "val_accuracy") == (
        "t000007",
        True,
        91.5,
        1.2e6,
        12,
        0,
        "tcp://127.0.0.1:4001",
        "cuda:0",
        10.0,
        12.5,
    )
    failed = {**row, "state": "fail", "metrics": "{}", "start_time": None, "end_time": None}
    assert summarise(failed, "val_accuracy")[1:4] == (False, None, None)
