"""morphml_dask: distributed neural-architecture search for PyTorch, on Dask."""

from __future__ import annotations

from morphml_dask.exceptions import (
    DatasetError,
    InvalidArchitectureError,
    MorphMLError,
    SearchSpaceError,
)
from morphml_dask.space import ArchGraph, CellSpace, DagSpace, Node

__version__ = "0.1.0"

__all__ = [
    "ArchGraph",
    "CellSpace",
    "DagSpace",
    "DatasetError",
    "InvalidArchitectureError",
    "MorphMLError",
    "Node",
    "SearchSpaceError",
    "__version__",
]
