"""`SearchBoard`: what the scheduler knows of one search, in views of bounded size, and
`SchedulerBoards`: the searches of one scheduler.

The driver sends the trials that finished since its last message (a few hundred at most)
and a snapshot of its counters. Every view the dashboard and the metrics read is kept up to
date as rows arrive, in time proportional to the rows, and is bounded in size: the
best-so-far curve holds only improvements, the Pareto front only its points, the scatter a
thinned sample, the timeline the latest trials. Drawing the page therefore costs the same
with 100 trials or 100,000, and never holds the scheduler's event loop for long.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from morphml_dask.status import SearchStatus

__all__ = [
    "KEPT_BOARDS",
    "SCATTER_POINTS",
    "TIMELINE_TRIALS",
    "SchedulerBoards",
    "SearchBoard",
    "TrialSummary",
]

SCATTER_POINTS = 4000
TIMELINE_TRIALS = 2000
HISTORY_POINTS = 4000
RATE_WINDOW_S = 30.0
# Boards of finished searches stay for people who look later; beyond this many the oldest go.
KEPT_BOARDS = 20

# One finished trial as the driver sends it: (trial id, ok, objective (None when failed),
# parameter count (None when unknown), budget, rung, worker, device, start, end), the times
# in Unix seconds. Tuples rather than dicts: a tenth of the bytes on the wire.
TrialSummary = tuple[
    str, bool, float | None, float | None, int, int, str | None, str | None, float | None, float
]


class SearchBoard:
    """The live state of one search on the scheduler.

    Parameters
    ----------
    name
        The search's name (the prefix of its Dask keys).
    objective, direction
        The metric the search optimises and ``"maximize"`` or ``"minimize"``.
    """

    def __init__(self, name: str, objective: str, direction: str) -> None:
        self.name = name
        self.objective = objective
        self.maximize = direction == "maximize"
        self.started_at = time.time()
        self.updated_at = self.started_at
        self.version = 0  # bumped on every update, so a page redraws only on change
        self.status = SearchStatus()
        self.done = 0
        self.failed = 0
        self.best: float | None = None
        self.best_trial: str | None = None
        # (finish time, trials finished, best so far), one point per improvement
        self.best_curve: list[tuple[float, int, float]] = []
        # (time, done, failed, running), one point per driver message, thinned when long
        self.history: list[tuple[float, int, float, int]] = []
        self.front: list[tuple[float, float, str]] = []  # (params, objective, id), by params
        self.scatter: list[tuple[float, float, str]] = []
        self._scatter_stride = 1
        self._scatter_seen = 0
        self.rungs: dict[int, int] = {}  # budget -> trials finished with it
        self.timeline: deque[tuple[str, str, float, float, bool]] = deque(maxlen=TIMELINE_TRIALS)
        self._finish_times: deque[float] = deque()

    # -- updates ---------------------------------------------------------------------------

    def update(self, trials: Sequence[TrialSummary], status: SearchStatus) -> None:
        """Take in the trials finished since the last update and the driver's counters."""
        now = time.time()
        for trial in trials:
            self._add(trial, now)
        self.status = status
        self.history.append((now, self.done, self.failed, status.running))
        if len(self.history) > HISTORY_POINTS:
            # Keep every other point of the older half: the curve keeps its shape, and a
            # search of days stays a few thousand points.
            half = len(self.history) // 2
            self.history = self.history[:half:2] + self.history[half:]
        self.results_per_second()  # drops finish times older than the window
        self.updated_at = now
        self.version += 1

    def _add(self, trial: TrialSummary, now: float) -> None:
        trial_id, ok, value, params, budget, _, worker, device, start, end = trial
        self._finish_times.append(now)
        self.rungs[budget] = self.rungs.get(budget, 0) + 1
        if start is not None and worker is not None:
            where = worker if device in (None, "cpu") else f"{worker} {device}"
            self.timeline.append((trial_id, where, start, end, ok))
        self.done += 1
        self.failed += not ok
        if not ok or value is None:
            return
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best, self.best_trial = value, trial_id
            self.best_curve.append((end, self.done, value))
        if params is not None:
            self._add_point(params, value, trial_id)

    def _add_point(self, params: float, value: float, trial_id: str) -> None:
        self._scatter_seen += 1
        if self._scatter_seen % self._scatter_stride == 0:
            self.scatter.append((params, value, trial_id))
            if len(self.scatter) > SCATTER_POINTS:
                self.scatter = self.scatter[::2]
                self._scatter_stride *= 2
        if not any(self._dominates(p, trial=(params, value)) for p in self.front):
            point = (params, value, trial_id)
            self.front = sorted(
                [p for p in self.front if not self._dominates(point, trial=p[:2])] + [point]
            )

    def _dominates(self, point: tuple[float, float, str], trial: tuple[float, float]) -> bool:
        """Whether ``point`` is at least as small and as good as ``trial``."""
        params, value = trial
        better = point[1] >= value if self.maximize else point[1] <= value
        return point[0] <= params and better

    # -- views -----------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return self.status.running

    def results_per_second(self) -> float:
        """Trials finished per second over the last half minute."""
        now = time.time()
        while self._finish_times and self._finish_times[0] < now - RATE_WINDOW_S:
            self._finish_times.popleft()
        return len(self._finish_times) / min(RATE_WINDOW_S, max(now - self.started_at, 1e-9))

    def summary(self) -> dict[str, Any]:
        """The counters, as the JSON route and the page's header show them."""
        return {
            "name": self.name,
            "objective": self.objective,
            "direction": "maximize" if self.maximize else "minimize",
            "done": self.done,
            "failed": self.failed,
            "running": self.running,
            "best": self.best,
            "best_trial": self.best_trial,
            "results_per_second": self.results_per_second(),
            "finished": self.status.finished,
            "updated_at": self.updated_at,
            "status": self.status.to_dict(),
        }


class SchedulerBoards:
    """The searches one scheduler has heard of, by run (a search's name and a suffix of
    its own, so that two runs under one name are not mixed).

    Parameters
    ----------
    scheduler
        The `distributed.Scheduler` (or anything with its ``workers`` mapping): `busy`
        reads what its workers execute.
    """

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.boards: dict[str, SearchBoard] = {}

    def board(self, run: str, name: str, objective: str, direction: str) -> SearchBoard:
        """The board of ``run``, made on first use (dropping the oldest beyond
        `KEPT_BOARDS`)."""
        board = self.boards.get(run)
        if board is None:
            board = self.boards[run] = SearchBoard(name, objective, direction)
            for old in sorted(self.boards, key=lambda r: self.boards[r].updated_at)[
                : max(len(self.boards) - KEPT_BOARDS, 0)
            ]:
                del self.boards[old]
        return board

    def latest(self) -> SearchBoard | None:
        """The board updated last: the search a page shows."""
        return max(self.boards.values(), key=lambda b: b.updated_at, default=None)

    def busy(self, name: str) -> tuple[int, float]:
        """Trials of search ``name`` executing on workers now, and the GPUs they hold, as
        the scheduler last heard from the workers' heartbeats."""
        prefix = f"{name}/"
        trials, gpus = 0, 0.0
        for worker in list(self.scheduler.workers.values()):
            for task in list(worker.executing):
                if str(task.key).startswith(prefix):
                    trials += 1
                    gpus += float((task.resource_restrictions or {}).get("GPU", 0))
        return trials, gpus
