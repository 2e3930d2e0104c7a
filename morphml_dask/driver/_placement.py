"""Walltime-aware placement: keep a trial off a worker that retires before it would finish.

Batch-system workers run with ``--lifetime`` (dask-jobqueue sets it below the walltime), so
each closes itself at a moment known in advance. A trial started on a worker shortly before
that is lost and runs again elsewhere: the time is wasted. The I/O shell therefore asks every
worker once in a while when it retires (`retirement_time`, run on the workers); the state
machine estimates how long a trial will take (`DurationEstimate`) and restricts the trial to
the workers with time enough left (`workers_staying`); when no worker has, the trial waits
in the driver until one has (a fresh job of an adaptive cluster, say).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from morphml_dask.trial import Trial

__all__ = ["DurationEstimate", "ExpectedSeconds", "retirement_time", "workers_staying"]

# Seconds of slack on top of the expected duration, for the time a trial waits in a
# worker's queue and for estimates that fall short.
_MARGIN_S = 5.0
_FACTOR = 1.25

# A task's own estimate of a trial's seconds (``BaseTask.expected_seconds``), if it has one.
ExpectedSeconds = Callable[[Any, int], float | None]


def retirement_time(dask_worker: Any) -> float | None:
    """When ``dask_worker`` closes itself (unix seconds), or None without ``--lifetime``.

    Runs on the workers (``Client.run``). The lifetime timer starts when the worker object is
    built, a moment after its process started, so counting from the process start errs on
    the early side.
    """
    lifetime = getattr(dask_worker, "lifetime", None)
    if not lifetime:
        return None
    import psutil  # type: ignore[import-untyped]

    return float(psutil.Process().create_time()) + float(lifetime)


def workers_staying(
    retire_at: Mapping[str, float | None], now: float, seconds: float | None
) -> list[str] | None:
    """The workers that stay long enough for a trial of ``seconds`` starting at ``now``:
    None when any worker will do (none retires before, or the duration is unknown), [] when
    none stays long enough."""
    if seconds is None or all(t is None for t in retire_at.values()):
        return None
    needed = now + seconds * _FACTOR + _MARGIN_S
    fit = [worker for worker, t in retire_at.items() if t is None or t > needed]
    return None if len(fit) == len(retire_at) else fit


class DurationEstimate:
    """How long a trial will take: the task's own estimate (``expected_seconds``) when it
    has one, else the median seconds per epoch of the trials finished so far times the
    trial's budget, else unknown (None)."""

    def __init__(self, expected: ExpectedSeconds | None = None) -> None:
        self.expected = expected
        self._per_epoch: list[float] = []

    def observe(self, budget: int, start: float | None, end: float | None) -> None:
        if start is not None and end is not None and budget > 0 and end >= start:
            self._per_epoch.append((end - start) / budget)
            if len(self._per_epoch) > 1000:  # recent trials tell the most
                del self._per_epoch[:500]

    def seconds(self, trial: Trial) -> float | None:
        epochs = trial.budget - trial.parent_budget
        if self.expected is not None:
            value = self.expected(trial.arch, epochs)
            return None if value is None else float(value)
        if not self._per_epoch:
            return None
        return statistics.median(self._per_epoch) * epochs
