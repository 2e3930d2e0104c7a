"""`Dispatcher`: trials into Dask tasks, with keys, packs, priorities and placement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from morphml_dask.driver._events import Outcome, Submit
from morphml_dask.driver._flight import InFlight, Submission
from morphml_dask.driver._packing import PackSize
from morphml_dask.driver._placement import DurationEstimate, workers_staying

if TYPE_CHECKING:
    from morphml_dask.driver._state import Counts, Policy
    from morphml_dask.trial import Trial

__all__ = ["Dispatcher"]


class Dispatcher:
    """Decides how each trial goes to the cluster: alone or packed with others, under which
    key and priority, and on which workers (walltime-aware placement); holds the trials in
    flight and those waiting for a worker that stays long enough.

    Parameters
    ----------
    policy
        The search's settings (name, GPUs per trial, packing, the task's own duration
        estimate).
    counts
        The search's counters; `submit` counts submissions and restricted trials.
    """

    def __init__(self, policy: Policy, counts: Counts) -> None:
        self.policy = policy
        self.counts = counts
        self.flight = InFlight()
        self._packing = PackSize(policy.max_pack)
        self._durations = DurationEstimate(policy.expected_seconds)
        self._retire_at: dict[str, float | None] = {}

    def see_workers(self, retire_in: Mapping[str, float | None], now: float) -> None:
        """The workers there are now and the seconds until each retires (None: never)."""
        self._retire_at = {
            worker: None if left is None else now + left for worker, left in retire_in.items()
        }

    def stranded(self) -> list[Submission]:
        """Submissions restricted to workers that have all left, no longer in flight."""
        gone = self.flight.stranded(set(self._retire_at))
        for submission in gone:
            self.flight.take(submission.key)
        return gone

    def observe(self, trial: Trial, outcome: Outcome) -> None:
        """Learn how long trials take, for packing and placement."""
        self._packing.observe(outcome.start_time, outcome.end_time)
        if outcome.result.ok:
            epochs = trial.budget - trial.parent_budget
            self._durations.observe(epochs, outcome.start_time, outcome.end_time)

    def capacity(self, slots: int) -> int:
        """Tasks to keep submitted: the slots plus the lookahead; with no worker yet, one
        slot's worth, so that an adaptive cluster sees work and starts workers."""
        slots = max(slots, 1)
        lookahead = self.policy.lookahead
        return slots + (max(2, slots // 4) if lookahead is None else lookahead)

    def pack_size(self) -> int:
        """Trials per task now: one while placement restricts trials to some workers, since
        a pack goes where its longest trial may."""
        return 1 if self._any_retiring() else self._packing.size()

    def submit(self, trial: Trial, now: float, avoid: Sequence[str] = ()) -> Submit | None:
        """``trial`` in a task of its own, on the workers that stay long enough for it and,
        as a preference, away from those in ``avoid``; None while no worker stays long
        enough (it then waits). Each attempt has a key of its own."""
        workers, strict = None, False
        if self._any_retiring():
            workers = workers_staying(self._retire_at, now, self._durations.seconds(trial))
            if workers == []:
                self.flight.waiting.append((trial, tuple(avoid)))
                return None
            strict = workers is not None
            self.counts.kept_off += strict
        if avoid:
            pool = workers or list(self._retire_at)
            workers = [w for w in pool if w not in avoid] or workers
        key, attempt = self.flight.next_key(self.policy.name, trial)
        allowed = frozenset(workers) if strict and workers else None
        self.flight.add(Submission(key, (trial,), (attempt,), allowed))
        self.counts.submitted += 1
        chosen = tuple(workers) if workers else None
        return Submit(key, (trial,), trial.rung, self.policy.gpus_per_trial, chosen, strict)

    def submit_pack(self, trials: tuple[Trial, ...], now: float) -> Submit | None:
        """``trials`` in one task under ``<name>/<first id>+<more>``."""
        if len(trials) == 1:
            return self.submit(trials[0], now)
        key = f"{self.policy.name}/{trials[0].id}+{len(trials) - 1}"
        self.flight.add(Submission(key, trials, self.flight.next_attempts(trials)))
        self.counts.submitted += len(trials)
        priority = max(trial.rung for trial in trials)
        return Submit(key, trials, priority, self.policy.gpus_per_trial)

    def _any_retiring(self) -> bool:
        return any(t is not None for t in self._retire_at.values())
