"""Twins: a trial asked for while a trial of the same architecture and budget trains waits
for that trial's result instead of training it a second time. Scripted runs of the state
machine (no Dask, no store)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from morphml_dask.driver._events import (
    Event,
    Fail,
    Instruction,
    Outcome,
    Persist,
    StopRequested,
    StoreRead,
    Submit,
    TaskFinished,
    WorkersSeen,
)
from morphml_dask.driver._search import _status
from morphml_dask.driver._state import Policy, SearchState
from morphml_dask.optim import RandomSearch
from morphml_dask.space import Config, FunctionSpace, Sampler
from morphml_dask.trial import Trial, TrialResult

TWO_WORKERS = WorkersSeen(2, {"w1": None, "w2": None})


def two_widths(s: Sampler) -> dict[str, Any]:
    return {"width": s.choice("width", [8, 16])}


def one_width(s: Sampler) -> dict[str, Any]:
    return {"width": s.choice("width", [8])}


def _searching(space: Any, max_trials: int | None) -> SearchState:
    optimizer = RandomSearch(FunctionSpace(space), budget=1, max_trials=max_trials, seed=0)
    return SearchState(optimizer, Policy(name="s"))


def _submits(out: Sequence[Instruction]) -> list[Submit]:
    return [i for i in out if isinstance(i, Submit)]


def _records(out: Sequence[Instruction]) -> list[Any]:
    return [r for i in out if isinstance(i, Persist) for r in i.records]


def _done(submit: Submit, *, failed: bool = False) -> TaskFinished:
    (trial,) = submit.trials
    result = (
        TrialResult.failed(trial.id, "diverged", "diverged")
        if failed
        else TrialResult.complete(trial.id, {"val_accuracy": float(_width(trial))})
    )
    outcome = Outcome(result, ({"epoch": 1},), "w1", "cpu", None, 0.0, 1.0)
    return TaskFinished(submit.key, (outcome,))


def _width(trial: Trial) -> int:
    assert isinstance(trial.arch, Config)
    return int(trial.arch.value["width"])


def test_a_twin_asked_while_the_first_trains_waits_and_reuses_its_result() -> None:
    state = _searching(two_widths, max_trials=6)
    out = state.handle([StoreRead(), TWO_WORKERS], 0.0)
    first = _submits(out)
    assert sorted(_width(s.trials[0]) for s in first) == [8, 16], "one of each trains"
    assert len(state.repeats.twins) == 4 and len(state.optimizer.pending) == 6
    status = _status(state, None, state.optimizer, 1.0)
    assert (status.running, status.waiting_for_a_twin, status.done) == (2, 4, 0)
    seen = list(out)
    for step, submit in enumerate(first):
        out = state.handle([_done(submit)], 1.0 + step)
        assert not _submits(out), "a twin was trained"
        seen += out
    assert state.over and len(state.repeats.twins) == 0
    records = _records(seen)
    assert len(records) == 6 and len({r.trial_id for r in records}) == 6
    assert sum(r.reused for r in records) == 4 and state.counts.reused == 4
    for record in records:  # each twin has the result of its own width
        assert record.result.metrics == {"val_accuracy": _width(record.trial)}


def test_the_twin_of_a_failed_trial_trains_it_and_the_others_wait_for_that() -> None:
    state = _searching(two_widths, max_trials=6)
    first = _submits(state.handle([StoreRead(), TWO_WORKERS], 0.0))
    failing = first[0]
    out = state.handle([_done(failing, failed=True)], 1.0)
    (again,) = _submits(out)
    assert _width(again.trials[0]) == _width(failing.trials[0])
    assert again.trials[0].id != failing.trials[0].id, "a twin trains, not a retry"
    seen = list(out)
    for step, submit in enumerate([first[1], again]):
        out = state.handle([_done(submit)], 2.0 + step)
        assert not _submits(out)
        seen += out
    assert state.over
    records = _records(seen)
    assert len(records) == 6
    assert [r.result.state.value for r in records].count("fail") == 1
    assert sum(r.reused for r in records) == 3


def test_twins_waiting_when_the_search_stops_are_pending_in_its_checkpoint() -> None:
    state = _searching(two_widths, max_trials=6)
    first = _submits(state.handle([StoreRead(), TWO_WORKERS], 0.0))
    out = state.handle([_done(first[0]), StopRequested()], 1.0)
    checkpoint = [i for i in out if isinstance(i, Persist)][-1]
    stored = {r.trial_id for r in _records(out)}
    waiting = {t.id for t in checkpoint.pending}
    assert len(stored) == 3 and len(waiting) == 3 and not stored & waiting

    resumed = RandomSearch(FunctionSpace(two_widths), budget=1, max_trials=6, seed=0)
    resumed.load_state_dict(checkpoint.optimizer_state)
    state = SearchState(resumed, Policy(name="s"))
    events: list[Event] = [StoreRead(tuple(_records(out))), TWO_WORKERS]
    again = _submits(state.handle(events, 0.0))
    assert len(again) == 1 and again[0].trials[0].id in waiting, "one trains, two wait"
    out = state.handle([_done(again[0])], 1.0)
    assert state.over and {r.trial_id for r in _records(out)} == waiting


def test_a_search_without_max_trials_over_one_architecture_stops_with_a_clear_error() -> None:
    """Twins waiting are bounded (up to two rounds of the slots), and an optimizer that
    asks only for what it evaluated stops the search instead of spinning in the driver."""
    state = _searching(one_width, max_trials=None)
    (first,) = _submits(state.handle([StoreRead(), TWO_WORKERS], 0.0))
    assert 4 <= len(state.repeats.twins) < 8, "two slots and a lookahead of two"
    out = state.handle([_done(first)], 1.0)
    assert state.over
    (fail,) = [i for i in out if isinstance(i, Fail)]
    assert re.match(
        r"(?s)RandomSearch proposes nothing new\n"
        r"  expected: an optimizer that asks for architectures not evaluated yet, or max_trials\n"
        r"  received: 100\d trials in a row of architectures and budgets evaluated before, and "
        r"no max_trials\n"
        r"  fix: set max_trials, or widen the search space; the results so far are stored",
        str(fail.error),
    ), str(fail.error)
    records = _records(out)  # what came back is stored before the search stops
    assert len(records) >= 1000 and len({r.trial_id for r in records}) == len(records)
    assert [r.trial_id for r in records if not r.reused] == [first.trials[0].id]


def test_another_graph_of_the_same_function_trains_rather_than_waits() -> None:
    """A child's morphism is planned on its parent's own graph: a twin's weights fit only a
    parent of the same graph, so only the same graph waits."""
    from morphml_dask.driver._repeats import Twins
    from morphml_dask.space import ArchGraph, Node

    conv = Node("conv", kernel=3, channels=8)
    plain = ArchGraph(["input", conv, "output"], [(0, 1), (1, 2)])
    padded = ArchGraph(["input", conv, Node("identity"), "output"], [(0, 1), (1, 2), (2, 3)])
    assert plain.fingerprint == padded.fingerprint and plain != padded
    twins = Twins()
    first, same, other = Trial("t1", plain, 1), Trial("t2", plain, 1), Trial("t3", padded, 1)
    assert not twins.park(first) and twins.park(same) and not twins.park(other)
    assert twins.settle(first, ok=True).reuse == (same,) and len(twins) == 0
