"""Architectures and search spaces, framework-free: no torch, Dask or fsspec here."""

from __future__ import annotations

from morphml_dask.space._base import BaseSearchSpace, as_rng, space_from_dict
from morphml_dask.space._cell import NB201_EDGES, NB201_OPS, NUM_CELLS, CellSpace
from morphml_dask.space._config import Candidate, Config, Decision, candidate_from_dict
from morphml_dask.space._dag import DagSpace
from morphml_dask.space._distributions import (
    ArchDistribution,
    BaseDistribution,
    BoolDistribution,
    ChoiceDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_from_dict,
)
from morphml_dask.space._function import FunctionSpace
from morphml_dask.space._graph import ArchGraph, Node
from morphml_dask.space._morph import Morphism, morph, node_widths
from morphml_dask.space._ops import OPS
from morphml_dask.space._sampler import Sampler

__all__ = [
    "NB201_EDGES",
    "NB201_OPS",
    "NUM_CELLS",
    "OPS",
    "ArchDistribution",
    "ArchGraph",
    "BaseDistribution",
    "BaseSearchSpace",
    "BoolDistribution",
    "Candidate",
    "CellSpace",
    "ChoiceDistribution",
    "Config",
    "DagSpace",
    "Decision",
    "FloatDistribution",
    "FunctionSpace",
    "IntDistribution",
    "Morphism",
    "Node",
    "Sampler",
    "as_rng",
    "candidate_from_dict",
    "distribution_from_dict",
    "morph",
    "node_widths",
    "space_from_dict",
]
