"""Architectures and search spaces, framework-free: no torch, Dask or fsspec here."""

from __future__ import annotations

from typing import Any

from morphml_dask.exceptions import SearchSpaceError
from morphml_dask.registry import get_kind, kinds
from morphml_dask.space._base import BaseSearchSpace, as_rng
from morphml_dask.space._cell import NB201_EDGES, NB201_OPS, NUM_CELLS, CellSpace
from morphml_dask.space._dag import DagSpace
from morphml_dask.space._graph import ArchGraph, Node
from morphml_dask.space._ops import OPS

__all__ = [
    "NB201_EDGES",
    "NB201_OPS",
    "NUM_CELLS",
    "OPS",
    "ArchGraph",
    "BaseSearchSpace",
    "CellSpace",
    "DagSpace",
    "Node",
    "as_rng",
    "space_from_dict",
]


def space_from_dict(data: dict[str, Any]) -> BaseSearchSpace:
    """Rebuild a search space from its `BaseSearchSpace.to_dict` form.

    Every space registered with `morphml_dask.registry.register_kind` is known by its name.
    """
    name = data.get("name") if isinstance(data, dict) else None
    settings = {k: v for k, v in data.items() if k != "name"} if isinstance(data, dict) else {}
    kind = get_kind("space", name)
    if kind is None:
        raise SearchSpaceError(
            "unknown search space",
            expected=f"a name among {list(kinds('space'))}",
            received=repr(name),
            fix="use a space's to_dict() output, or one of the built-in names",
        )
    unknown = sorted(set(settings) - set(kind.keys), key=repr)
    if unknown:
        raise SearchSpaceError(
            f"unknown settings of the {name} space",
            expected=f"settings among {sorted(kind.keys)}",
            received=f"keys {unknown!r}"[:200],
            fix="remove them; a space's to_dict() writes only its settings",
        )
    space: BaseSearchSpace = kind.build(settings)
    return space
