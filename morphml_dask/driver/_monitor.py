"""`ProgressPublisher`: the driver's progress, sent to the scheduler's dashboard board.

Once a second a thread of its own sends the trials finished since the last message, as
compact tuples, the driver's counters, and the objective the trials running now reported
since the last message (the live curves of the latest `LIVE_TRIALS` to start reporting),
with ``Client.run_on_scheduler``; the search loop only hands records over. A scheduler
without morphml_dask installed (or one that refuses the call) turns publishing off with one
warning: watching is never worth a failed search.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence, Set
from typing import TYPE_CHECKING

from morphml_dask.dashboard import LiveUpdate, TrialSummary, receive

if TYPE_CHECKING:
    from distributed import Client

    from morphml_dask.status import SearchStatus
    from morphml_dask.trial import TrialRecord

__all__ = ["LiveSource", "ProgressPublisher", "summarise"]

logger = logging.getLogger(__name__)

# Records kept while the scheduler cannot be reached; beyond that the oldest are not shown
# (the store has them all).
MOST_HELD_RECORDS = 100_000
# Running trials whose live curves a message carries: those that started reporting last.
LIVE_TRIALS = 50

LiveSource = Callable[[], tuple[Mapping[str, Sequence[Mapping[str, float]]], Set[str]]]
"""Returns the curves of the trials running now (trial id -> points ``{"epoch": step,
**metrics}``, in the order the trials first reported) and the ids of those told to stop:
`Search.live_curves`."""


def summarise(record: TrialRecord, objective: str, cost: str = "params") -> TrialSummary:
    """The compact form of a finished trial that the board takes.

    The state is the result's (``"complete"``, ``"fail"`` or ``"pruned"``); the objective
    is None unless the trial completed and reported it as a number (a pruned trial's is of
    a lower fidelity); the cost is the ``cost`` metric (what the Pareto front trades the
    objective against, the parameter count by default), when reported; a trial
    that did not run (reused) ends when it started, or at 0.
    """
    metrics = record.result.metrics
    value = metrics.get(objective)
    params = metrics.get(cost)
    start = None if record.start_time is None else float(record.start_time)
    return (
        record.trial_id,
        record.result.state.value,
        float(value) if record.ok and isinstance(value, int | float) else None,
        float(params) if isinstance(params, int | float) else None,
        record.trial.budget,
        record.trial.rung,
        record.worker,
        record.device,
        start,
        float(record.end_time) if record.end_time is not None else (start or 0.0),
        record.trial.parent,
        record.trial.mutation,
    )


class ProgressPublisher:
    """Sends a search's progress to the scheduler every ``interval`` seconds.

    Parameters
    ----------
    client
        The search's client.
    run, name
        The run's unique name (a board of its own) and the search's name (its key prefix).
    objective, direction
        The task's objective and ``"maximize"`` or ``"minimize"``.
    status
        Called for the driver's counters before each message.
    interval
        Seconds between messages.
    live
        Called for the live curves before each message; None sends none.
    cost
        The metric the board's Pareto front trades the objective against, and its
        direction (`pareto_axis`).
    """

    def __init__(
        self,
        client: Client,
        run: str,
        name: str,
        objective: str,
        direction: str,
        status: Callable[[], SearchStatus],
        interval: float = 1.0,
        live: LiveSource | None = None,
        cost: tuple[str, str] = ("params", "minimize"),
    ) -> None:
        self.client = client
        self.cost = cost
        self.run = run
        self.name = name
        self.objective = objective
        self.direction = direction
        self.status = status
        self.interval = interval
        self.live = live
        self.enabled = True
        self._records: list[TrialRecord] = []
        # The last step of each live curve the scheduler was sent: later messages carry
        # only the points after it.
        self._sent_steps: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="morphml-progress", daemon=True)
        self._thread.start()

    def add(self, records: Sequence[TrialRecord]) -> None:
        """Queue finished trials for the next message."""
        if not self.enabled or not records:
            return
        with self._lock:
            self._records.extend(records)
            del self._records[:-MOST_HELD_RECORDS]

    def close(self, timeout: float = 10.0) -> None:
        """Send what is left with the final counters, then stop; gives up waiting after
        ``timeout`` seconds (a scheduler that died must not hold the search's end)."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._send()
        self._send()

    def _send(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            records, self._records = self._records, []
        try:
            trials = [summarise(record, self.objective, self.cost[0]) for record in records]
            status = self.status().to_dict()
            live = self._live_updates()
            self.client.run_on_scheduler(
                receive,
                self.run,
                self.name,
                self.objective,
                self.direction,
                trials,
                status,
                live=live,
                cost=list(self.cost),
            )
        except (ImportError, RuntimeError) as error:
            # The scheduler cannot import morphml_dask: nothing later would get through.
            self.enabled = False
            logger.warning(
                "the scheduler cannot show this search's progress (%s); install morphml_dask "
                "where the scheduler runs to get the dashboard page and metrics",
                error,
            )
        except Exception as error:  # a scheduler busy or reconnecting: try again later
            logger.debug("progress not sent, trying again: %r", error)
            self._sent_steps = {}  # the next message carries the live curves whole
            with self._lock:
                self._records[:0] = records
                del self._records[:-MOST_HELD_RECORDS]

    def _live_updates(self) -> list[LiveUpdate] | None:
        """The objective the latest `LIVE_TRIALS` running trials reported since the last
        message (points without it are left out), and whether each was told to stop."""
        if self.live is None:
            return None
        curves, stopped = self.live()
        updates: list[LiveUpdate] = []
        sent: dict[str, float] = {}
        for trial_id in list(curves)[-LIVE_TRIALS:]:
            last = self._sent_steps.get(trial_id, -math.inf)
            new = [
                (float(point["epoch"]), float(point[self.objective]))
                for point in curves[trial_id]
                if self.objective in point and point["epoch"] > last
            ]
            sent[trial_id] = new[-1][0] if new else last
            updates.append(
                (trial_id, trial_id in stopped, [s for s, _ in new], [v for _, v in new])
            )
        self._sent_steps = sent  # trials no longer running are forgotten
        return updates
