"""The Dask driver: the search loop, the worker-side trial runner, the cluster helpers."""

from __future__ import annotations

from morphml_dask.driver._cluster import default_client, keep_restarting_workers, slots_of
from morphml_dask.driver._devices import GPUPlugin
from morphml_dask.driver._run import resume, search_from_experiment, stored_experiment
from morphml_dask.driver._search import Search
from morphml_dask.driver._security import tls_settings
from morphml_dask.driver._worker import TaskPlugin, run_trial

__all__ = [
    "GPUPlugin",
    "Search",
    "TaskPlugin",
    "default_client",
    "keep_restarting_workers",
    "resume",
    "run_trial",
    "search_from_experiment",
    "slots_of",
    "stored_experiment",
    "tls_settings",
]
