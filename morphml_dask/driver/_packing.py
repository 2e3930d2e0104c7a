"""Packing: several trials far shorter than a Dask task's overhead in one task.

A Dask task costs the driver, the scheduler and a worker a millisecond or more between them
(a bare submit loop runs 300-650 empty tasks a second on two cores), so a search of trials
that take less than that spends its time scheduling. The driver measures how long trials
take on the workers and, once the recent ones take under ``below_s`` (a millisecond: far
shorter than a task's overhead), sends ``k`` of them in one task (`run_trials`), enough for
the task to carry about ``work_s`` seconds of trials. Trials of a few milliseconds and more
go one per task: packing them would gain little and would run sequentially what could run
side by side. Each trial keeps its id, its result and its row, and one that fails
fails alone; trials that take longer are sent one per task again.
"""

from __future__ import annotations

import collections
import statistics

__all__ = ["PackSize"]


class PackSize:
    """How many trials the next Dask task should carry.

    Parameters
    ----------
    max_pack
        The most trials in one task; 1 sends every trial in its own task.
    work_s
        Seconds of trials a packed task should carry: large next to the overhead of a task,
        small next to a trial worth a task of its own.
    below_s
        Trials pack only while the median recent trial takes less than this.
    window
        Recent trial durations the median is taken over.
    min_samples
        Durations seen before packing may start: the first trials always go one per task.
    """

    def __init__(
        self,
        max_pack: int = 32,
        work_s: float = 0.05,
        below_s: float = 0.001,
        window: int = 64,
        min_samples: int = 8,
    ) -> None:
        if max_pack < 1:
            raise ValueError(f"max_pack must be at least 1 (1: no packing), got {max_pack}")
        self.max_pack = max_pack
        self.work_s = work_s
        self.below_s = below_s
        self.min_samples = min_samples
        self._durations: collections.deque[float] = collections.deque(maxlen=window)

    def observe(self, start: float | None, end: float | None) -> None:
        """A trial's start and end on its worker (unix seconds)."""
        if start is not None and end is not None and end >= start:
            self._durations.append(end - start)

    def size(self) -> int:
        """Trials per task: 1 until ``min_samples`` durations are known or while their
        median is ``below_s`` or more, else about ``work_s`` divided by the median, between
        1 and ``max_pack``."""
        if self.max_pack == 1 or len(self._durations) < self.min_samples:
            return 1
        median = statistics.median(self._durations)
        if median >= self.below_s:
            return 1
        if median * self.max_pack <= self.work_s:
            return self.max_pack
        return max(1, min(self.max_pack, int(self.work_s / median)))
