"""The scheduler side: one `SchedulerBoards` per scheduler, fed by the driver.

The driver calls `receive` on the scheduler with ``Client.run_on_scheduler`` about once a
second. It runs on the scheduler's event loop, so it only appends (see `SearchBoard`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from morphml_dask.dashboard._board import SearchBoard, TrialSummary

__all__ = ["SchedulerBoards", "boards_of", "live_schedulers", "receive"]

EXTENSION = "morphml"
# Boards of finished searches stay for people who look later; beyond this many the oldest go.
KEPT_BOARDS = 20

_live: weakref.WeakSet[SchedulerBoards] = weakref.WeakSet()


class SchedulerBoards:
    """The searches one scheduler has heard of, by run (a search's name and a suffix of
    its own, so that two runs under one name are not mixed)."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.boards: dict[str, SearchBoard] = {}

    def board(self, run: str, name: str, objective: str, direction: str) -> SearchBoard:
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


def boards_of(scheduler: Any) -> SchedulerBoards:
    """The scheduler's boards, made on first use; registers the Prometheus metrics."""
    boards = scheduler.extensions.get(EXTENSION)
    if boards is None:
        boards = scheduler.extensions[EXTENSION] = SchedulerBoards(scheduler)
        _live.add(boards)
        from morphml_dask.dashboard._metrics import register_metrics

        register_metrics()
    assert isinstance(boards, SchedulerBoards)
    return boards


def live_schedulers() -> list[SchedulerBoards]:
    return list(_live)


def receive(
    run: str,
    name: str,
    objective: str,
    direction: str,
    trials: Sequence[TrialSummary],
    status: Mapping[str, Any],
    dask_scheduler: Any = None,
) -> None:
    """Run on the scheduler: take in a driver's update."""
    boards_of(dask_scheduler).board(run, name, objective, direction).update(trials, status)
