"""Walltime-aware placement: keep a trial off a worker that retires before it would finish.

Batch-system workers run with ``--lifetime`` (dask-jobqueue sets it below the walltime), so
each closes itself at a moment known in advance. A trial started on a worker shortly before
that is lost and runs again elsewhere: the time is wasted. The driver therefore asks every
worker once in a while when it retires (`retirement_times`), estimates how long a trial will
take (`DurationEstimate`), and restricts a trial to the workers with time enough left; when
no worker has, the trial waits in the driver until one has (a fresh job of an adaptive
cluster, say).
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client

    from morphml_dask.tasks import BaseTask
    from morphml_dask.trial import Trial

__all__ = ["DurationEstimate", "Lifetimes", "retirement_time"]

# Seconds of slack on top of the expected duration, for the time a trial waits in a
# worker's queue and for estimates that fall short.
_MARGIN_S = 5.0
_FACTOR = 1.25


def retirement_time(dask_worker: Any) -> float | None:
    """When ``dask_worker`` closes itself (unix seconds), or None without ``--lifetime``.

    The lifetime timer starts when the worker object is built, a moment after its process
    started, so counting from the process start errs on the early side.
    """
    lifetime = getattr(dask_worker, "lifetime", None)
    if not lifetime:
        return None
    import psutil  # type: ignore[import-untyped]

    return float(psutil.Process().create_time()) + float(lifetime)


class Lifetimes:
    """The retirement times of a cluster's workers, asked again every ``refresh_s``."""

    def __init__(self, refresh_s: float = 10.0) -> None:
        self.refresh_s = refresh_s
        self.kept_off = 0  # trials restricted to workers that stay long enough
        self._times: dict[str, float | None] = {}
        self._asked_at = -float("inf")

    def times(self, client: Client) -> dict[str, float | None]:
        """Worker address -> retirement time (None: never), at most ``refresh_s`` old."""
        if time.monotonic() - self._asked_at > self.refresh_s:
            try:
                self._times = client.run(retirement_time, on_error="ignore")
            except OSError:  # a worker left mid-question: keep the last answer
                return self._times
            self._asked_at = time.monotonic()
        return self._times

    def any_retiring(self, client: Client) -> bool:
        return any(t is not None for t in self.times(client).values())

    def workers_for(self, client: Client, seconds: float | None) -> list[str] | None:
        """Workers that stay long enough for a trial of ``seconds``: None when any worker
        will do (no worker retires, or the duration is unknown), [] when none stays."""
        if seconds is None or not self.any_retiring(client):
            return None
        times = self.times(client)
        needed = time.time() + seconds * _FACTOR + _MARGIN_S
        fit = [w for w, t in times.items() if t is None or t > needed]
        if len(fit) == len(times):
            return None
        self.kept_off += 1
        return fit


class DurationEstimate:
    """How long a trial will take: the task's own estimate (``expected_seconds``) when it
    has one, else the median seconds per epoch of the trials finished so far times the
    trial's budget, else unknown (None)."""

    def __init__(self) -> None:
        self._per_epoch: list[float] = []

    def observe(self, budget: int, start: float | None, end: float | None) -> None:
        if start is not None and end is not None and budget > 0 and end >= start:
            self._per_epoch.append((end - start) / budget)
            if len(self._per_epoch) > 1000:  # recent trials tell the most
                del self._per_epoch[:500]

    def seconds(self, task: BaseTask, trial: Trial) -> float | None:
        expected = getattr(task, "expected_seconds", None)
        if callable(expected):
            value = expected(trial.arch, trial.budget - trial.parent_budget)
            return None if value is None else float(value)
        if not self._per_epoch:
            return None
        return statistics.median(self._per_epoch) * (trial.budget - trial.parent_budget)
