"""The distributions a define-by-run space draws its decisions from.

Each decision of a `FunctionSpace` records its distribution: a choice among options, an
integer or float range (optionally on a log scale), a boolean, or an architecture of
another space. A distribution samples a value, proposes a neighbour of one (mutation),
encodes one as floats (Bayesian optimisation), says whether a value belongs to it, writes a
value's canonical form for fingerprints, and round-trips through JSON like the distributions
of Optuna (``optuna/distributions.py``).
"""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask.exceptions import SearchSpaceError
from morphml_dask.space._base import BaseSearchSpace, space_from_dict
from morphml_dask.validation import INT_LIMIT, describe, is_int, is_number, short_repr

if TYPE_CHECKING:
    from morphml_dask.space._config import Candidate

__all__ = [
    "ArchDistribution",
    "BaseDistribution",
    "BoolDistribution",
    "ChoiceDistribution",
    "FloatDistribution",
    "IntDistribution",
    "distribution_from_dict",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
# A neighbour of a numeric value moves by about this share of the range (or log range).
_NEIGHBOUR_SCALE = 0.1
_NEIGHBOUR_TRIES = 16


class BaseDistribution(abc.ABC):
    """Where one decision's value comes from. Immutable; equal when their JSON is equal.

    Subclasses set ``type``, the name `to_dict` writes and the sampler method that makes
    them (``"choice"``, ``"int"``, ``"float"``, ``"bool"``, ``"arch"``).
    """

    type: str

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """A value drawn from the distribution."""

    @abc.abstractmethod
    def neighbour(self, value: Any, rng: np.random.Generator) -> Any:
        """A value near ``value`` (another option for a choice), different from it."""

    @abc.abstractmethod
    def encode(self, value: Any) -> FloatArray:
        """``value`` as floats, about in [0, 1]; the same length for every value."""

    @abc.abstractmethod
    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one of the distribution's values."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings, read back by `distribution_from_dict`."""

    @property
    def single(self) -> bool:
        """True when the distribution has one value only: nothing to mutate."""
        return False

    def highest(self, rng: np.random.Generator) -> Any:
        """The value that opens the most of a space: the top of a range, True. Used to
        find every decision a space can make."""
        return self.sample(rng)

    def canonical(self, value: Any) -> Any:
        """``value`` as the fingerprint sees it: its JSON, or an architecture's fingerprint."""
        return value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BaseDistribution) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"{self.type}({settings})"

    @property
    def _key(self) -> str:
        # JSON text tells 1, 1.0 and true apart, where Python's == does not.
        return json.dumps(self.to_dict(), sort_keys=True)


def _bad_setting(what: str, expected: str, received: str, fix: str) -> SearchSpaceError:
    return SearchSpaceError(f"invalid {what}", expected=expected, received=received[:300], fix=fix)


def _json_text(value: Any) -> str:
    return json.dumps(value)


class ChoiceDistribution(BaseDistribution):
    """One of a list of options: text, numbers, booleans or None, each distinct."""

    type = "choice"

    def __init__(self, options: Sequence[Any]) -> None:
        example = "e.g. s.choice('activation', ['relu', 'gelu'])"
        if isinstance(options, str | bytes) or not isinstance(options, Sequence) or not options:
            raise _bad_setting(
                "choice options",
                "a non-empty list of options",
                describe(options),
                f"pass the options as a list, {example}",
            )
        plain = []
        for option in options:
            if isinstance(option, np.generic):
                option = option.item()
            if not _is_json_scalar(option):
                raise _bad_setting(
                    "choice option",
                    "text, a finite number, True/False or None (hashable JSON values)",
                    describe(option),
                    "choose among names and look the objects up in the function, e.g. "
                    "layers = {'small': [64], 'big': [256, 256]}[s.choice('size', "
                    "['small', 'big'])]",
                )
            plain.append(option)
        texts = [_json_text(o) for o in plain]
        if len(set(plain)) != len(plain) or len(set(texts)) != len(texts):
            raise _bad_setting(
                "choice options",
                "distinct options (1, 1.0 and True count as the same)",
                short_repr(list(options)),
                "list each option once",
            )
        self.options: tuple[Any, ...] = tuple(plain)
        self._index = {text: i for i, text in enumerate(texts)}

    @property
    def single(self) -> bool:
        return len(self.options) == 1

    def index(self, value: Any) -> int | None:
        """The position of ``value`` among the options, or None."""
        if not _is_json_scalar(value):
            return None
        return self._index.get(_json_text(value))

    def sample(self, rng: np.random.Generator) -> Any:
        return self.options[int(rng.integers(len(self.options)))]

    def neighbour(self, value: Any, rng: np.random.Generator) -> Any:
        others = [o for i, o in enumerate(self.options) if i != self.index(value)]
        return others[int(rng.integers(len(others)))] if others else value

    def encode(self, value: Any) -> FloatArray:
        onehot = np.zeros(len(self.options))
        index = self.index(value)
        if index is not None:
            onehot[index] = 1.0
        return onehot

    def contains(self, value: Any) -> bool:
        return self.index(value) is not None

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "options": list(self.options)}


class IntDistribution(BaseDistribution):
    """Integers ``low, low + step, ...`` up to ``high``, uniform or log-uniform."""

    type = "int"

    def __init__(self, low: int, high: int, *, log: bool = False, step: int = 1) -> None:
        for bound, value in (("low", low), ("high", high)):
            if not is_int(value) or abs(int(value)) >= INT_LIMIT // 2:
                raise _bad_setting(
                    f"int {bound}",
                    "an integer",
                    describe(value),
                    "use s.float(...) for real numbers",
                )
        _check_log(log)
        if not is_int(step) or step < 1:
            raise _bad_setting(
                "int step", "an integer >= 1", describe(step), "pass step=1, or a larger stride"
            )
        self.low, self.high, self.log, self.step = int(low), int(high), log, int(step)
        _check_order(self.type, self.low, self.high)
        if log and self.low < 1:
            raise _bad_setting(
                "int range on a log scale",
                "low >= 1 with log=True",
                f"low={self.low}, high={self.high}",
                "raise low to 1 or more, or pass log=False",
            )
        if log and self.step != 1:
            raise _bad_setting(
                "int range on a log scale",
                "step=1 with log=True",
                f"step={self.step}",
                "drop step, or pass log=False",
            )
        # The grid's last point: high itself when high - low is a multiple of step.
        self.top = self.low + (self.high - self.low) // self.step * self.step

    @property
    def single(self) -> bool:
        return self.top == self.low

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:
            drawn = math.exp(rng.uniform(math.log(self.low - 0.5), math.log(self.high + 0.5)))
            return min(max(round(drawn), self.low), self.high)
        return self.low + int(rng.integers((self.top - self.low) // self.step + 1)) * self.step

    def highest(self, rng: np.random.Generator) -> int:
        return self.top

    def neighbour(self, value: Any, rng: np.random.Generator) -> int:
        current = int(value)
        for _ in range(_NEIGHBOUR_TRIES):
            if self.log:
                spread = _NEIGHBOUR_SCALE * math.log(self.high / self.low)
                moved = round(math.exp(math.log(current) + rng.normal(0.0, spread)))
            else:
                points = (self.top - self.low) // self.step + 1
                steps = max(1, abs(round(rng.normal(0.0, _NEIGHBOUR_SCALE * points))))
                moved = current + steps * self.step * (1 if rng.random() < 0.5 else -1)
            moved = min(max(moved, self.low), self.top)
            if moved != current:
                return moved
        # Every nudge fell back on the value: step once towards the room there is.
        stride = self.step
        return current + stride if current + stride <= self.top else current - stride

    def encode(self, value: Any) -> FloatArray:
        return np.array([_unit(float(value), self.low, self.high, self.log)])

    def contains(self, value: Any) -> bool:
        return (
            is_int(value)
            and self.low <= value <= self.top
            and (int(value) - self.low) % self.step == 0
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "step": self.step,
        }


class FloatDistribution(BaseDistribution):
    """Real numbers from ``low`` to ``high``, uniform or log-uniform."""

    type = "float"

    def __init__(self, low: float, high: float, *, log: bool = False) -> None:
        for bound, value in (("low", low), ("high", high)):
            if not is_number(value):
                raise _bad_setting(
                    f"float {bound}",
                    "a finite number",
                    describe(value),
                    "pass numbers, e.g. s.float('lr', 1e-4, 1e-1, log=True)",
                )
        _check_log(log)
        self.low, self.high, self.log = float(low), float(high), log
        _check_order(self.type, self.low, self.high)
        if log and self.low <= 0:
            raise _bad_setting(
                "float range on a log scale",
                "low > 0 with log=True",
                f"low={self.low}, high={self.high}",
                "raise low above 0 (e.g. 1e-5), or pass log=False",
            )

    @property
    def single(self) -> bool:
        return self.low == self.high

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            drawn = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            drawn = self.low + (self.high - self.low) * rng.random()
        return min(max(drawn, self.low), self.high)

    def highest(self, rng: np.random.Generator) -> float:
        return self.high

    def neighbour(self, value: Any, rng: np.random.Generator) -> float:
        current = float(value)
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        at = math.log(current) if self.log else current
        for _ in range(_NEIGHBOUR_TRIES):
            moved = at + rng.normal(0.0, _NEIGHBOUR_SCALE * (hi - lo))
            # Reflect at the bounds, so that values near them move inwards.
            moved = lo + abs(moved - lo) if moved < lo else moved
            moved = hi - abs(moved - hi) if moved > hi else moved
            candidate = math.exp(moved) if self.log else moved
            candidate = min(max(candidate, self.low), self.high)
            if candidate != current:
                return candidate
        return self.high if current != self.high else self.low

    def encode(self, value: Any) -> FloatArray:
        return np.array([_unit(float(value), self.low, self.high, self.log)])

    def contains(self, value: Any) -> bool:
        return is_number(value) and self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "low": self.low, "high": self.high, "log": self.log}


class BoolDistribution(BaseDistribution):
    """True or False, with equal probability."""

    type = "bool"

    def sample(self, rng: np.random.Generator) -> bool:
        return bool(rng.random() < 0.5)

    def highest(self, rng: np.random.Generator) -> bool:
        return True

    def neighbour(self, value: Any, rng: np.random.Generator) -> bool:
        return not value

    def encode(self, value: Any) -> FloatArray:
        return np.array([1.0 if value else 0.0])

    def contains(self, value: Any) -> bool:
        return isinstance(value, bool)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type}


class ArchDistribution(BaseDistribution):
    """An architecture (or any candidate) of another search space, e.g. ``CellSpace()``.

    Its values keep their own fingerprint, mutations and encoding; the space is stored by
    its `BaseSearchSpace.to_dict`, and rebuilt from it when a decision read from JSON
    is first sampled, mutated or encoded.
    """

    type = "arch"

    def __init__(self, space: BaseSearchSpace | Mapping[str, Any]) -> None:
        if isinstance(space, BaseSearchSpace):
            self._space: BaseSearchSpace | None = space
            self.space_dict = space.to_dict()
        elif isinstance(space, Mapping) and isinstance(space.get("name"), str):
            self._space = None
            self.space_dict = dict(space)
        else:
            raise _bad_setting(
                "arch space",
                "a search space, e.g. s.arch('cell', CellSpace()) or DagSpace(max_nodes=4)",
                describe(space),
                "pass a space object from morphml_dask.space",
            )

    @property
    def space(self) -> BaseSearchSpace:
        if self._space is None:
            self._space = space_from_dict(self.space_dict)
        return self._space

    def sample(self, rng: np.random.Generator) -> Candidate:
        return self.space.sample(rng)

    def neighbour(self, value: Any, rng: np.random.Generator) -> Candidate:
        return self.space.mutate(value, rng)

    def encode(self, value: Any) -> FloatArray:
        return self.space.encode(value)

    def contains(self, value: Any) -> bool:
        return self.space.contains(value)

    def canonical(self, value: Any) -> Any:
        return value.fingerprint

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "space": self.space_dict}

    def __reduce__(self) -> tuple[Any, ...]:
        # Dask ships decisions by pickling: the space travels as its settings.
        return (ArchDistribution, (self.space_dict,))


_TYPES: dict[str, type[BaseDistribution]] = {
    kind.type: kind
    for kind in (
        ChoiceDistribution,
        IntDistribution,
        FloatDistribution,
        BoolDistribution,
        ArchDistribution,
    )
}


def distribution_from_dict(data: Mapping[str, Any]) -> BaseDistribution:
    """Rebuild a distribution from its `BaseDistribution.to_dict`.

    Examples
    --------
    >>> distribution_from_dict({"type": "int", "low": 1, "high": 4, "log": False, "step": 1})
    int(low=1, high=4, log=False, step=1)
    """
    kind = _TYPES.get(str(data.get("type"))) if isinstance(data, Mapping) else None
    if kind is None or not isinstance(data, Mapping):
        raise SearchSpaceError(
            "not a distribution document",
            expected=f'a mapping with "type" one of {list(_TYPES)}',
            received=short_repr(data),
            fix="pass the dict produced by a distribution's to_dict()",
        )
    settings = {k: v for k, v in data.items() if k != "type"}
    try:
        return kind(**settings)
    except TypeError as error:
        raise SearchSpaceError(
            f"malformed {kind.type} distribution document",
            expected=f"the settings {kind.type} distributions write",
            received=short_repr(dict(data)),
            fix="pass the dict produced by a distribution's to_dict()",
        ) from error


def _is_json_scalar(value: object) -> bool:
    if value is None or isinstance(value, str | bool):
        return True
    if is_int(value):
        return abs(int(value)) < INT_LIMIT // 2
    return is_number(value)


def _check_log(log: object) -> None:
    if not isinstance(log, bool):
        raise _bad_setting("log", "True or False", describe(log), "pass log=True or log=False")


def _check_order(kind: str, low: float, high: float) -> None:
    if low > high:
        raise _bad_setting(
            f"{kind} range",
            "low <= high",
            f"low={low}, high={high}",
            f"swap them: s.{kind}(name, {high}, {low})",
        )


def _unit(value: float, low: float, high: float, log: bool) -> float:
    """``value`` scaled to [0, 1] over the range, on a log scale with ``log``."""
    if high == low:
        return 0.0
    if log:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low)
