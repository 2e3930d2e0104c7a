"""Reused results carry their weights: a promotion (or child) of a trial answered from an
earlier one of the same architecture and budget continues from the trial that trained it.

Scripted runs of the state machine (no Dask, no store): every task finishes with a
synthetic result, and the test watches what the workers would be asked to load.
"""

from __future__ import annotations

import dataclasses

from morphml_dask.driver._events import (
    Outcome,
    StoreRead,
    Submit,
    TaskFinished,
    WorkersSeen,
)
from morphml_dask.driver._state import Policy, SearchState
from morphml_dask.optim import ASHA
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


class _WatchedASHA(ASHA):
    """ASHA, keeping the trials it asked for as it made them."""

    asked: dict[str, Trial]

    def ask(self, n: int = 1) -> list[Trial]:
        trials = super().ask(n)
        self.__dict__.setdefault("asked", {}).update((t.id, t) for t in trials)
        return trials


def _asha(seed: int) -> _WatchedASHA:
    # Tiny DAGs repeat often: many trials of a rung are answered from an earlier one.
    return _WatchedASHA(DagSpace(max_nodes=2), budgets=[1, 3, 9], eta=3, max_trials=60, seed=seed)


def test_every_promotion_continues_from_a_trained_trial() -> None:
    reused_parents = 0
    for seed in range(4):
        asha = _asha(seed)
        state = SearchState(asha, Policy(name="s"))
        submitted, records = _run(state, [StoreRead(), WorkersSeen(2, {"w1": None, "w2": None})])
        reused = {r.trial_id for r in records if r.reused}
        trained = {t.id for t in submitted}
        assert reused and not reused & trained, "the setting should reuse results"
        promotions = [t for t in submitted if t.parent is not None]
        assert promotions
        for trial in promotions:
            assert trial.parent in trained, f"{trial.id} continues from {trial.parent}, untrained"
        # The source stands in for the reused parent: same architecture, same budget.
        by_id = {r.trial_id: r.trial for r in records}
        for trial in promotions:
            assert by_id[str(trial.parent)].arch.fingerprint == trial.arch.fingerprint
            assert by_id[str(trial.parent)].budget == trial.parent_budget
        reused_parents += sum(str(asha.asked[t.id].parent) in reused for t in promotions)
    assert reused_parents > 0, "no promotion of a reused trial: the test proves nothing"


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
