"""`BaseSearchSpace`: the capabilities optimizers use to explore architectures."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from morphml_dask.space._graph import ArchGraph

__all__ = ["BaseSearchSpace", "as_rng"]


def as_rng(seed_or_rng: int | np.random.Generator | None) -> np.random.Generator:
    """A NumPy generator from a seed, an existing generator, or fresh entropy."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


class BaseSearchSpace(abc.ABC):
    """A set of architectures with the moves that search algorithms need.

    Every method that draws randomness takes a `numpy.random.Generator`, so that a search is
    reproducible from its seed alone.
    """

    name: str

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> ArchGraph:
        """A random architecture of the space."""

    @abc.abstractmethod
    def mutate(self, arch: ArchGraph, rng: np.random.Generator) -> ArchGraph:
        """A random neighbour of ``arch`` in the space, different from it."""

    @abc.abstractmethod
    def crossover(self, a: ArchGraph, b: ArchGraph, rng: np.random.Generator) -> ArchGraph:
        """A child that mixes ``a`` and ``b`` and belongs to the space."""

    @abc.abstractmethod
    def contains(self, arch: ArchGraph) -> bool:
        """Whether ``arch`` belongs to the space."""

    @abc.abstractmethod
    def encode(self, arch: ArchGraph) -> np.ndarray[Any, np.dtype[np.float64]]:
        """A fixed-length float vector describing ``arch``, for model-based optimizers."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The space's settings as JSON, read back by `morphml_dask.space.space_from_dict`."""
