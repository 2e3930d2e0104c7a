"""`BaseSearchSpace`: the capabilities optimizers use to explore a space, and
`space_from_dict`, which rebuilds any registered space from its settings."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask.exceptions import SearchSpaceError
from morphml_dask.registry import get_kind, kinds

if TYPE_CHECKING:
    from morphml_dask.space._config import Candidate

__all__ = ["BaseSearchSpace", "as_rng", "space_from_dict"]


def as_rng(seed_or_rng: int | np.random.Generator | None) -> np.random.Generator:
    """A NumPy generator from a seed, an existing generator, or fresh entropy."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


class BaseSearchSpace(abc.ABC):
    """A set of candidates with the moves that search algorithms need.

    A candidate is an `ArchGraph` for the architecture spaces (`CellSpace`, `DagSpace`)
    and a `Config` for a `FunctionSpace`; both are immutable, have a ``fingerprint`` and a
    ``to_dict``. A space given a candidate of another kind says it does not contain it, and
    its other moves raise `SearchSpaceError`.

    Every method that draws randomness takes a `numpy.random.Generator`, so that a search is
    reproducible from its seed alone.
    """

    name: str

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Candidate:
        """A random candidate of the space."""

    @abc.abstractmethod
    def mutate(self, arch: Candidate, rng: np.random.Generator) -> Candidate:
        """A random neighbour of ``arch`` in the space, different from it."""

    @abc.abstractmethod
    def crossover(self, a: Candidate, b: Candidate, rng: np.random.Generator) -> Candidate:
        """A child that mixes ``a`` and ``b`` and belongs to the space."""

    @abc.abstractmethod
    def contains(self, arch: Candidate) -> bool:
        """Whether ``arch`` belongs to the space."""

    @abc.abstractmethod
    def encode(self, arch: Candidate) -> np.ndarray[Any, np.dtype[np.float64]]:
        """A fixed-length float vector describing ``arch``, for model-based optimizers."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The space's settings as JSON, read back by `morphml_dask.space.space_from_dict`."""


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
