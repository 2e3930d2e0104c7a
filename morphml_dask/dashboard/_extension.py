"""The scheduler side: one `SchedulerBoards` per scheduler, fed by the driver.

The driver calls `receive` on the scheduler with ``Client.run_on_scheduler`` about once a
second. It runs on the scheduler's event loop, so it only appends (see `SearchBoard`).
Making a scheduler's boards also registers the Prometheus collector, with the boards of the
schedulers alive in this process as its source.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from morphml_dask.dashboard._board import LiveUpdate, SchedulerBoards, TrialSummary
from morphml_dask.dashboard._metrics import register_metrics
from morphml_dask.status import SearchStatus

__all__ = ["boards_of", "live_schedulers", "receive"]

EXTENSION = "morphml"

# Weak: a scheduler that closes takes its boards (and their metrics) with it.
_live: weakref.WeakSet[SchedulerBoards] = weakref.WeakSet()


def boards_of(scheduler: Any) -> SchedulerBoards:
    """The scheduler's boards, made on first use; registers the Prometheus metrics."""
    boards = scheduler.extensions.get(EXTENSION)
    if boards is None:
        boards = scheduler.extensions[EXTENSION] = SchedulerBoards(scheduler)
        _live.add(boards)
        register_metrics(live_schedulers)
    if not isinstance(boards, SchedulerBoards):
        raise TypeError(
            f"the scheduler extension {EXTENSION!r} is not morphml's boards: expected "
            f"SchedulerBoards, received {type(boards).__name__}; another plugin took the name"
        )
    return boards


def live_schedulers() -> list[SchedulerBoards]:
    """The boards of every scheduler in this process that a search has reported to."""
    return list(_live)


def receive(
    run: str,
    name: str,
    objective: str,
    direction: str,
    trials: Sequence[TrialSummary],
    status: Mapping[str, Any],
    dask_scheduler: Any = None,
    live: Sequence[LiveUpdate] | None = None,
    cost: Sequence[str] | None = None,
) -> None:
    """Run on the scheduler: take in a driver's update.

    Parameters
    ----------
    run, name
        The run's unique name (its board) and the search's name (its key prefix).
    objective, direction
        The metric the search optimises and ``"maximize"`` or ``"minimize"``.
    trials
        The trials finished since the driver's last update (`TrialSummary` tuples).
    status
        The driver's `SearchStatus`, as `SearchStatus.to_dict` wrote it.
    dask_scheduler
        Filled in by ``Client.run_on_scheduler``.
    live
        The live curves of the trials running now (`LiveUpdate` tuples: the points reported
        since the driver's last update), or None when the driver follows none.
    cost
        The metric of the trials' fourth field and its direction, ``(metric, "minimize")``:
        what the Pareto front trades the objective against. None: the parameter count.
    """
    board = boards_of(dask_scheduler).board(run, name, objective, direction)
    if cost is not None:
        board.cost, board.cost_smaller = str(cost[0]), cost[1] == "minimize"
    board.update(trials, SearchStatus.from_dict(status), live)
