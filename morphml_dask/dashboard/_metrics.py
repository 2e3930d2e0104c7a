"""Prometheus metrics of the searches, on the scheduler's own ``/metrics`` endpoint.

distributed serves ``/metrics`` from `prometheus_client`'s default registry; a collector
registered there in the scheduler's process is scraped with the scheduler's metrics. The
collector reads the boards when scraped, so a scrape costs nothing between scrapes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["METRIC_NAMES", "register_metrics"]

METRIC_NAMES = (
    "morphml_trials",
    "morphml_results_per_second",
    "morphml_best_objective",
    "morphml_busy_slots",
    "morphml_busy_gpu_slots",
    "morphml_store_write_seconds",
    "morphml_store_backlog_batches",
)

_registered = False
_lock = threading.Lock()


def register_metrics() -> bool:
    """Register the collector once per process; False when prometheus_client is missing."""
    global _registered
    with _lock:
        if _registered:
            return True
        try:
            from prometheus_client import REGISTRY
        except ImportError:  # distributed serves /metrics only with it installed anyway
            return False
        REGISTRY.register(_SearchCollector())
        _registered = True
        return True


class _SearchCollector:
    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from morphml_dask.dashboard._extension import live_schedulers

        trials = GaugeMetricFamily(
            "morphml_trials",
            "Trials of a search by state (in_flight: submitted, not finished)",
            labels=["search", "state"],
        )
        rate = GaugeMetricFamily(
            "morphml_results_per_second",
            "Trials finished per second over the last 30 s",
            labels=["search"],
        )
        best = GaugeMetricFamily(
            "morphml_best_objective",
            "Best objective value found so far",
            labels=["search", "objective"],
        )
        busy = GaugeMetricFamily(
            "morphml_busy_slots", "Trials executing on workers now", labels=["search"]
        )
        gpus = GaugeMetricFamily(
            "morphml_busy_gpu_slots", "GPUs held by executing trials", labels=["search"]
        )
        write = GaugeMetricFamily(
            "morphml_store_write_seconds",
            "Seconds the last store write took (rows, curves and checkpoint)",
            labels=["search"],
        )
        backlog = GaugeMetricFamily(
            "morphml_store_backlog_batches",
            "Result batches waiting to be written to the store",
            labels=["search"],
        )
        for scheduler in live_schedulers():
            for board in list(scheduler.boards.values()):
                name = board.name
                status = board.status
                trials.add_metric([name, "complete"], board.done - board.failed)
                trials.add_metric([name, "failed"], board.failed)
                trials.add_metric([name, "in_flight"], board.running)
                trials.add_metric([name, "waiting"], int(status.get("waiting_for_a_worker", 0)))
                rate.add_metric([name], board.results_per_second())
                if board.best is not None:
                    best.add_metric([name, board.objective], board.best)
                executing, held = scheduler.busy(name)
                busy.add_metric([name], executing)
                gpus.add_metric([name], held)
                write.add_metric([name], float(status.get("store_last_write_s", 0.0)))
                backlog.add_metric([name], int(status.get("store_backlog_batches", 0)))
        yield from (trials, rate, best, busy, gpus, write, backlog)

    def describe(self) -> list[Any]:
        # No samples at registration: collect() would run before any search exists.
        return []
