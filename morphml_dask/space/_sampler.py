"""`Sampler`: what a space function is given, and the record of the decisions it makes.

A space function asks the sampler for each decision by name, ``s.int("depth", 1, 4)``.
The sampler draws the value, or gives back one it was told to keep (a mutation keeps every
decision but one, a crossover takes each from a parent), and records the decision with its
distribution. The same name asked again in one run gives the value already drawn, as in
Optuna; asked with another distribution it is an error, since the record could not say
which one the value came from.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np

from morphml_dask.exceptions import SearchSpaceError
from morphml_dask.space._config import Config, Decision
from morphml_dask.space._distributions import (
    ArchDistribution,
    BaseDistribution,
    BoolDistribution,
    ChoiceDistribution,
    FloatDistribution,
    IntDistribution,
)
from morphml_dask.validation import describe

if TYPE_CHECKING:
    from morphml_dask.space._base import BaseSearchSpace
    from morphml_dask.space._cell import CellSpace
    from morphml_dask.space._config import Candidate
    from morphml_dask.space._dag import DagSpace
    from morphml_dask.space._graph import ArchGraph

__all__ = ["Sampler", "run_space_function"]

T = TypeVar("T")


class Sampler:
    """The ``s`` a space function receives: one method per kind of decision.

    Parameters
    ----------
    rng
        Draws every new value.
    keep
        Decisions to keep, by name: a value is kept when it belongs to the distribution the
        function asks for this time, and drawn afresh otherwise.
    strict
        Check membership instead: every decision asked must be in ``keep`` with the same
        distribution; `mismatch` says whether one was not.
    highest
        Draw every range at its top and every boolean True (the largest loops open).

    Examples
    --------
    >>> s = Sampler(np.random.default_rng(0))
    >>> s.int("depth", 1, 4) == s.int("depth", 1, 4)
    True
    >>> s.names
    ('depth',)
    """

    def __init__(
        self,
        rng: np.random.Generator,
        keep: Mapping[str, Decision] | None = None,
        *,
        strict: builtins.bool = False,
        highest: builtins.bool = False,
    ) -> None:
        self._rng = rng
        self._keep = dict(keep or {})
        self._strict = strict
        self._highest = highest
        self._made: dict[str, Decision] = {}
        self.mismatch = False

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """The decisions made so far, in order."""
        return tuple(self._made.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._made)

    # -- the decisions ---------------------------------------------------------------------

    def choice(self, name: str, options: Sequence[T]) -> T:
        """One of ``options`` (text, numbers, booleans or None)."""
        value: T = self._decide(name, lambda: ChoiceDistribution(options))
        return value

    def int(
        self,
        name: str,
        low: builtins.int,
        high: builtins.int,
        *,
        log: builtins.bool = False,
        step: builtins.int = 1,
    ) -> builtins.int:
        """An integer from ``low`` to ``high`` (both included), every ``step``-th; on a
        log scale with ``log=True`` (then ``step`` must be 1)."""
        value: builtins.int = self._decide(
            name, lambda: IntDistribution(low, high, log=log, step=step)
        )
        return value

    def float(
        self, name: str, low: builtins.float, high: builtins.float, *, log: builtins.bool = False
    ) -> builtins.float:
        """A real number from ``low`` to ``high``; log-uniform with ``log=True``."""
        value: builtins.float = self._decide(name, lambda: FloatDistribution(low, high, log=log))
        return value

    def bool(self, name: str) -> builtins.bool:
        """True or False."""
        value: builtins.bool = self._decide(name, BoolDistribution)
        return value

    @overload
    def arch(self, name: str, space: CellSpace | DagSpace) -> ArchGraph: ...

    @overload
    def arch(self, name: str, space: BaseSearchSpace) -> Candidate: ...

    def arch(self, name: str, space: BaseSearchSpace) -> Candidate:
        """An architecture of ``space``, e.g. ``CellSpace()``: an `ArchGraph` that mutates
        and fingerprints as the space's own do."""
        value: Candidate = self._decide(name, lambda: ArchDistribution(space))
        return value

    # -- recording -------------------------------------------------------------------------

    def _decide(self, name: str, make: Callable[[], BaseDistribution]) -> Any:
        if not isinstance(name, str) or not name:
            raise SearchSpaceError(
                "invalid decision name",
                expected="a non-empty string naming the decision, e.g. s.int('depth', 1, 4)",
                received=describe(name),
                fix="name every decision; in a loop, e.g. s.int(f'width_{i}', 16, 256)",
            )
        try:
            distribution = make()
        except SearchSpaceError as error:
            raise SearchSpaceError(
                f"{error.problem} of the decision {name!r}",
                expected=error.expected,
                received=error.received,
                fix=error.fix,
            ) from None
        made = self._made.get(name)
        if made is not None:
            if made.distribution != distribution:
                raise SearchSpaceError(
                    f"the decision {name!r} was asked twice with different distributions",
                    expected="the same distribution each time a name is asked in one run",
                    received=f"{made.distribution!r}, then {distribution!r}"[:300],
                    fix="give each decision its own name, e.g. f'width_{i}' inside a loop",
                )
            return made.value
        self._made[name] = Decision(name, distribution, self._value(name, distribution))
        return self._made[name].value

    def _value(self, name: str, distribution: BaseDistribution) -> Any:
        kept = self._keep.get(name)
        if self._strict:
            same = kept is not None and kept.distribution == distribution
            if same and kept is not None and distribution.contains(kept.value):
                return kept.value
            self.mismatch = True
        elif kept is not None and distribution.contains(kept.value):
            return kept.value
        if self._highest:
            return distribution.highest(self._rng)
        return distribution.sample(self._rng)


def run_space_function(fn: Callable[[Sampler], Any], sampler: Sampler, label: str) -> Config:
    """Run ``fn(sampler)`` and make the config of what it decided and returned.

    Raises
    ------
    SearchSpaceError
        When ``fn`` raises (chained, unless it is the sampler's own `SearchSpaceError`) or
        returns something that is not JSON.
    """
    try:
        value = fn(sampler)
    except SearchSpaceError:
        raise
    except Exception as error:
        raise SearchSpaceError(
            "the space function raised an exception",
            expected=f"{label}(s) to return the trial's configuration",
            received=f"{type(error).__name__}: {error}"[:300],
            fix="fix the function; the traceback above shows where it failed",
        ) from error
    return Config(sampler.decisions, value)
