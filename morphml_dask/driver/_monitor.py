"""`ProgressPublisher`: the driver's progress, sent to the scheduler's dashboard board.

Once a second a thread of its own sends the trials finished since the last message, as
compact tuples, and the driver's counters, with ``Client.run_on_scheduler``; the search
loop only hands rows over. A scheduler without morphml_dask installed (or one that refuses
the call) turns publishing off with one warning: watching is never worth a failed search.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from morphml_dask.dashboard._board import TrialSummary
from morphml_dask.trial import TrialState

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["ProgressPublisher", "summarise"]

logger = logging.getLogger(__name__)

# Rows kept while the scheduler cannot be reached; beyond that the oldest are not shown
# (the store has them all).
MOST_HELD_ROWS = 100_000


def summarise(row: Mapping[str, Any], objective: str) -> TrialSummary:
    """The compact form of a trials-table row that the board takes."""
    metrics = json.loads(row["metrics"]) if isinstance(row.get("metrics"), str) else {}
    ok = row.get("state") == TrialState.COMPLETE.value
    value = metrics.get(objective)
    params = metrics.get("params")
    end = row.get("end_time")
    return (
        str(row["trial_id"]),
        ok,
        float(value) if ok and isinstance(value, int | float) else None,
        float(params) if isinstance(params, int | float) else None,
        int(row.get("budget") or 0),
        int(row.get("rung") or 0),
        None if row.get("worker") is None else str(row["worker"]),
        None if row.get("device") is None else str(row["device"]),
        None if row.get("start_time") is None else float(row["start_time"]),
        float(end) if end is not None else float(row.get("start_time") or 0.0),
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
    """

    def __init__(
        self,
        client: Client,
        run: str,
        name: str,
        objective: str,
        direction: str,
        status: Callable[[], dict[str, Any]],
        interval: float = 1.0,
    ) -> None:
        self.client = client
        self.run = run
        self.name = name
        self.objective = objective
        self.direction = direction
        self.status = status
        self.interval = interval
        self.enabled = True
        self._rows: list[Mapping[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="morphml-progress", daemon=True)
        self._thread.start()

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue finished trials (rows of the trials table) for the next message."""
        if not self.enabled or not rows:
            return
        with self._lock:
            self._rows.extend(rows)
            del self._rows[:-MOST_HELD_ROWS]

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
        from morphml_dask.dashboard._extension import receive

        with self._lock:
            rows, self._rows = self._rows, []
        try:
            trials = [summarise(row, self.objective) for row in rows]
            status = _plain(self.status())
            self.client.run_on_scheduler(
                receive, self.run, self.name, self.objective, self.direction, trials, status
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
            with self._lock:
                self._rows[:0] = rows
                del self._rows[:-MOST_HELD_ROWS]


def _plain(status: Mapping[str, Any]) -> dict[str, Any]:
    """The counters with only numbers, strings and lists of strings: what the board reads."""
    plain: dict[str, Any] = {}
    for key, value in status.items():
        if isinstance(value, bool | int | float | str) or value is None:
            plain[key] = value
        elif isinstance(value, list | tuple):
            plain[key] = [str(v) for v in value]
    return plain
