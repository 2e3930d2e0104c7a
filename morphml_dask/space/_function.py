"""`FunctionSpace`: a define-by-run space, written as a function of a sampler.

The user's function asks the sampler for decisions and returns the trial's configuration::

    def space(s):
        depth = s.int("depth", 1, 4)
        return {
            "widths": [s.int(f"width_{i}", 16, 256, log=True) for i in range(depth)],
            "lr": s.float("lr", 1e-4, 1e-1, log=True),
        }

Its genome is the record of the decisions actually made (`Config`), so conditional and
variable-length spaces need nothing more than Python's ``if`` and ``for``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask.exceptions import ExperimentError, SearchSpaceError
from morphml_dask.registry import import_path_of, register_kind, resolve
from morphml_dask.space._base import BaseSearchSpace
from morphml_dask.space._config import Config, Decision
from morphml_dask.space._sampler import Sampler, run_space_function
from morphml_dask.validation import describe

if TYPE_CHECKING:
    from morphml_dask.space._config import Candidate

__all__ = ["FunctionSpace"]

SpaceFunction = Callable[[Sampler], Any]

# Seeded runs of the function at construction that find the decisions it can make (after
# one run with every range at its top), for a fixed-length encoding.
_PROBES = 32
# Draws of a mutation before a space is taken to have no neighbour for a config.
_MUTATION_TRIES = 32
_EXAMPLE = "def space(s): return {'lr': s.float('lr', 1e-4, 1e-1, log=True)}"


class FunctionSpace(BaseSearchSpace):
    """The space of what ``fn(s)`` returns, over the decisions it asks the sampler for.

    Parameters
    ----------
    fn
        A function of one parameter, the `Sampler`, that returns the trial's configuration:
        JSON values (text, numbers, booleans, None, lists, dicts with text keys) and the
        architectures ``s.arch`` returns. Or its import path ``"module:name"``. It should
        be deterministic given its decisions, and see no torch: it runs in the optimizer.

    Notes
    -----
    The candidates are `Config` objects, the decisions made and the value returned.

    - ``sample`` runs the function, drawing every decision.
    - ``mutate`` moves one decision to a neighbour in its distribution (a nearby integer
      or real, on a log scale where it was drawn on one; another option of a choice; the
      other boolean; a mutation of an architecture) and runs the function again, keeping
      the other decisions and drawing new ones only where a branch opens. Decisions of a
      branch that closes are dropped; a kept decision whose distribution changed is drawn
      again when its value no longer belongs. The child always differs from its parent.
    - ``crossover`` takes each decision from one parent or the other, at random, and runs
      the function on them.
    - ``contains`` runs the function on a config's decisions and checks that it makes
      exactly them, each from the same distribution.
    - ``encode`` gives one slot per decision the function can make, found when the space
      is built (one run with every range at its top and every boolean True, so that the
      longest loops open, then 32 seeded runs): an "active" flag, then the value's
      encoding, zeros for a decision not made. A decision seen neither there nor later
      is left out of the encoding.

    An import path is what ``to_dict`` writes, so that a checkpoint can be resumed: a
    function passed as an object must be defined at module level (a function of a script's
    ``__main__`` is named after the script's file).

    Examples
    --------
    >>> def space(s):
    ...     layers = [s.int(f"units_{i}", 8, 64) for i in range(s.int("depth", 1, 3))]
    ...     return {"layers": layers, "dropout": s.bool("dropout")}
    >>> fs = FunctionSpace(space)
    >>> rng = np.random.default_rng(0)
    >>> config = fs.sample(rng)
    >>> len(config.value["layers"]) == config["depth"]
    True
    >>> child = fs.mutate(config, rng)
    >>> fs.contains(child), child.fingerprint != config.fingerprint
    (True, True)
    >>> fs.encode(config).shape == fs.encode(child).shape
    True
    """

    name = "function"

    def __init__(self, fn: SpaceFunction | str) -> None:
        self._path = fn if isinstance(fn, str) else None
        self.fn: SpaceFunction = _resolve(fn) if isinstance(fn, str) else fn
        self.label = str(getattr(self.fn, "__qualname__", "the space function"))
        _check_signature(self.fn, self.label)
        try:
            self._slots, self._width = self._probe()
        except SearchSpaceError as error:
            # Raised while building: the experiment document reports it as space.function.
            error.key = error.key or "function"
            raise

    @property
    def function(self) -> str:
        """The function's import path, ``"module:name"``.

        Raises
        ------
        SearchSpaceError
            For a lambda or a function defined inside another one, which have none.
        """
        if self._path is not None:
            return self._path
        return import_path_of(
            self.fn, error=SearchSpaceError, what="the space function", key="function"
        )

    # -- search moves ----------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Config:
        return self._run(Sampler(rng))

    def mutate(self, arch: Candidate, rng: np.random.Generator) -> Config:
        """One decision moved to a neighbour, the function run again (see Notes)."""
        config = self._checked(arch)
        movable = [d for d in config.decisions if not d.distribution.single]
        for _ in range(_MUTATION_TRIES if movable else 0):
            chosen = movable[int(rng.integers(len(movable)))]
            try:
                moved = chosen.distribution.neighbour(chosen.value, rng)
            except SearchSpaceError:  # an architecture its own space cannot mutate
                continue
            keep = {d.name: d for d in config.decisions}
            keep[chosen.name] = Decision(chosen.name, chosen.distribution, moved)
            child = self._run(Sampler(rng, keep))
            if child.fingerprint != config.fingerprint:
                return child
        raise SearchSpaceError(
            "no mutation of this config differs from it",
            expected="a config with a decision of more than one value",
            received=repr(config)[:300],
            fix="give the space a decision with several values, or search it with RandomSearch",
        )

    def crossover(self, a: Candidate, b: Candidate, rng: np.random.Generator) -> Config:
        """Each decision from either parent with equal probability, the function run on
        them; a decision only one parent made comes from it."""
        first, second = self._checked(a), self._checked(b)
        names = [*first.names, *(n for n in second.names if n not in first)]
        keep = {}
        for name in names:
            from_second = (bool(rng.random() < 0.5) and name in second) or name not in first
            parent = second if from_second else first
            keep[name] = next(d for d in parent.decisions if d.name == name)
        return self._run(Sampler(rng, keep))

    def contains(self, arch: Candidate) -> bool:
        if not isinstance(arch, Config):
            return False
        keep = {d.name: d for d in arch.decisions}
        sampler = Sampler(np.random.default_rng(0), keep, strict=True)
        try:
            again = self._run(sampler)
        except SearchSpaceError:
            return False
        return not sampler.mismatch and again == arch

    def encode(self, arch: Candidate) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Per decision the space can make: an active flag, then its value's encoding."""
        config = self._checked(arch)
        vector = np.zeros(self._width)
        for decision in config.decisions:
            slot = self._slots.get(decision.name)
            if slot is None:
                continue
            offset, width = slot
            vector[offset] = 1.0
            encoded = decision.distribution.encode(decision.value)
            # A decision whose distribution changed shape since the probe: the flag only.
            if len(encoded) == width:
                vector[offset + 1 : offset + 1 + width] = encoded
        return vector

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "function": self.function}

    def __repr__(self) -> str:
        return f"FunctionSpace({self._path or self.label})"

    def __reduce__(self) -> tuple[Any, ...]:
        # By import path where there is one: a function of a script's __main__ is found
        # on a worker under the script's name only.
        try:
            return (FunctionSpace, (self.function,))
        except SearchSpaceError:
            return (FunctionSpace, (self.fn,))

    # -- helpers ---------------------------------------------------------------------------

    def _run(self, sampler: Sampler) -> Config:
        return run_space_function(self.fn, sampler, self.label)

    def _probe(self) -> tuple[dict[str, tuple[int, int]], int]:
        """The encoding's slots, ``name -> (offset, width)``, and its length."""
        rng = np.random.default_rng(0)
        runs = [self._run(Sampler(rng, highest=True))]
        runs += [self._run(Sampler(rng)) for _ in range(_PROBES)]
        slots: dict[str, tuple[int, int]] = {}
        offset = 0
        for config in runs:
            for decision in config.decisions:
                if decision.name not in slots:
                    width = len(decision.distribution.encode(decision.value))
                    slots[decision.name] = (offset, width)
                    offset += 1 + width
        return slots, offset

    def _checked(self, arch: Candidate) -> Config:
        if not isinstance(arch, Config):
            raise SearchSpaceError(
                "not a config of a function space",
                expected="a Config made by FunctionSpace.sample, mutate or crossover",
                received=repr(arch)[:300],
                fix="give the function space its own configs; architectures belong to "
                "CellSpace or DagSpace",
            )
        return arch


def _resolve(path: str) -> SpaceFunction:
    try:
        found: SpaceFunction = resolve(path)
    except ExperimentError as error:
        raise SearchSpaceError(
            f"the space function {path!r} cannot be imported",
            expected=error.expected,
            received=error.received,
            fix=error.fix,
            key="function",
        ) from error
    return found


def _check_signature(fn: object, label: str) -> None:
    fix = f"take the sampler as the only parameter, e.g. {_EXAMPLE}"
    if not callable(fn):
        raise SearchSpaceError(
            "the space function is not callable",
            expected="a function of one parameter, the sampler",
            received=describe(fn),
            fix=fix,
            key="function",
        )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return
    try:
        signature.bind(object())
    except TypeError:
        raise SearchSpaceError(
            "the space function has the wrong signature",
            expected="a function of one positional parameter, the sampler",
            received=f"{label}{signature}",
            fix=f"{fix}; give any other parameter a default",
            key="function",
        ) from None


def function_space(function: SpaceFunction | str) -> FunctionSpace:
    """The ``function`` space kind: ``space: {function: "mypkg.spaces:mlp"}``."""
    return FunctionSpace(function)


register_kind("space", FunctionSpace.name, function_space)
