"""What the driver keeps of every trial for the whole search stays small.

Scripted runs of the state machine (no Dask, no store): the replay log, the deduplication
index and the reused-trial map read back exactly what went in, and thousands of trials cost
the state machine a bounded number of bytes each (`tracemalloc`, which counts every
allocation of this process).
"""

from __future__ import annotations

import dataclasses
import math
import random
import tracemalloc

import pytest

from morphml_dask.driver._compact import DigestTable, EventLog, FirstResults
from morphml_dask.driver._events import Outcome, StoreRead, Submit, TaskFinished, WorkersSeen
from morphml_dask.driver._results import ResultBook
from morphml_dask.driver._state import Policy, SearchState
from morphml_dask.optim import BaseOptimizer
from morphml_dask.space import CellSpace
from morphml_dask.trial import Trial, TrialRecord, TrialResult

# Not an optimizer's own numbering (the fourth has Arabic-Indic digits).
ODD_IDS = ["trial-a", "t01", "t000001x", "t\u0661\u0662\u0663\u0664\u0665\u0666", ""]


def test_the_event_log_reads_back_the_events_it_was_given() -> None:
    events: list[tuple[object, ...]] = [
        ("ask", 3, ["t000001", "t000002", "trial-a"]),
        ("tell", "t000002"),
        ("ask", 1, ["t1234567"]),
        ("tell", "trial-a"),
        ("ask", 0, []),
        *[("tell", odd) for odd in ODD_IDS],
        ("tell", "t000001"),
    ]
    log = EventLog()
    for event in events:
        if event[0] == "ask":
            log.ask(event[1], event[2])  # type: ignore[arg-type]
        else:
            log.tell(event[1])  # type: ignore[arg-type]
    assert list(log) == events
    assert len(log) == len(events)
    assert log[0] == events[0] and log[-1] == ("tell", "t000001") and log[4] == ("ask", 0, [])
    with pytest.raises(IndexError):
        log[len(events)]


class _Cycling(BaseOptimizer):
    """Trial ``i`` has budget ``i``, cycling through a few cells: no result is reused, and
    the optimizer keeps nothing per trial, so what grows is the state machine's."""

    name = "cycling"

    def __init__(self, max_trials: int) -> None:
        super().__init__(CellSpace(), max_trials=max_trials, seed=0)
        self._cells = [self.space.sample(self.rng) for _ in range(8)]

    def _suggest(self, n: int) -> list[Trial]:
        return [
            self._new_trial(self._cells[self._asked % len(self._cells)], self._asked + 1)
            for _ in range(n)
        ]

    def _observe(self, trial: Trial, result: TrialResult, score: float) -> None:
        del trial, result, score


def _outcome(trial: Trial) -> Outcome:
    # Fresh strings, as a result unpickled from a worker has.
    metrics = {f"val_accuracy{''}": 0.5, "cost_seconds": 0.0, "wall_time": 1e-6 * len(trial.id)}
    return Outcome(TrialResult.complete(trial.id, metrics), (), "w1", "cpu", None, 1.0, 1.0)


def test_thousands_of_trials_cost_the_state_machine_under_180_bytes_each() -> None:
    """Before the log and the index were compact it was about 650 bytes a trial; 133 now."""
    trials, warm = 8000, 2000
    # Two slots, one trial a task: what is in flight at any time is a few trials' worth.
    state = SearchState(_Cycling(trials), Policy(name="many", max_pack=1, lookahead=0))
    now = 0.0
    out = state.handle([StoreRead(()), WorkersSeen(2, {"w1": None})], now)
    tracemalloc.start()
    try:
        before = None
        while not state.over:
            events = [
                TaskFinished(s.key, tuple(_outcome(t) for t in s.trials))
                for s in out
                if isinstance(s, Submit)
            ]
            now += 0.5  # past the persist interval: buffered records leave every call
            out = state.handle(events, now)
            if before is None and state.counts.done >= warm:
                before, done = tracemalloc.get_traced_memory()[0], state.counts.done
        del events, out
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert state.counts.done == trials and len(state.log) >= trials
    assert before is not None
    per_trial = (after - before) / (trials - done)
    assert per_trial < 180, per_trial


def _record(trial: Trial, metrics: dict[str, float], reused: bool = False) -> TrialRecord:
    return TrialRecord(trial, TrialResult.complete(trial.id, metrics), reused=reused)


@pytest.mark.parametrize("first_id", ["t000003", "trial-a"])
def test_the_first_result_keeps_every_metric_exactly_and_who_trained_it(first_id: str) -> None:
    (first,) = _Cycling(4).ask(1)
    first = dataclasses.replace(first, id=first_id)
    later, other_budget = (dataclasses.replace(first, id=i) for i in ("t000009", "odd"))
    other_budget = dataclasses.replace(other_budget, budget=first.budget + 1)
    metrics = {"val_accuracy": 0.1 + 0.2, "params": 1e-300, "loss": math.inf, "x": -0.0}
    book = ResultBook()
    book.add(_record(first, metrics))
    book.add(_record(later, {"val_accuracy": 0.9}))  # not the first: not kept
    book.add(_record(dataclasses.replace(first, id="reused-1"), metrics, reused=True))
    found = book.evaluated(later)
    assert found == metrics and list(found or {}) == list(metrics)
    assert math.copysign(1.0, (found or {})["x"]) == -1.0
    assert book.evaluated(other_budget) is None
    assert book.trained("reused-1") == first_id and book.trained("t000009") == "t000009"
    assert book.trained(first_id) == first_id and book.trained("unknown") == "unknown"


def test_first_results_of_different_metric_names_read_back_apart() -> None:
    index = FirstResults()
    index.add("a" * 32, 1, "t000001", {"acc": 1.0})
    index.add("a" * 32, 2, "t000002", {"acc": 2.0, "params": 3.0})
    index.add("a" * 32, 2, "t000003", {"acc": 9.0})
    index.add("b" * 32, 1, "t000004", {})
    assert index.get("a" * 32, 1) == ("t000001", {"acc": 1.0})
    assert index.get("a" * 32, 2) == ("t000002", {"acc": 2.0, "params": 3.0})
    assert index.get("b" * 32, 1) == ("t000004", {})
    assert index.get("b" * 32, 2) is None and len(index) == 3


def test_the_digest_table_maps_digests_to_rows_like_a_dict() -> None:
    rng = random.Random(0)
    table, expected = DigestTable(), {}
    for row in range(20_000):
        digest = rng.getrandbits(128)
        if row % 5 == 0:  # the same low half: the slots collide, the high half tells apart
            digest = (row << 64) | 12345
        table.put(digest, row)
        expected[digest] = row
    assert len(table) == len(expected)
    assert all(table.get(digest) == row for digest, row in expected.items())
    assert all(table.get(rng.getrandbits(128)) is None for _ in range(1000))
    assert table.get((10**9 << 64) | 12345) is None
    some = next(iter(expected))
    table.put(some, 7)
    assert table.get(some) == 7 and len(table) == len(expected)
