"""`SearchBoard`: the scheduler-side views stay right and bounded at 100,000 trials; what
the driver sends (`summarise`, `SearchStatus`, the live curves of `ProgressPublisher`)
arrives intact through `receive`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from morphml_dask.dashboard import TrialSummary, receive
from morphml_dask.dashboard._board import (
    KEPT_BOARDS,
    LIVE_POINTS,
    LIVE_TRIALS,
    SCATTER_POINTS,
    TIMELINE_TRIALS,
    LiveCurve,
    SchedulerBoards,
    SearchBoard,
)
from morphml_dask.dashboard._extension import boards_of
from morphml_dask.driver._monitor import ProgressPublisher, summarise
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
            "fail" if failed[i] else "complete",
            None if failed[i] else float(values[i]),
            float(params[i]),
            12 if i % 4 else 200,
            0 if i % 4 else 1,
            f"tcp://127.0.0.1:{4000 + i % 8}",
            "cuda:0" if i % 2 else "cpu",
            1000.0 + i,
            1000.5 + i,
            None,
            None,
        )
        for i in range(count)
    ]


def _brute_force_front(trials: list[TrialSummary]) -> set[str]:
    """Trials no other trial beats on both fewer-or-equal parameters and a higher value."""
    points = sorted((t[3], -t[2], t[0]) for t in trials if t[1] == "complete" and t[2] is not None)
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

    ok = [t for t in trials if t[1] == "complete"]
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
            ("a", "complete", 0.5, 10.0, 1, 0, None, None, None, 1.0, None, None),
            ("b", "complete", 0.2, 20.0, 1, 0, None, None, None, 2.0, None, None),
            ("c", "complete", 0.9, 5.0, 1, 0, None, None, None, 3.0, None, None),
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
        "complete",
        91.5,
        1.2e6,
        12,
        1,
        "tcp://127.0.0.1:4001",
        "cuda:0",
        10.0,
        12.5,
        None,
        None,
    )
    # An objective the task did not report is None; the parameter count is still shown.
    assert summarise(record, "loss")[2:4] == (None, 1.2e6)


def test_failed_and_reused_records_are_summarised_without_a_value() -> None:
    trial = _trial()
    failed = TrialRecord(trial, TrialResult.failed(trial.id, "boom"), worker="w", start_time=3.0)
    assert summarise(failed, "val_accuracy") == (
        trial.id, "fail", None, None, 12, 0, "w", None, 3.0, 3.0, None, None
    )  # fmt: skip
    reused = TrialRecord(trial, TrialResult.complete(trial.id, {"val_accuracy": 80.0}), reused=True)
    # A reused result ran nowhere: no worker, no start, and it "ends" at 0.
    assert summarise(reused, "val_accuracy") == (
        trial.id, "complete", 80.0, None, 12, 0, None, None, None, 0.0, None, None
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
    trials: list[TrialSummary] = [
        ("t000004", "complete", 0.9, 10.0, 1, 0, None, None, None, 1.0, None, None)
    ]
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


def test_pruned_trials_are_counted_apart_and_never_the_best() -> None:
    trial = _trial(budget=9)
    pruned = TrialRecord(
        trial, TrialResult.pruned(trial.id, {"val_accuracy": 99.0}), worker="w", start_time=1.0
    )
    # Its last report is of a lower fidelity: sent as the state, without a value.
    assert summarise(pruned, "val_accuracy") == (
        trial.id, "pruned", None, None, 9, 0, "w", None, 1.0, 1.0, None, None
    )  # fmt: skip
    board = SearchBoard("search", "val_accuracy", "maximize")
    board.update(
        [
            ("a", "complete", 0.5, 10.0, 9, 0, "w", None, 0.0, 1.0, None, None),
            summarise(pruned, "val_accuracy"),
            ("c", "fail", None, None, 9, 0, "w", None, 0.0, 2.0, None, None),
        ],
        SearchStatus(running=1),
    )
    assert (board.done, board.failed, board.pruned) == (3, 1, 1)
    assert (board.best, board.best_trial) == (0.5, "a")
    assert [point[-1] for point in board.timeline] == ["complete", "pruned", "fail"]
    assert board.history[-1][1:] == (3, 1, 1, 1)  # done, failed, pruned, running
    assert board.summary()["pruned"] == 1


def test_live_curves_arrive_as_new_points_and_end_with_their_trials() -> None:
    board = SearchBoard("search", "score", "maximize")
    board.update(
        [], SearchStatus(), [("a", False, [1.0, 2.0], [0.1, 0.2]), ("b", False, [1], [0.3])]
    )
    # A message sent again after a failed one repeats points: each is kept once.
    board.update(
        [], SearchStatus(), [("a", False, [1.0, 2.0, 3.0], [0.1, 0.2, 0.25]), ("b", True, [], [])]
    )
    assert board.live == {
        "a": LiveCurve(False, (1.0, 2.0, 3.0), (0.1, 0.2, 0.25)),
        "b": LiveCurve(True, (1.0,), (0.3,)),
    }
    board.update([], SearchStatus())  # a driver that follows no live curves: they stay
    assert set(board.live) == {"a", "b"}
    board.update([], SearchStatus(), [("b", True, [2.0], [0.31])])  # "a" ended
    assert board.live == {"b": LiveCurve(True, (1.0, 2.0), (0.3, 0.31))}


def test_live_curves_are_bounded() -> None:
    board = SearchBoard("search", "score", "maximize")
    many = [(f"t{i:03d}", False, [float(s) for s in range(300)], [0.0] * 300) for i in range(80)]
    board.update([], SearchStatus(), many)
    assert list(board.live) == [trial_id for trial_id, *_ in many[-LIVE_TRIALS:]]
    assert {len(curve.steps) for curve in board.live.values()} == {LIVE_POINTS}
    assert board.live["t079"].steps[-1] == 299.0


def test_the_driver_sends_each_live_point_once_and_everything_again_after_a_failure() -> None:
    curves: dict[str, list[dict[str, float]]] = {
        "a": [{"epoch": 1.0, "score": 0.1}, {"epoch": 2.0, "loss": 3.0}],
    }
    stopped: set[str] = set()
    sent: list[dict[str, Any]] = []
    failing = [False]

    def run_on_scheduler(function: Any, *args: Any, **kwargs: Any) -> None:
        if failing[0]:
            raise OSError("the scheduler is reconnecting")
        sent.append(kwargs)

    client: Any = SimpleNamespace(run_on_scheduler=run_on_scheduler)
    publisher = ProgressPublisher(
        client, "run", "search", "score", "maximize", SearchStatus, interval=3600,
        live=lambda: (curves, stopped),
    )  # fmt: skip
    try:
        publisher._send()
        curves["a"].append({"epoch": 3.0, "score": 0.3})
        curves["b"] = [{"epoch": 1.0, "score": 0.2}]
        stopped.add("a")
        publisher._send()
        failing[0] = True
        publisher._send()  # lost: the next message carries the curves whole
        failing[0] = False
        del curves["a"]  # ended
        publisher._send()
    finally:
        publisher.close()
    assert [message["live"] for message in sent] == [
        [("a", False, [1.0], [0.1])],  # the report without the objective is left out
        [("a", True, [3.0], [0.3]), ("b", False, [1.0], [0.2])],
        [("b", False, [1.0], [0.2])],
        [("b", False, [], [])],  # the close sends a last message
    ]


def test_the_best_trials_lineage_follows_the_weights_it_inherited() -> None:
    from morphml_dask.dashboard._ancestry import Ancestry
    from morphml_dask.dashboard._page import _summary_html

    def summary(trial_id: str, value: float, parent: str | None, mutation: str | None) -> Any:
        return (trial_id, "complete", value, None, 1, 0, "w", None, 0.0, 1.0, parent, mutation)

    board = SearchBoard("search", "val_accuracy", "maximize")
    board.update(
        [
            summary("t000001", 90.0, None, None),
            summary("t000002", 80.0, None, None),
            summary("t000003", 93.0, "t000001", "widen n1 8->16"),
            summary("t000004", 85.0, "t000002", "skip 0->2"),
            summary("t000005", 95.5, "t000003", "insert conv3x3 on 0->1"),
        ],
        SearchStatus(),
    )
    assert board.best_lineage == [
        ("t000001", None, 90.0),
        ("t000003", "widen n1 8->16", 93.0),
        ("t000005", "insert conv3x3 on 0->1", 95.5),
    ]
    assert board.summary()["best_lineage"][-1] == ["t000005", "insert conv3x3 on 0->1", 95.5]
    page = _summary_html(board)
    assert "Lineage of the best trial: <code>t000001</code> (90)" in page
    assert "&rarr;<i>insert conv3x3 on 0-&gt;1</i>&rarr; <code>t000005</code> (95.5)" in page
    # Bounded: the oldest links go first, but a parent stays while its children arrive.
    ancestry = Ancestry(limit=3)
    ancestry.add("a", None, None, 1.0)
    for child in ("b", "c", "d", "e"):
        ancestry.add(child, "a", "m", 2.0)
    assert len(ancestry) == 3 and ancestry.chain("e") == [("a", None, 1.0), ("e", "m", 2.0)]
    assert ancestry.chain("b") == [("b", None, None)], "an evicted trial is still linked"


def test_the_front_trades_the_objective_against_the_searchs_other_objective() -> None:
    """A search of accuracy against latency: the board's front is over the latency the
    driver sends (``cost``), smaller better, not over the parameter count."""
    scheduler = _Scheduler()
    trials: list[TrialSummary] = [
        ("a", "complete", 90.0, 4.0, 1, 0, None, None, None, 1.0, None, None),
        ("b", "complete", 80.0, 1.0, 1, 0, None, None, None, 2.0, None, None),
        ("c", "complete", 85.0, 5.0, 1, 0, None, None, None, 3.0, None, None),
        ("d", "complete", 95.0, 9.0, 1, 0, None, None, None, 4.0, None, None),
    ]
    status = SearchStatus().to_dict()
    cost = ["proxy_latency_ms", "minimize"]
    receive("run", "s", "val_accuracy", "maximize", trials, status, scheduler, cost=cost)
    board = boards_of(scheduler).boards["run"]
    assert (board.cost, board.cost_smaller) == ("proxy_latency_ms", True)
    assert [t for _, _, t in board.front] == ["b", "a", "d"]  # c: slower and worse than a
    # A cost to maximise (e.g. throughput) turns the front around.
    receive("run-2", "s", "val_accuracy", "maximize", trials, status, scheduler,
            cost=["throughput", "maximize"])  # fmt: skip
    assert [t for _, _, t in boards_of(scheduler).boards["run-2"].front] == ["d"]


def test_the_driver_sends_the_metric_the_front_is_over() -> None:
    record = TrialRecord(
        _trial(),
        TrialResult.complete(
            "t000001", {"val_accuracy": 0.9, "params": 1e4, "proxy_latency_ms": 2.5}
        ),
        worker="tcp://127.0.0.1:1",
    )
    assert summarise(record, "val_accuracy")[3] == 1e4
    assert summarise(record, "val_accuracy", "proxy_latency_ms")[3] == 2.5
