"""The trials on their way: one record per submission, and those waiting for a worker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from morphml_dask.trial import Trial

__all__ = ["InFlight", "Submission"]


@dataclass(frozen=True)
class Submission:
    """One Dask task of the search.

    Attributes
    ----------
    key
        The Dask key: ``<name>/<trial id>`` for a trial's first attempt,
        ``<name>/<trial id>/<n>`` for its ``n``-th retry, ``<name>/<first id>+<more>`` for a
        pack of trials.
    trials
        The trials it carries (more than one for a pack).
    attempts
        Each trial's attempt in this task, counting from 1.
    allowed
        The only workers it may run on (walltime-aware placement), or None.
    """

    key: str
    trials: tuple[Trial, ...]
    attempts: tuple[int, ...]
    allowed: frozenset[str] | None = None


class InFlight:
    """Submissions not yet taken back, by key, and trials held back for want of a worker
    that stays long enough for them (with the workers each should avoid)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Submission] = {}
        self._trials = 0
        self._attempts: dict[str, int] = {}
        self.waiting: list[tuple[Trial, tuple[str, ...]]] = []

    def __len__(self) -> int:
        """Trials submitted and not taken back."""
        return self._trials

    def __iter__(self) -> Iterator[Submission]:
        return iter(list(self._by_key.values()))

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    @property
    def idle(self) -> bool:
        """Nothing submitted and nothing waiting."""
        return not self._by_key and not self.waiting

    def next_key(self, name: str, trial: Trial) -> tuple[str, int]:
        """The key of ``trial``'s next attempt on its own, and that attempt's number."""
        attempt = self._attempts[trial.id] = self._attempts.get(trial.id, 0) + 1
        return f"{name}/{trial.id}" + (f"/{attempt - 1}" if attempt > 1 else ""), attempt

    def next_attempts(self, trials: tuple[Trial, ...]) -> tuple[int, ...]:
        """Count one more attempt for each of ``trials`` (sent together in a pack)."""
        for trial in trials:
            self._attempts[trial.id] = self._attempts.get(trial.id, 0) + 1
        return tuple(self._attempts[trial.id] for trial in trials)

    def add(self, submission: Submission) -> None:
        self._by_key[submission.key] = submission
        self._trials += len(submission.trials)

    def take(self, key: str) -> Submission | None:
        """The submission under ``key``, no longer in flight; None for a key this search
        no longer waits for (cancelled, resubmitted, or never its own)."""
        submission = self._by_key.pop(key, None)
        if submission is not None:
            self._trials -= len(submission.trials)
        return submission

    def active(self, trial_id: str) -> bool:
        """Whether ``trial_id`` was submitted and has no result yet."""
        return trial_id in self._attempts

    def settled(self, trial: Trial) -> None:
        """``trial`` has its result: its attempts need no counting any more."""
        self._attempts.pop(trial.id, None)

    def stranded(self, present: set[str]) -> list[Submission]:
        """Submissions restricted to workers that have all left."""
        return [
            s for s in self._by_key.values() if s.allowed is not None and not s.allowed & present
        ]

    def keys(self) -> tuple[str, ...]:
        return tuple(self._by_key)
