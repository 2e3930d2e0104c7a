"""morphml_dask: distributed neural-architecture search for PyTorch, on Dask."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import (
    DatasetError,
    InputError,
    InvalidArchitectureError,
    MorphMLError,
    SearchSpaceError,
    StorageError,
)
from morphml_dask.space import ArchGraph, CellSpace, DagSpace, Node
from morphml_dask.trial import Trial, TrialRecord, TrialResult, TrialState

if TYPE_CHECKING:
    from morphml_dask.storage import open_store

__version__ = "0.1.0"

__all__ = [
    "ArchGraph",
    "CellSpace",
    "DagSpace",
    "DatasetError",
    "InputError",
    "InvalidArchitectureError",
    "MorphMLError",
    "Node",
    "SearchSpaceError",
    "StorageError",
    "Trial",
    "TrialRecord",
    "TrialResult",
    "TrialState",
    "__version__",
    "open_store",
]


def __getattr__(name: str) -> Any:
    # Storage pulls in fsspec, pyarrow and xarray: load it on first use only, so that
    # `import morphml_dask` stays light for workers and pure code.
    if name == "open_store":
        from morphml_dask.storage import open_store

        return open_store
    raise AttributeError(f"module 'morphml_dask' has no attribute {name!r}")
