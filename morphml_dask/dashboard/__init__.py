"""Watching a search on the Dask dashboard and in Prometheus.

- A page ``/morphml`` in the scheduler's dashboard (Bokeh, updated live): trials by state
  over time (pruned ones among them), best so far against time and against trials,
  objective against parameters with the Pareto front, trials per budget (ASHA's rungs), the
  live curves of the trials running now (those the pruner told to stop greyed), and the
  trials on each worker and GPU.
- Metrics on the scheduler's ``/metrics`` (``morphml_trials{search,state}``, the states
  ``complete``, ``failed``, ``pruned``, ``in_flight`` and ``waiting``,
  ``morphml_results_per_second``, ``morphml_best_objective``, ``morphml_busy_slots``,
  ``morphml_busy_gpu_slots``, ``morphml_store_write_seconds``,
  ``morphml_store_backlog_batches``).
- The same counters as JSON at ``/morphml/state.json``.

The driver sends its progress to the scheduler once a second: the finished trials as
`TrialSummary` tuples, its `~morphml_dask.status.SearchStatus`, and the points its running
trials reported since as `LiveUpdate` tuples, through `receive`, which runs on the
scheduler. The page needs the route module in the scheduler's configuration
*before* it starts, which `serve_page` (used by ``morphml run``, by the local cluster a
`Search` starts, and by the ``deploy`` helpers) arranges unless ``morphml.dashboard`` is
off; `enable` does it regardless. For a scheduler started by hand::

    DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES="$(python -m morphml_dask.dashboard)" \\
        dask scheduler

The metrics need no route module: they appear once a search reports.

Importing this package is cheap (no Bokeh): the driver imports it for `receive`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dask.config

from morphml_dask.config import config_value
from morphml_dask.dashboard._board import LiveUpdate, TrialSummary
from morphml_dask.dashboard._extension import receive

__all__ = [
    "ROUTE_MODULE",
    "LiveUpdate",
    "TrialSummary",
    "enable",
    "receive",
    "routes_with_morphml",
    "serve_page",
]

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


@contextlib.contextmanager
def serve_page() -> Iterator[None]:
    """Within the block, schedulers started in this process serve the morphml page, unless
    the ``morphml.dashboard`` setting is off (then the block changes nothing).

    Examples
    --------
    >>> from distributed import LocalCluster
    >>> with serve_page():  # doctest: +SKIP
    ...     cluster = LocalCluster()
    """
    if not config_value("dashboard"):
        yield
        return
    with enable():
        yield
