"""Prometheus metrics of the searches, on the scheduler's own ``/metrics`` endpoint.

distributed serves ``/metrics`` from `prometheus_client`'s default registry; a collector
registered there in the scheduler's process is scraped with the scheduler's metrics. The
collector reads the boards when scraped, so a scrape costs nothing between scrapes.

`SearchCollector` is given where its boards come from (a callable); it knows nothing of
how they are made or kept. Whoever makes boards registers it once per process with
`register_metrics` (the scheduler extension, `morphml_dask.dashboard._extension`, does).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from morphml_dask.dashboard._board import SchedulerBoards

__all__ = ["METRIC_NAMES", "BoardsSource", "SearchCollector", "register_metrics"]

METRIC_NAMES = (
    "morphml_trials",
    "morphml_results_per_second",
    "morphml_best_objective",
    "morphml_busy_slots",
    "morphml_busy_gpu_slots",
    "morphml_store_write_seconds",
    "morphml_store_backlog_batches",
)

BoardsSource = Callable[[], Iterable[SchedulerBoards]]
"""Returns the boards of the schedulers alive in this process, read at every scrape."""

_registered: SearchCollector | None = None
_lock = threading.Lock()


def register_metrics(source: BoardsSource) -> bool:
    """Register a `SearchCollector` of ``source`` in the default registry, once per process
    (later calls keep the first); False when prometheus_client is missing."""
    global _registered
    with _lock:
        if _registered is not None:
            return True
        try:
            from prometheus_client import REGISTRY
        except ImportError:  # distributed serves /metrics only with it installed anyway
            return False
        _registered = SearchCollector(source)
        REGISTRY.register(_registered)
        return True


class SearchCollector:
    """A `prometheus_client` collector of the metrics in `METRIC_NAMES`, one sample set per
    search of every board ``source`` returns.

    Parameters
    ----------
    source
        Called at every scrape for the `SchedulerBoards` to report.
    """

    def __init__(self, source: BoardsSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        families = _families()
        trials, rate, best, busy, gpus, write, backlog = families
        for scheduler in list(self.source()):
            for board in list(scheduler.boards.values()):
                name, status = board.name, board.status
                complete = board.done - board.failed - board.pruned
                trials.add_metric([name, "complete"], complete)
                trials.add_metric([name, "failed"], board.failed)
                trials.add_metric([name, "pruned"], board.pruned)
                trials.add_metric([name, "in_flight"], board.running)
                trials.add_metric([name, "waiting"], status.waiting_for_a_worker)
                trials.add_metric([name, "waiting_for_twin"], status.waiting_for_a_twin)
                rate.add_metric([name], board.results_per_second())
                if board.best is not None:
                    best.add_metric([name, board.objective], board.best)
                executing, held = scheduler.busy(name)
                busy.add_metric([name], executing)
                gpus.add_metric([name], held)
                write.add_metric([name], status.store_last_write_s)
                backlog.add_metric([name], status.store_backlog_batches)
        yield from families

    def describe(self) -> list[Any]:
        # No samples at registration: collect() would run before any search exists.
        return []


def _families() -> tuple[Any, ...]:
    """The empty metric families, in the order of `METRIC_NAMES`."""
    from prometheus_client.core import GaugeMetricFamily

    return (
        GaugeMetricFamily(
            "morphml_trials",
            "Trials of a search by state (pruned: stopped early by the pruner; in_flight: "
            "submitted, not finished)",
            labels=["search", "state"],
        ),
        GaugeMetricFamily(
            "morphml_results_per_second",
            "Trials finished per second over the last 30 s",
            labels=["search"],
        ),
        GaugeMetricFamily(
            "morphml_best_objective",
            "Best objective value found so far",
            labels=["search", "objective"],
        ),
        GaugeMetricFamily(
            "morphml_busy_slots", "Trials executing on workers now", labels=["search"]
        ),
        GaugeMetricFamily(
            "morphml_busy_gpu_slots", "GPUs held by executing trials", labels=["search"]
        ),
        GaugeMetricFamily(
            "morphml_store_write_seconds",
            "Seconds the last store write took (rows, curves and checkpoint)",
            labels=["search"],
        ),
        GaugeMetricFamily(
            "morphml_store_backlog_batches",
            "Result batches waiting to be written to the store",
            labels=["search"],
        ),
    )
