"""Watching a search on the Dask dashboard and in Prometheus.

- A page ``/morphml`` in the scheduler's dashboard (Bokeh, updated live): trials by state
  over time, best so far against time and against trials, objective against parameters
  with the Pareto front, trials per budget (ASHA's rungs), and the trials on each worker
  and GPU.
- Metrics on the scheduler's ``/metrics`` (``morphml_trials{search,state}``,
  ``morphml_results_per_second``, ``morphml_best_objective``, ``morphml_busy_slots``,
  ``morphml_busy_gpu_slots``, ``morphml_store_write_seconds``,
  ``morphml_store_backlog_batches``).
- The same counters as JSON at ``/morphml/state.json``.

The driver sends its progress to the scheduler once a second; the page needs the route
module in the scheduler's configuration *before* it starts, which `enable` (used by
``morphml run``, by the local cluster a `Search` starts, and by the ``deploy`` helpers)
does. For a scheduler started by hand::

    DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES="$(python -m morphml_dask.dashboard)" \\
        dask scheduler

The metrics need no route module: they appear once a search reports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dask.config

__all__ = ["ROUTE_MODULE", "enable", "routes_with_morphml"]

ROUTE_MODULE = "morphml_dask.dashboard.routes"


def routes_with_morphml() -> list[str]:
    """The scheduler's HTTP route modules as configured now, with the morphml one."""
    import distributed  # noqa: F401  (its defaults hold the built-in routes)

    routes = list(dask.config.get("distributed.scheduler.http.routes", default=[]) or [])
    return routes if ROUTE_MODULE in routes else [*routes, ROUTE_MODULE]


@contextlib.contextmanager
def enable() -> Iterator[None]:
    """Within the block, schedulers started in this process serve the morphml page."""
    with dask.config.set({"distributed.scheduler.http.routes": routes_with_morphml()}):
        yield
