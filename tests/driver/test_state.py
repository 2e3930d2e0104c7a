"""The search state machine, driven by scripted events: no Dask, no store, no clock."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from morphml_dask.driver._events import (
    Cancel,
    Event,
    Fail,
    Finish,
    Instruction,
    Log,
    Outcome,
    Persist,
    Release,
    Retire,
    StopRequested,
    StoreCongested,
    StoreRead,
    Submit,
    TaskFinished,
    TaskLost,
    WorkersSeen,
    submitted_trials,
)
from morphml_dask.driver._state import Policy, SearchState
from morphml_dask.exceptions import SearchStalledError, UnschedulableError
from morphml_dask.optim import ASHA, BaseOptimizer, RandomSearch, RegularizedEvolution
from morphml_dask.space import CellSpace, DagSpace
from morphml_dask.testing import synthetic_result
from morphml_dask.trial import Trial, TrialRecord, TrialResult

TWO_WORKERS = WorkersSeen(2, {"w1": None, "w2": None})


def _machine(
    max_trials: int = 8, optimizer: BaseOptimizer | None = None, **policy: object
) -> SearchState:
    # DAGs rarely repeat an architecture, so each asked trial runs (none is reused).
    optimizer = optimizer or RandomSearch(DagSpace(max_nodes=6), max_trials=max_trials, seed=0)
    return SearchState(optimizer, Policy(name="s", **policy))  # type: ignore[arg-type]


def _of(kind: type, instructions: Sequence[Instruction]) -> list:  # type: ignore[type-arg]
    return [i for i in instructions if isinstance(i, kind)]


def _outcome(
    trial: Trial, worker: str = "w1", *, kind: str | None = None, seconds: float = 0.5
) -> Outcome:
    result = (
        synthetic_result(trial)
        if kind is None
        else TrialResult.failed(trial.id, f"{kind} failure", kind)
    )
    return Outcome(
        result, ({"epoch": 1, "val_accuracy": 1.0},), worker, "cpu", None, 10.0, 10.0 + seconds
    )


def _finish(
    submit: Submit, worker: str = "w1", *, kind: str | None = None, seconds: float = 0.5
) -> TaskFinished:
    return TaskFinished(
        submit.key, tuple(_outcome(t, worker, kind=kind, seconds=seconds) for t in submit.trials)
    )


def _drain(
    state: SearchState, out: list[Instruction], now: float, worker: str = "w1"
) -> list[Instruction]:
    """Finish every submitted task, in order, until the state machine ends; every instruction."""
    seen = list(out)
    pending = _of(Submit, out)
    while pending and not state.over:
        now += 1.0
        out = state.handle([_finish(pending.pop(0), worker)], now)
        seen += out
        pending += _of(Submit, out)
    return seen


def test_fills_the_slots_plus_a_lookahead_and_finishes_with_a_checkpoint() -> None:
    state = _machine(max_trials=8)
    out = state.handle([StoreRead(), TWO_WORKERS], 0.0)
    submits = _of(Submit, out)
    # 2 slots + a lookahead of max(2, 2 // 4): four trials, each in a task of its own.
    assert [s.key for s in submits] == [f"s/t00000{i}" for i in range(1, 5)]
    assert all(s.priority == 0 and s.gpus == 0 and s.workers is None for s in submits)
    assert _of(Persist, out)[0].records == ()  # the checkpoint before the first result
    assert state.running == 4
    everything = _drain(state, out, 0.0)
    assert isinstance(everything[-1], Finish) and state.over
    persisted = [r.trial_id for p in _of(Persist, everything) for r in p.records]
    assert sorted(persisted) == [f"t00000{i}" for i in range(1, 9)]
    last = _of(Persist, everything)[-1]
    assert last.pending == () and last.optimizer_state["told"] == 8
    assert state.counts.done == 8 == state.counts.submitted


def test_results_persist_on_a_cadence_and_release_their_tasks_after() -> None:
    state = _machine(max_trials=20, persist_interval=1.0)
    out = state.handle([StoreRead(), TWO_WORKERS], 0.0)
    first, second = _of(Submit, out)[:2]
    out = state.handle([_finish(first)], 0.5)
    assert not _of(Persist, out), "persisted before the interval was up"
    assert state.wait_budget(0.5) == pytest.approx(0.25)
    assert state.wait_budget(0.9) == pytest.approx(0.1)
    out = state.handle([_finish(second)], 1.2)
    (persist,) = _of(Persist, out)
    assert [r.trial_id for r in persist.records] == ["t000001", "t000002"]
    assert persist.release == (first.key, second.key)
    assert set(persist.curves) == {"t000001", "t000002"}


def test_a_stranded_restricted_trial_runs_again_and_its_cancelled_task_is_ignored() -> None:
    """A trial restricted to the workers that outlive it, all of which leave (a nanny
    restarts a worker under a new address): it is cancelled and submitted again, and when
    Dask hands the cancelled task back, nothing breaks and nothing is recorded twice."""
    state = _machine(max_trials=1, expected_seconds=lambda arch, epochs: 10.0)
    out = state.handle([StoreRead(), WorkersSeen(2, {"w1": 3.0, "w2": None})], 0.0)
    (submit,) = _of(Submit, out)
    assert submit.workers == ("w2",) and submit.strict
    out = state.handle([WorkersSeen(2, {"w1": 2.0, "w3": None})], 5.0)
    assert _of(Cancel, out) == [Cancel((submit.key,))]
    (again,) = _of(Submit, out)
    assert again.key == "s/t000001/1" and again.workers == ("w3",) and again.strict
    assert state.handle([TaskLost(submit.key, "CancelledError()")], 5.1) == []
    out = state.handle([_finish(again, "w3")], 6.0)
    (persist,) = _of(Persist, out)
    (record,) = persist.records
    assert record.attempt == 2 and record.worker == "w3"
    assert isinstance(out[-1], Finish)
    assert state.counts.retried == 1 and state.counts.done == 1


def test_trials_wait_in_the_driver_while_no_worker_stays_long_enough() -> None:
    state = _machine(max_trials=2, expected_seconds=lambda arch, epochs: 100.0, lookahead=0)
    out = state.handle([StoreRead(), WorkersSeen(1, {"w1": 30.0})], 0.0)
    assert not _of(Submit, out) and state.waiting == 1
    out = state.handle([WorkersSeen(2, {"w1": 25.0, "w2": None})], 5.0)
    waited, second = _of(Submit, out)
    assert waited.key == "s/t000001", "the trial that waited went first"
    assert waited.workers == second.workers == ("w2",) and waited.strict and second.strict
    assert state.waiting == 0 and state.counts.kept_off == 2


def _packing_state(max_trials: int, max_retries: int = 2) -> tuple[SearchState, list[Instruction]]:
    """A state machine that has seen eight trials take no time, so it packs from then on."""
    state = _machine(max_trials=max_trials, max_retries=max_retries, lookahead=0)
    out = state.handle([StoreRead(), WorkersSeen(1, {"w1": None})], 0.0)
    for step in range(8):
        (submit,) = _of(Submit, out)
        out = state.handle([_finish(submit, seconds=0.0)], 1.0 + step)
    return state, out


def test_a_pack_that_dask_gives_up_is_retried_trial_by_trial() -> None:
    state, out = _packing_state(max_trials=8 + 32 + 4)
    pack = _of(Submit, out)[0]
    # 32 trials asked for one slot (a small DAG now and then repeats: it is reused, or
    # waits for its twin in the pack).
    assert len(pack.trials) >= 28 and pack.key == f"s/{pack.trials[0].id}+{len(pack.trials) - 1}"
    out = state.handle([TaskLost(pack.key, "KilledWorker()")], 20.0)
    assert Release((pack.key,)) in out
    retries = [s for s in _of(Submit, out) if s.key.endswith("/1")]
    assert [s.trials[0] for s in retries] == list(pack.trials)
    assert state.counts.retried == len(pack.trials)
    everything = _drain(state, out, 21.0)
    records = [r for p in _of(Persist, everything) for r in p.records]
    assert {r.trial_id for r in records} >= {t.id for t in pack.trials}
    assert all(r.attempt == 2 for r in records if r.trial_id in {t.id for t in pack.trials})


def test_a_pack_lost_for_good_fails_each_of_its_trials() -> None:
    state, out = _packing_state(max_trials=8 + 32, max_retries=0)
    pack = _of(Submit, out)[0]
    for other in _of(Submit, out)[1:]:
        out = state.handle([_finish(other)], 19.0)
    out = state.handle([TaskLost(pack.key, "KilledWorker()")], 20.0)
    # Repeats of the pack's architectures waited for it: each trains now, on its own.
    repeats = [t for s in _of(Submit, out) for t in s.trials]
    lost = {t.arch.fingerprint for t in pack.trials}
    assert repeats and all(t.arch.fingerprint in lost for t in repeats)
    everything = _drain(state, out, 21.0)
    persists = _of(Persist, everything)
    records = [r for p in persists for r in p.records]
    assert [r.trial_id for r in records[: len(pack.trials)]] == [t.id for t in pack.trials]
    assert {r.result.error_kind for r in records[: len(pack.trials)]} == {"lost"}
    assert all(r.result.ok for r in records[len(pack.trials) :])
    assert pack.key in persists[0].release and isinstance(everything[-1], Finish)


def test_an_infrastructure_failure_retries_elsewhere_then_fails_the_trial() -> None:
    state = _machine(max_trials=1, max_retries=2)
    workers = WorkersSeen(3, {"w1": None, "w2": None, "w3": None})
    (submit,) = _of(Submit, state.handle([StoreRead(), workers], 0.0))
    out = state.handle([_finish(submit, "w1", kind="cuda")], 1.0)
    (again,) = _of(Submit, out)
    assert again.key == "s/t000001/1" and again.workers == ("w2", "w3") and not again.strict
    out = state.handle([_finish(again, "w2", kind="cuda")], 2.0)
    (third,) = _of(Submit, out)
    assert third.key == "s/t000001/2" and third.workers == ("w3",)
    out = state.handle([_finish(third, "w3", kind="cuda")], 3.0)
    (record,) = _of(Persist, out)[0].records
    assert record.result.error_kind == "cuda" and record.attempt == 3
    assert str(record.result.error).endswith("(the same on every attempt, on w1, w2, w3)")
    assert state.counts.retried == 2


def test_a_worker_blamed_three_times_in_a_row_is_quarantined() -> None:
    state = _machine(max_trials=3, quarantine_after=3, lookahead=1)
    out = state.handle([StoreRead(), WorkersSeen(2, {"w1": None, "w2": None})], 0.0)
    retire: list[Instruction] = []
    for step, submit in enumerate(_of(Submit, out)):
        (again,) = _of(Submit, state.handle([_finish(submit, "w1", kind="oom")], 1.0 + step))
        retire += state.handle([_finish(again, "w2")], 1.5 + step)
    assert _of(Retire, retire) == [Retire("w1")]
    (log,) = _of(Log, retire)
    assert log.message.startswith("quarantined worker w1: 3 trials in a row failed there with oom")
    assert state.health.quarantined_workers == ("w1",)


def test_a_stop_during_a_store_outage_persists_everything_and_cancels_the_rest() -> None:
    state = _machine(max_trials=50)
    out = state.handle([StoreRead(), TWO_WORKERS], 0.0)
    submits = _of(Submit, out)
    out = state.handle([StoreCongested(True), _finish(submits[0])], 1.0)
    assert not _of(Submit, out) and not _of(Persist, out), "submitted or wrote during the outage"
    out = state.handle([_finish(submits[1])], 5.0)
    assert not _of(Submit, out) and not _of(Persist, out)
    assert state.wait_budget(5.0) == pytest.approx(0.25)
    out = state.handle([StopRequested()], 6.0)
    persist, cancel, finish = out
    assert (
        isinstance(persist, Persist) and isinstance(cancel, Cancel) and isinstance(finish, Finish)
    )
    assert [r.trial_id for r in persist.records] == ["t000001", "t000002"]
    assert {t.id for t in persist.pending} == {"t000003", "t000004"}
    assert set(cancel.keys) == {"s/t000003", "s/t000004"}
    assert state.handle([_finish(submits[2])], 7.0) == []


def test_the_outage_ends_and_trials_flow_again() -> None:
    state = _machine(max_trials=6)
    submits = _of(Submit, state.handle([StoreRead(), TWO_WORKERS], 0.0))
    state.handle([StoreCongested(True), _finish(submits[0])], 1.0)
    out = state.handle([StoreCongested(False)], 2.0)
    assert len(_of(Submit, out)) == 1 and len(_of(Persist, out)) == 1


def test_resume_tells_stored_results_resubmits_the_rest_and_reuses_known_architectures() -> None:
    first = RandomSearch(CellSpace(), max_trials=6, seed=3)
    asked = first.ask(3)
    stored = TrialRecord(asked[0], synthetic_result(asked[0]), worker="w1")
    resumed = RandomSearch(CellSpace(), max_trials=6, seed=3)
    resumed.load_state_dict(first.state_dict())
    state = _machine(optimizer=resumed)
    out = state.handle([StoreRead((stored,)), TWO_WORKERS], 0.0)
    keys = [s.key for s in _of(Submit, out)]
    assert keys[:2] == ["s/t000002", "s/t000003"], "the pending trials ran again under their ids"
    assert "s/t000001" not in keys and state.log[0] == ("tell", "t000001")
    # A new trial of an architecture and budget the store holds is answered from it.
    earlier = Trial("x000007", asked[1].arch, asked[1].budget)
    state = _machine(optimizer=RandomSearch(CellSpace(), max_trials=3, seed=3))
    known = StoreRead((TrialRecord(earlier, synthetic_result(earlier)),))
    out = state.handle([known, TWO_WORKERS], 0.0)
    assert [t.id for t in submitted_trials(out)] == ["t000001", "t000003"]
    (reused,) = _of(Persist, state.handle([], 2.0))[0].records
    assert reused.reused and reused.trial_id == "t000002"
    assert reused.result.metrics == synthetic_result(earlier).metrics
    assert state.counts.reused == 1


def test_no_worker_for_longer_than_the_timeout_fails_the_search() -> None:
    state = _machine(max_trials=4, worker_timeout=30.0)
    state.handle([StoreRead(), TWO_WORKERS], 0.0)
    out = state.handle([WorkersSeen(0, {})], 5.0)
    assert _of(Log, out) == [Log("warning", "no worker can run trials; 4 trials wait")]
    assert not state.handle([WorkersSeen(0, {})], 30.0)
    out = state.handle([WorkersSeen(0, {})], 36.0)
    assert isinstance(out[-1], Fail) and isinstance(out[-1].error, UnschedulableError)
    assert "no worker able to run trials for 30 s" in str(out[-1].error)
    assert _of(Cancel, out)[0].keys == tuple(f"s/t00000{i}" for i in range(1, 5))


def test_a_worker_coming_back_resets_the_timeout() -> None:
    state = _machine(max_trials=4, worker_timeout=30.0)
    state.handle([StoreRead(), TWO_WORKERS], 0.0)
    state.handle([WorkersSeen(0, {})], 5.0)
    state.handle([TWO_WORKERS], 20.0)
    state.handle([WorkersSeen(0, {})], 25.0)
    assert not _of(Fail, state.handle([WorkersSeen(0, {})], 50.0))


def test_a_stalled_optimizer_fails_with_its_name() -> None:
    class Silent(RandomSearch):
        def _suggest(self, n: int) -> list[Trial]:
            return []

    state = _machine(optimizer=Silent(CellSpace(), max_trials=5))
    out = state.handle([StoreRead(), TWO_WORKERS], 0.0)
    assert isinstance(out[-1], Fail) and isinstance(out[-1].error, SearchStalledError)
    assert "Silent stalled" in str(out[-1].error)


def test_tasks_it_does_not_know_are_ignored() -> None:
    state = _machine(max_trials=2)
    state.handle([StoreRead(), TWO_WORKERS], 0.0)
    assert state.handle([TaskLost("other/t000001", "x"), TaskLost("s/t000009", "y")], 1.0) == []
    assert state.counts.done == 0


def test_asha_promotions_are_submitted_with_their_rung_as_priority() -> None:
    optimizer = ASHA(CellSpace(), budgets=[1, 3], eta=2, max_trials=12, seed=1)
    state = _machine(optimizer=optimizer)
    everything = _drain(state, state.handle([StoreRead(), TWO_WORKERS], 0.0), 0.0)
    promotions = [s for s in _of(Submit, everything) if s.trials[0].rung == 1]
    assert promotions and all(s.priority == 1 for s in promotions)


def _scripted_run(seed: int) -> tuple[list[tuple[list[Event], float]], list[list[Instruction]]]:
    """A search of regularized evolution on 3 workers where tasks finish out of order, some
    fail for infrastructure reasons, one is lost, the store lags once and workers change:
    the events handed in and the instructions that came out, call by call."""
    rng = np.random.default_rng(seed)
    optimizer = RegularizedEvolution(CellSpace(), population_size=6, max_trials=40, seed=seed)
    state = SearchState(optimizer, Policy(name="r", max_retries=1))
    calls: list[tuple[list[Event], float]] = []
    outputs: list[list[Instruction]] = []
    events: list[Event] = [StoreRead(), WorkersSeen(3, {"w1": None, "w2": None, "w3": None})]
    running: list[Submit] = []
    now = 0.0
    while not state.over:
        calls.append((events, now))
        out = state.handle(events, now)
        outputs.append(out)
        running += _of(Submit, out)
        running = [
            s for s in running if not any(isinstance(i, Cancel) and s.key in i.keys for i in out)
        ]
        now += float(rng.uniform(0.1, 0.8))
        events = []
        if running:
            submit = running.pop(int(rng.integers(len(running))))
            roll = rng.uniform()
            if roll < 0.05:
                events.append(TaskLost(submit.key, "KilledWorker()"))
            else:
                kind = "cuda" if roll < 0.15 else None
                events.append(_finish(submit, f"w{rng.integers(1, 4)}", kind=kind))
        if rng.uniform() < 0.05:
            events.append(StoreCongested(not state.congested))
        if rng.uniform() < 0.05:
            events.append(WorkersSeen(int(rng.integers(1, 4)), {"w1": None, "w2": None}))
        if not running and state.congested:
            events.append(StoreCongested(False))
    return calls, outputs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_replaying_the_same_events_gives_the_same_instructions(seed: int) -> None:
    calls, outputs = _scripted_run(seed)
    assert isinstance(outputs[-1][-1], Finish)
    optimizer = RegularizedEvolution(CellSpace(), population_size=6, max_trials=40, seed=seed)
    replay = SearchState(optimizer, Policy(name="r", max_retries=1))
    for (events, now), expected in zip(calls, outputs, strict=True):
        assert replay.handle(events, now) == expected
    records = [r for out in outputs for p in _of(Persist, out) for r in p.records]
    assert len(records) == 40 and len({r.trial_id for r in records}) == 40
