"""Experiment storage on any fsspec URL: Parquet trials, Zarr curves, weights, trial states
and checkpoints."""

from __future__ import annotations

from morphml_dask.storage._artifacts import SavedState, SavedWeights
from morphml_dask.storage._checkpoints import Checkpoint
from morphml_dask.storage._fs import Location
from morphml_dask.storage._lineage import lineage_of
from morphml_dask.storage._retry import Backoff, StoreOutageError, is_transient
from morphml_dask.storage._store import BaseStore, ExperimentStore, open_store

__all__ = [
    "Backoff",
    "BaseStore",
    "Checkpoint",
    "ExperimentStore",
    "Location",
    "SavedState",
    "SavedWeights",
    "StoreOutageError",
    "is_transient",
    "lineage_of",
    "open_store",
]
