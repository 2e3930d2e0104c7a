"""`WorkerHealth`: which workers fail trials for reasons of their own, and which trials to
run again.

Some failures may say nothing about the architecture: a CUDA error, an out-of-memory error
or an import error can come from the worker's GPU, memory or environment, and a trial whose
worker died never finished at all. Such a trial runs again, on another worker when there is
one, at most ``max_retries`` times; if it fails the same way each time, the trial is to
blame and it is recorded as failed. If it then completes elsewhere, the worker it failed on
is to blame: a worker blamed for ``quarantine_after`` trials in a row (no trial completing
on it in between) is quarantined, and the driver retires it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from morphml_dask.trial import TrialResult

__all__ = [
    "INFRASTRUCTURE_FAILURES",
    "Quarantine",
    "WorkerAbsence",
    "WorkerHealth",
    "failed_everywhere",
]

# Failure kinds (`TrialResult.error_kind`) that may blame the worker rather than the trial
# ("store": the store stayed unreachable for morphml.store-outage-timeout seconds).
INFRASTRUCTURE_FAILURES = frozenset({"cuda", "oom", "import", "store"})


@dataclass(frozen=True)
class Quarantine:
    """A worker taken out of the search, when, and the failures that made it so."""

    worker: str
    time: float
    kinds: tuple[str, ...]

    @property
    def message(self) -> str:
        """What the driver logs when it retires the worker."""
        kinds = "/".join(sorted(set(self.kinds)))
        return (
            f"quarantined worker {self.worker}: {len(self.kinds)} trials in a row failed "
            f"there with {kinds} and completed on other workers"
        )


@dataclass
class WorkerHealth:
    """Failed attempts of trials and the blame of workers, for one search.

    Parameters
    ----------
    max_retries
        Extra attempts a trial gets after a lost worker or an infrastructure failure.
    quarantine_after
        Trials in a row a worker may be blamed for before it is quarantined.
    """

    max_retries: int
    quarantine_after: int = 3
    quarantined: list[Quarantine] = field(default_factory=list)
    _failures: dict[str, list[tuple[str | None, str]]] = field(default_factory=dict)
    _blame: dict[str, list[str]] = field(default_factory=dict)

    def is_quarantined(self, worker: str) -> bool:
        return any(q.worker == worker for q in self.quarantined)

    @property
    def quarantined_workers(self) -> tuple[str, ...]:
        return tuple(q.worker for q in self.quarantined)

    def failed(self, trial_id: str, worker: str | None, kind: str) -> bool:
        """Note an attempt of ``trial_id`` that failed with ``kind`` on ``worker`` (None:
        unknown, the worker died); returns whether the trial runs again."""
        failures = self._failures.setdefault(trial_id, [])
        failures.append((worker, kind))
        if len(failures) <= self.max_retries:
            return True
        del self._failures[trial_id]  # the trial's own fault: nobody else is blamed
        return False

    def completed(self, trial_id: str, worker: str | None, now: float) -> list[Quarantine]:
        """``trial_id`` came back from ``worker`` without an infrastructure failure: the
        workers it failed on before are blamed; returns the quarantines that follow."""
        if worker is not None:
            self._blame.pop(worker, None)
        found = []
        for blamed, kind in self._failures.pop(trial_id, []):
            if blamed is None or blamed == worker or self.is_quarantined(blamed):
                continue
            streak = self._blame.setdefault(blamed, [])
            streak.append(kind)
            if len(streak) >= self.quarantine_after:
                del self._blame[blamed]
                found.append(Quarantine(blamed, now, tuple(streak)))
        self.quarantined.extend(found)
        return found

    def tried_on(self, trial_id: str) -> list[str]:
        """The workers on which ``trial_id`` failed so far, in order."""
        return [w for w, _ in self._failures.get(trial_id, []) if w is not None]

    def attempts(self, trial_id: str) -> int:
        """Failed attempts of ``trial_id`` that are being retried."""
        return len(self._failures.get(trial_id, []))


class WorkerAbsence:
    """How long the cluster has had no worker able to run the trials while trials wait;
    says when to warn and, past ``timeout`` seconds (None: never), when to give up."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.since: float | None = None

    def see(self, slots: int, idle: bool, now: float) -> str | None:
        """``"warn"`` when the absence starts, ``"give up"`` once it lasted past the
        timeout, else None."""
        if slots > 0 or idle:
            self.since = None
            return None
        if self.since is None:
            self.since = now
            return "warn"
        if self.timeout is not None and now - self.since > self.timeout:
            return "give up"
        return None


def failed_everywhere(result: TrialResult, workers: list[str]) -> TrialResult:
    """The failure of a trial that failed the same way on every worker it ran on: the
    trial, not the workers, is to blame."""
    return TrialResult.failed(
        result.trial_id,
        f"{result.error} (the same on every attempt, on {', '.join(workers)})",
        result.error_kind or "error",
    )
