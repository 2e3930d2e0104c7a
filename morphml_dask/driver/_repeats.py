"""Trials the search answers without training them: a result the store held before a
crash, an architecture and budget evaluated before, or one in training now (a twin, which
waits for that trial's result instead of training it a second time)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from morphml_dask.driver._results import ResultBook
from morphml_dask.trial import Trial, TrialRecord, TrialResult

__all__ = ["Repeats", "Settled", "Twins"]


@dataclass(frozen=True)
class Settled:
    """What the twins of a trial that got its result do next.

    Attributes
    ----------
    reuse
        Twins to answer with the result (it completed).
    train
        The twin that trains the architecture now (the result was a failure or a pruned
        run), or None; the others wait for it in turn.
    """

    reuse: tuple[Trial, ...] = ()
    train: Trial | None = None


@dataclass
class Twins:
    """The trial training each architecture and budget now, and the trials waiting for it."""

    _training: dict[tuple[str, int], Trial] = field(default_factory=dict)
    _parked: dict[str, list[Trial]] = field(default_factory=dict)

    def __len__(self) -> int:
        """Trials waiting for a twin's result."""
        return sum(map(len, self._parked.values()))

    def park(self, trial: Trial) -> bool:
        """Whether ``trial`` waits for a twin in training; if not, and none trains its
        architecture and budget, it does from now on. Only the same graph waits: another
        graph of the same function trains, since its children's morphisms are planned on
        its own graph, which the twin's weights would not fit."""
        key = (trial.arch.fingerprint, trial.budget)
        trainer = self._training.setdefault(key, trial)
        if trainer.id == trial.id or trainer.arch != trial.arch:
            return False
        self._parked.setdefault(trainer.id, []).append(trial)
        return True

    def settle(self, trial: Trial, ok: bool) -> Settled:
        """``trial`` has its final result (``ok``: completed): what its twins do next."""
        key = (trial.arch.fingerprint, trial.budget)
        trainer = self._training.get(key)
        if trainer is None or trainer.id != trial.id:
            return Settled()
        del self._training[key]
        waiting = self._parked.pop(trial.id, [])
        if ok or not waiting:
            return Settled(reuse=tuple(waiting))
        first, *rest = waiting
        self._training[key] = first
        if rest:
            self._parked[first.id] = rest
        return Settled(train=first)


class Repeats:
    """Sorts asked trials into those to train and those answered from what is known.

    Parameters
    ----------
    book
        The search's results: stored ones by id, and the first of each architecture and
        budget.
    """

    def __init__(self, book: ResultBook) -> None:
        self.book = book
        self.twins = Twins()
        self.in_a_row = 0  # trials asked in a row that trained nothing new

    def sort(
        self, asked: Iterable[Trial]
    ) -> tuple[list[Trial], list[TrialResult], list[TrialRecord]]:
        """The trials to train, the stored results to tell (a resume), and the records of
        trials reused from an earlier result; twins of trials in training wait."""
        fresh: list[Trial] = []
        told: list[TrialResult] = []
        reused: list[TrialRecord] = []
        asked = list(asked)
        for trial in asked:
            if (stored := self.book.stored(trial.id)) is not None:
                told.append(stored)
            elif (record := self.reused(trial)) is not None:
                reused.append(record)
            elif not self.twins.park(trial):
                fresh.append(trial)
        self.in_a_row = 0 if fresh else self.in_a_row + len(asked)
        return fresh, told, reused

    def reused(self, trial: Trial) -> TrialRecord | None:
        """``trial`` answered by the first completed trial of its architecture and budget;
        its parent, if reused itself, is the trial that trained the parent (whose weights
        exist), as for a trial that trains."""
        metrics = self.book.evaluated(trial)
        if metrics is None:
            return None
        result = TrialResult.complete(trial.id, metrics)
        return TrialRecord(self.book.from_trained(trial), result, reused=True)

    def settled(self, record: TrialRecord) -> tuple[list[TrialRecord], Trial | None]:
        """``record`` is final: the records of its twins now reused, and the twin that
        trains in its place (it failed or was pruned), or None."""
        settled = self.twins.settle(record.trial, record.result.ok)
        reused = [r for r in map(self.reused, settled.reuse) if r is not None]
        return reused, settled.train
