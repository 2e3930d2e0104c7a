"""`SearchBoard`: what the scheduler knows of one search, in views of bounded size, and
`SchedulerBoards`: the searches of one scheduler.

The driver sends the trials that finished since its last message (a few hundred at most),
a snapshot of its counters, and the points the trials running now reported since then.
Every view the dashboard and the metrics read is kept up to date as rows arrive, in time
proportional to the rows, and is bounded in size: the best-so-far curve holds only
improvements, the Pareto front only its points, the scatter a thinned sample, the timeline
the latest trials, the live curves the latest points of the latest running trials. Drawing
the page therefore costs the same with 100 trials or 100,000, and never holds the
scheduler's event loop for long.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from morphml_dask.dashboard._ancestry import Ancestor, Ancestry
from morphml_dask.status import SearchStatus

__all__ = [
    "KEPT_BOARDS",
    "LIVE_POINTS",
    "LIVE_TRIALS",
    "SCATTER_POINTS",
    "TIMELINE_TRIALS",
    "LiveCurve",
    "LiveUpdate",
    "SchedulerBoards",
    "SearchBoard",
    "TrialSummary",
]

SCATTER_POINTS = 4000
TIMELINE_TRIALS = 2000
HISTORY_POINTS = 4000
# The live curves shown: the latest points of the trials that started reporting last.
LIVE_TRIALS = 50
LIVE_POINTS = 200
RATE_WINDOW_S = 30.0
# Boards of finished searches stay for people who look later; beyond this many the oldest go.
KEPT_BOARDS = 20

# One finished trial as the driver sends it: (trial id, state ("complete", "fail" or
# "pruned": a `TrialState` value), objective (None unless complete), the metric the Pareto
# front trades it against (the board's ``cost``: the parameter count unless the search has
# several objectives; None when unknown), budget, rung, worker, device, start, end, the
# parent whose weights it started from and the mutation that made it, for an inheriting
# child), the times in Unix seconds. Tuples rather than dicts: a tenth of the bytes on the wire.
TrialSummary = tuple[
    str,
    str,
    float | None,
    float | None,
    int,
    int,
    str | None,
    str | None,
    float | None,
    float,
    str | None,
    str | None,
]

# One running trial's live curve as the driver sends it: (trial id, told to stop, the steps
# reported since the driver's last message, the objective at each). The trials a message
# lists are those shown; the points of a trial already on the board are kept.
LiveUpdate = tuple[str, bool, list[float], list[float]]

_COMPLETE, _FAIL, _PRUNED = "complete", "fail", "pruned"


@dataclass(frozen=True)
class LiveCurve:
    """The objective a running trial reported so far, by step (the latest `LIVE_POINTS`),
    and whether the pruner told it to stop."""

    stopped: bool
    steps: tuple[float, ...] = ()
    values: tuple[float, ...] = ()

    def extended(self, stopped: bool, steps: Sequence[float], values: Sequence[float]) -> LiveCurve:
        """This curve with the points past its last step (a message sent again after a
        failed one repeats points the board has)."""
        last = self.steps[-1] if self.steps else -math.inf
        new = [(s, v) for s, v in zip(steps, values, strict=True) if s > last]
        return LiveCurve(
            stopped,
            (self.steps + tuple(float(s) for s, _ in new))[-LIVE_POINTS:],
            (self.values + tuple(float(v) for _, v in new))[-LIVE_POINTS:],
        )


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
        self.pruned = 0
        self.best: float | None = None
        self.best_trial: str | None = None
        # (finish time, trials finished, best so far), one point per improvement
        self.best_curve: list[tuple[float, int, float]] = []
        # (time, done, failed, pruned, running), one point per driver message, thinned when long
        self.history: list[tuple[float, int, int, int, int]] = []
        # The Pareto plot's other axis: a metric and whether smaller is better.
        self.cost, self.cost_smaller = "params", True
        self.front: list[tuple[float, float, str]] = []  # (cost, objective, id), by cost
        self.scatter: list[tuple[float, float, str]] = []
        self._scatter_stride = 1
        self._scatter_seen = 0
        self.rungs: dict[int, int] = {}  # budget -> trials finished with it
        # (trial id, where, start, end, state)
        self.timeline: deque[tuple[str, str, float, float, str]] = deque(maxlen=TIMELINE_TRIALS)
        self._finish_times: deque[float] = deque()
        self.ancestry = Ancestry()
        # The best trial and the ancestors whose weights it inherited, oldest first.
        self.best_lineage: list[Ancestor] = []
        # The trials running now that reported, in the order they first did.
        self.live: dict[str, LiveCurve] = {}

    # -- updates ---------------------------------------------------------------------------

    def update(
        self,
        trials: Sequence[TrialSummary],
        status: SearchStatus,
        live: Sequence[LiveUpdate] | None = None,
    ) -> None:
        """Take in the trials finished since the last update, the driver's counters and the
        live curves of the trials running now (None: the driver sends none; the board keeps
        what it has)."""
        now = time.time()
        for trial in trials:
            self._add(trial, now)
        self.status = status
        if live is not None:
            self._take_live(live)
        self.history.append((now, self.done, self.failed, self.pruned, status.running))
        if len(self.history) > HISTORY_POINTS:
            # Keep every other point of the older half: the curve keeps its shape, and a
            # search of days stays a few thousand points.
            half = len(self.history) // 2
            self.history = self.history[:half:2] + self.history[half:]
        self.results_per_second()  # drops finish times older than the window
        self.updated_at = now
        self.version += 1

    def _add(self, trial: TrialSummary, now: float) -> None:
        trial_id, state, value, params, budget, _, worker, device, start, end = trial[:10]
        self._finish_times.append(now)
        self.rungs[budget] = self.rungs.get(budget, 0) + 1
        if start is not None and worker is not None:
            where = worker if device in (None, "cpu") else f"{worker} {device}"
            self.timeline.append((trial_id, where, start, end, state))
        self.done += 1
        self.failed += state == _FAIL
        self.pruned += state == _PRUNED
        if state != _COMPLETE or value is None:  # a pruned trial's value is of a lower fidelity
            return
        parent, mutation = trial[10:12] if len(trial) >= 12 else (None, None)
        self.ancestry.add(trial_id, parent, mutation, value)
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best, self.best_trial = value, trial_id
            self.best_curve.append((end, self.done, value))
            self.best_lineage = self.ancestry.chain(trial_id)
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

    def _take_live(self, updates: Sequence[LiveUpdate]) -> None:
        """The live curves of the trials ``updates`` lists (the latest `LIVE_TRIALS`), each
        extended by its new points; the trials it no longer lists have ended."""
        live = {}
        for trial_id, stopped, steps, values in updates[-LIVE_TRIALS:]:
            known = self.live.get(trial_id) or LiveCurve(stopped)
            live[trial_id] = known.extended(bool(stopped), steps, values)
        self.live = live  # replaced whole: a page drawing the old one never sees it half-made

    def _dominates(self, point: tuple[float, float, str], trial: tuple[float, float]) -> bool:
        """Whether ``point`` costs no more and is as good as ``trial``."""
        cost, value = trial
        better = point[1] >= value if self.maximize else point[1] <= value
        return (point[0] <= cost if self.cost_smaller else point[0] >= cost) and better

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
            "pruned": self.pruned,
            "running": self.running,
            "best": self.best,
            "best_trial": self.best_trial,
            "best_lineage": [list(ancestor) for ancestor in self.best_lineage],
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
