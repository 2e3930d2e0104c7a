"""`SearchStatus`: where a running search stands, as the driver knows it.

The CLI's progress line, the notebook widget, the dashboard page and the Prometheus metrics
all read this one record. It crosses to the scheduler as `SearchStatus.to_dict` (plain JSON
values) and is rebuilt there with `SearchStatus.from_dict`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SearchStatus"]


@dataclass(frozen=True)
class SearchStatus:
    """A snapshot of a search's counters.

    Attributes
    ----------
    done
        Trials finished and recorded (completed, failed or reused).
    failed
        Of those, the trials that failed.
    pruned
        Of those, the trials the pruner stopped early.
    reused
        Of those, the trials answered from an earlier trial of the same architecture.
    retried
        Attempts run again after a lost worker or an infrastructure failure.
    submitted
        Trials handed to Dask so far, retries included.
    running
        Trials submitted and not finished (running or queued on the cluster).
    waiting_for_a_worker
        Trials held in the driver because no worker stays long enough to run them.
    waiting_for_a_twin
        Trials held in the driver until a trial of the same architecture and budget, in
        training now, has its result (they reuse it).
    kept_off_retiring_workers
        Trials restricted to workers that stay long enough for them.
    waiting_for_store
        True while the store fails or lags and no new trials are submitted.
    store_retries
        Store writes tried again so far.
    store_longest_write_s, store_last_write_s
        Seconds the longest and the last batch took to write, retries included.
    store_backlog_batches
        Batches handed to the writer and not yet written.
    quarantined
        Workers retired because trials kept failing there and completed elsewhere.
    best_trial
        Id of the best completed trial so far, or None.
    elapsed
        Seconds since the search started (to its end once it has ended).
    finished
        Whether the optimizer has asked and been told every trial it will.
    """

    done: int = 0
    failed: int = 0
    pruned: int = 0
    reused: int = 0
    retried: int = 0
    submitted: int = 0
    running: int = 0
    waiting_for_a_worker: int = 0
    waiting_for_a_twin: int = 0
    kept_off_retiring_workers: int = 0
    waiting_for_store: bool = False
    store_retries: int = 0
    store_longest_write_s: float = 0.0
    store_last_write_s: float = 0.0
    store_backlog_batches: int = 0
    quarantined: tuple[str, ...] = ()
    best_trial: str | None = None
    elapsed: float = 0.0
    finished: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The counters as JSON values (``quarantined`` as a list)."""
        data = dataclasses.asdict(self)
        data["quarantined"] = list(self.quarantined)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchStatus:
        """Read back `to_dict`; keys this version does not know are ignored, missing ones
        take their defaults (a driver and a scheduler of different releases)."""
        names = {field.name for field in dataclasses.fields(cls)}
        known = {key: value for key, value in data.items() if key in names}
        if "quarantined" in known:
            known["quarantined"] = tuple(str(w) for w in known["quarantined"] or ())
        return cls(**known)
