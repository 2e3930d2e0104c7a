"""The state machine's pruning and pausing, driven by scripted events: no Dask, no clock."""

from __future__ import annotations

from collections.abc import Sequence

from morphml_dask.driver._events import (
    Finish,
    Instruction,
    Outcome,
    PauseTrials,
    Persist,
    Reported,
    StopRequested,
    StopTrials,
    StoreRead,
    Submit,
    TaskFinished,
    WorkersSeen,
)
from morphml_dask.driver._state import Policy, SearchState
from morphml_dask.optim import RandomSearch
from morphml_dask.prune import BasePruner, SuccessiveHalving
from morphml_dask.space import DagSpace
from morphml_dask.trial import TrialResult, TrialState

ONE_WORKER = WorkersSeen(1, {"w1": None})


def _machine(pruner: BasePruner | None = None, max_trials: int = 6) -> SearchState:
    optimizer = RandomSearch(DagSpace(max_nodes=6), max_trials=max_trials, seed=0, budget=9)
    return SearchState(optimizer, Policy(name="s", lookahead=0), pruner)


def _of(kind: type, instructions: Sequence[Instruction]) -> list:  # type: ignore[type-arg]
    return [i for i in instructions if isinstance(i, kind)]


def _report(trial_id: str, step: int, accuracy: float) -> Reported:
    return Reported(((trial_id, step, {"val_accuracy": accuracy}),))


def _returned(submit: Submit, state: TrialState, *, paused: bool = False) -> TaskFinished:
    trial = submit.trials[0]
    metrics = {"val_accuracy": 0.1}
    result = (
        TrialResult.pruned(trial.id, metrics)
        if state is TrialState.PRUNED
        else TrialResult.complete(trial.id, metrics)
    )
    curve = ({"epoch": 1, "val_accuracy": 0.1},)
    return TaskFinished(submit.key, (Outcome(result, curve, "w1", "cpu", paused=paused),))


def test_a_stopped_trial_frees_its_slot_at_once_and_comes_back_pruned() -> None:
    state = _machine(SuccessiveHalving(min_budget=1, eta=2))
    out = state.handle([StoreRead(), ONE_WORKER], 0.0)
    first = _of(Submit, out)
    assert [s.trials[0].id for s in first] == ["t000001"]
    out = state.handle([_report("t000001", 1, 0.9)], 1.0)
    assert not _of(StopTrials, out)  # the first at a rung continues
    out = state.handle([ONE_WORKER, _returned(first[0], TrialState.COMPLETE)], 2.0)
    second = _of(Submit, out)[0]
    out = state.handle([_report(second.trials[0].id, 1, 0.2)], 3.0)
    assert _of(StopTrials, out) == [StopTrials((second.trials[0].id,))]
    # Its successor is submitted before it returns: Dask starts it when the slot frees.
    third = _of(Submit, out)
    assert [s.trials[0].id for s in third] == ["t000003"]
    assert state.running == 2
    out = state.handle([_returned(second, TrialState.PRUNED)], 4.0)
    records = [r for p in _of(Persist, out) for r in p.records]
    assert state.counts.pruned == 1 and state.running == 1
    assert not _of(Submit, out), "the slot was refilled already"
    assert state.pruning.decisions == [(second.trials[0].id, 1)]
    assert all(p.pruner_state is not None for p in _of(Persist, out))
    assert records == [] or records[-1].result.state is TrialState.PRUNED


def test_reports_of_trials_not_running_are_judged_but_never_stopped() -> None:
    state = _machine(SuccessiveHalving(min_budget=1, eta=2))
    state.handle([StoreRead(), ONE_WORKER], 0.0)
    out = state.handle([_report("t999999", 1, 0.9), _report("t999998", 1, 0.1)], 1.0)
    assert not _of(StopTrials, out)
    assert state.pruning.decisions == []


def test_a_pause_tells_the_trials_then_keeps_those_that_return_pending() -> None:
    state = _machine(None)
    out = state.handle([StoreRead(), ONE_WORKER], 0.0)
    submit = _of(Submit, out)[0]
    out = state.handle([StopRequested(pause_for=30.0)], 1.0)
    assert _of(PauseTrials, out) == [PauseTrials()]
    assert not _of(Finish, out), "it waits for the paused trials"
    out = state.handle([_returned(submit, TrialState.PRUNED, paused=True)], 2.0)
    assert isinstance(out[-1], Finish)
    last = _of(Persist, out)[-1]
    assert [t.id for t in last.pending] == [submit.trials[0].id]
    assert last.records == () and state.counts.done == 0


def test_a_pause_gives_up_on_trials_that_do_not_return_in_time() -> None:
    state = _machine(None)
    state.handle([StoreRead(), ONE_WORKER], 0.0)
    state.handle([StopRequested(pause_for=5.0)], 1.0)
    assert not state.over
    out = state.handle([], 6.5)
    assert isinstance(out[-1], Finish) and state.over


def test_replaying_the_reports_gives_the_same_stops() -> None:
    def run() -> list[Instruction]:
        state = _machine(SuccessiveHalving(min_budget=1, eta=3), max_trials=12)
        seen = state.handle([StoreRead(), WorkersSeen(4, {"w1": None})], 0.0)
        for step in range(1, 4):
            for index, submit in enumerate(_of(Submit, seen)):
                trial_id = submit.trials[0].id
                seen += state.handle(
                    [_report(trial_id, step, 1.0 - 0.1 * index + 0.01 * step)], step
                )
        return seen

    first, second = run(), run()
    assert _of(StopTrials, first) == _of(StopTrials, second)
    assert _of(StopTrials, first), "the scripted reports must stop trials"


def test_a_trial_paused_by_an_earlier_run_is_continued_under_a_new_key() -> None:
    # A resumed search's first attempt of a trial can be handed the result of the paused
    # run's execution (Dask reuses a cancelled task still running under the same key).
    state = _machine(None)
    out = state.handle([StoreRead(), ONE_WORKER], 0.0)
    submit = _of(Submit, out)[0]
    out = state.handle([_returned(submit, TrialState.PRUNED, paused=True)], 1.0)
    again = [s for s in _of(Submit, out) if s.trials[0].id == submit.trials[0].id]
    assert [s.key for s in again] == [f"{submit.key}/1"]
    assert state.counts.done == 0 and not state.over
