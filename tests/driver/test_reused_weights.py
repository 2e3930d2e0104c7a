"""Reused results carry their weights: a promotion (or child) of a trial answered from an
earlier one of the same architecture and budget continues from the trial that trained it.

Scripted runs of the state machine (no Dask, no store): every task finishes with a
synthetic result, and the test watches what the workers would be asked to load.
"""

from __future__ import annotations

import dataclasses
import json

from morphml_dask.driver._events import (
    Outcome,
    StoreRead,
    Submit,
    TaskFinished,
    WorkersSeen,
)
from morphml_dask.driver._state import Policy, SearchState
from morphml_dask.optim import ASHA, BaseOptimizer, RegularizedEvolution
from morphml_dask.space import DagSpace
from morphml_dask.testing import synthetic_result
from morphml_dask.trial import Trial, TrialRecord


def _outcome(trial: Trial) -> Outcome:
    return Outcome(synthetic_result(trial), ({"epoch": 1},), "w1", "cpu", None, 0.0, 1.0)


def _run(state: SearchState, events: list[object]) -> tuple[list[Trial], list[TrialRecord]]:
    """Run the search to its end, finishing tasks in order; the trials submitted (each
    attempt) and the records persisted."""
    submitted: list[Trial] = []
    records: list[TrialRecord] = []
    out = state.handle(events, 0.0)  # type: ignore[arg-type]
    pending: list[Submit] = []
    now = 0.0
    while True:
        for instruction in out:
            if isinstance(instruction, Submit):
                pending.append(instruction)
                submitted += instruction.trials
            records += getattr(instruction, "records", ())
        if state.over or not pending:
            break
        task = pending.pop(0)
        now += 1.0
        out = state.handle([TaskFinished(task.key, tuple(map(_outcome, task.trials)))], now)
    return submitted, records


def _watched(optimizer: BaseOptimizer) -> dict[str, Trial]:
    """The trials ``optimizer`` asks for from now on, by id, as it made them (the driver may
    change a trial's parent before submitting it)."""
    asked: dict[str, Trial] = {}
    ask = optimizer.ask

    def asking(n: int = 1) -> list[Trial]:
        trials = ask(n)
        asked.update((t.id, t) for t in trials)
        return trials

    optimizer.ask = asking  # type: ignore[method-assign]
    return asked


def _check_parents_trained(submitted: list[Trial], records: list[TrialRecord]) -> list[Trial]:
    """Every submitted trial with a parent continues from a trained trial of the parent's
    budget, and every stored record, reused ones included, names a trained parent (whose
    weights exist); the submitted trials with a parent."""
    trained = {t.id for t in submitted}
    by_id = {r.trial_id: r.trial for r in records}
    children = [t for t in submitted if t.parent is not None]
    for trial in children:
        assert trial.parent in trained, f"{trial.id} continues from {trial.parent}, untrained"
        assert by_id[str(trial.parent)].budget == trial.parent_budget
    for record in records:
        parent = record.trial.parent
        assert parent is None or parent in trained, f"{record.trial_id}'s parent {parent}"
    return children


def test_no_promotion_trains_an_architecture_and_budget_twice() -> None:
    """Tiny DAGs repeat often: a repeat of an architecture and budget, asked while the
    first trains or after it, is answered with its result, promotions included."""
    for seed in range(4):
        asha = ASHA(DagSpace(max_nodes=2), budgets=[1, 3, 9], eta=3, max_trials=60, seed=seed)
        state = SearchState(asha, Policy(name="s"))
        submitted, records = _run(state, [StoreRead(), WorkersSeen(2, {"w1": None, "w2": None})])
        assert len(records) == 60 and any(r.reused for r in records)
        # (another graph of the same function trains: its children's morphisms need it)
        runs = [(json.dumps(t.arch.to_dict(), sort_keys=True), t.budget) for t in submitted]
        assert len(runs) == len(set(runs)), "an architecture and budget trained twice"
        promotions = _check_parents_trained(submitted, records)
        assert promotions
        by_id = {r.trial_id: r.trial for r in records}
        for trial in promotions:  # the parent has the promotion's architecture
            assert by_id[str(trial.parent)].arch.fingerprint == trial.arch.fingerprint


def test_a_child_of_a_reused_parent_continues_from_the_trial_that_trained_it() -> None:
    reused_parents = 0
    for seed in range(4):
        evolution = RegularizedEvolution(
            DagSpace(max_nodes=2),
            population_size=6,
            budget=2,
            inherit_weights=True,
            max_trials=60,
            seed=seed,
        )
        asked = _watched(evolution)
        state = SearchState(evolution, Policy(name="s"))
        submitted, records = _run(state, [StoreRead(), WorkersSeen(2, {"w1": None, "w2": None})])
        reused = {r.trial_id for r in records if r.reused}
        assert reused and not reused & {t.id for t in submitted}
        children = _check_parents_trained(submitted, records)
        reused_parents += sum(str(asked[t.id].parent) in reused for t in children)
    assert reused_parents > 0, "no child of a reused trial: the test proves nothing"


def test_a_resumed_search_knows_which_trial_each_stored_reused_one_stands_for() -> None:
    """After a resume the book learns the sources from the store: a reused record follows
    the first completed trial of its architecture and budget."""
    from morphml_dask.driver._results import ResultBook

    (first,) = ASHA(DagSpace(max_nodes=2), budgets=[1, 3], max_trials=2, seed=0).ask(1)
    again = dataclasses.replace(first, id="t000009")
    book = ResultBook()
    book.remember_stored(
        [
            TrialRecord(first, synthetic_result(first)),
            TrialRecord(again, synthetic_result(again), reused=True),
        ]
    )
    assert book.trained("t000009") == first.id
    assert book.trained(first.id) == first.id
    assert book.trained("unknown") == "unknown"
