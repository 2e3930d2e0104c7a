"""`Config`: the genome of a define-by-run space, the decisions a space function made.

A `Config` holds each decision actually made (its name, distribution and value, in the
order the function made them) and the value the function returned from them. It is
immutable and fingerprinted like an `ArchGraph`, so that the store's deduplication, the
optimizers and the trial records treat both alike: `Candidate` is either of them, and
`candidate_from_dict` reads either back from JSON.
"""

from __future__ import annotations

import copy
import hashlib
import json
import numbers
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from morphml_dask.exceptions import InvalidArchitectureError, SearchSpaceError
from morphml_dask.space._distributions import (
    ArchDistribution,
    BaseDistribution,
    distribution_from_dict,
)
from morphml_dask.space._graph import FORMAT as ARCH_FORMAT
from morphml_dask.space._graph import ArchGraph
from morphml_dask.validation import INT_LIMIT, describe, is_int, short_repr

__all__ = ["Candidate", "Config", "Decision", "candidate_from_dict"]

FORMAT = "morphml.config"
FORMAT_VERSION = 1
_DOCUMENT_KEYS = ("format", "version", "decisions", "value")
_DECISION_KEYS = ("name", "distribution", "value")
_PLAIN = "text, finite numbers, True/False, None, lists, dicts with string keys and the "
_PLAIN += "architectures s.arch returns"


@dataclass(frozen=True)
class Decision:
    """One decision a space function made: its name, where it was drawn from, its value."""

    name: str
    distribution: BaseDistribution
    value: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution.to_dict(),
            "value": _to_json(self.value),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        if not (
            isinstance(data, Mapping)
            and set(data) == set(_DECISION_KEYS)
            and isinstance(data["name"], str)
        ):
            raise _malformed(
                "malformed decision", f"a mapping with the keys {list(_DECISION_KEYS)}", data
            )
        distribution = distribution_from_dict(data["distribution"])
        value = _from_json(data["value"])
        # Architectures were validated by their own from_dict; checking that they belong
        # to their space would rebuild the space for every record read.
        if not isinstance(distribution, ArchDistribution) and not distribution.contains(value):
            raise _malformed(
                f"the value of the decision {data['name']!r} is not in its distribution",
                f"a value of {distribution!r}",
                data["value"],
            )
        return cls(data["name"], distribution, value)


class Config:
    """The decisions a `FunctionSpace` function made, and the value it returned.

    Build configs with `FunctionSpace.sample`, ``mutate`` and ``crossover``, or read them
    back with `Config.from_dict`; the constructor is for those.

    Parameters
    ----------
    decisions
        The decisions made, in order, each name once.
    value
        What the function returned: plain JSON values with `ArchGraph` objects inside.

    Examples
    --------
    >>> from morphml_dask.space import FunctionSpace
    >>> def space(s):
    ...     return {"lr": s.float("lr", 1e-4, 1e-1, log=True), "depth": s.int("depth", 1, 3)}
    >>> config = FunctionSpace(space).sample(np.random.default_rng(0))
    >>> config.names
    ('lr', 'depth')
    >>> config["depth"] == config.value["depth"]
    True
    >>> Config.from_dict(config.to_dict()).fingerprint == config.fingerprint
    True
    """

    __slots__ = ("_by_name", "_decisions", "_fingerprint", "_value")

    _decisions: tuple[Decision, ...]
    _by_name: dict[str, Decision]
    _value: Any
    _fingerprint: str | None

    def __init__(self, decisions: Iterable[Decision], value: Any) -> None:
        made = tuple(decisions)
        by_name: dict[str, Decision] = {}
        for decision in made:
            if not isinstance(decision, Decision) or decision.name in by_name:
                raise _malformed(
                    "the decisions of a config are not distinct Decision records",
                    "Decision objects, each name once",
                    decision,
                )
            by_name[decision.name] = decision
        object.__setattr__(self, "_decisions", made)
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_value", plain_value(value))
        object.__setattr__(self, "_fingerprint", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Config is immutable")

    # -- reading ---------------------------------------------------------------------------

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """The decisions made, in the order the function made them."""
        return self._decisions

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self._decisions)

    @property
    def value(self) -> Any:
        """What the space function returned; a copy, so that changing it changes no config."""
        return copy.deepcopy(self._value)

    def __getitem__(self, name: str) -> Any:
        """The value of the decision ``name``."""
        decision = self._by_name.get(name)
        if decision is None:
            raise KeyError(f"no decision {name!r} in this config; it made {list(self.names)}")
        return decision.value

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._decisions)

    @property
    def fingerprint(self) -> str:
        """A 32-hex-digit key equal for configs that made the same decisions.

        It hashes each decision's name and value (an architecture by its own
        `ArchGraph.fingerprint`), sorted by name: the order in which a function makes its
        decisions does not change it.
        """
        if self._fingerprint is None:
            pairs = sorted([d.name, d.distribution.canonical(d.value)] for d in self._decisions)
            text = json.dumps(pairs, separators=(",", ":"))
            digest = hashlib.sha256(f"{FORMAT}/{FORMAT_VERSION}:{text}".encode()).hexdigest()
            object.__setattr__(self, "_fingerprint", digest[:32])
        assert self._fingerprint is not None
        return self._fingerprint

    # -- values ----------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Config)
            and self._decisions == other._decisions
            and self._value == other._value
        )

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        shown = ", ".join(f"{d.name}={short_repr(d.value)}" for d in self._decisions)
        return f"Config({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Dask ships trials by pickling: through the JSON form, validated on arrival.
        return (Config.from_dict, (self.to_dict(),))

    def __copy__(self) -> Config:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Config:
        return self

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, read back by `from_dict` (and `candidate_from_dict`)."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "decisions": [d.to_dict() for d in self._decisions],
            "value": _to_json(self._value),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Rebuild a config written by `to_dict`, checking every decision."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            received = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise _malformed(
                "not a config document", f'a mapping with "format": "{FORMAT}"', received
            )
        version = data.get("version")
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise SearchSpaceError(
                "unsupported config document version",
                expected=f"version {FORMAT_VERSION}",
                received=repr(version),
                fix="upgrade morphml_dask to read documents written by a newer release",
            )
        if set(data) != set(_DOCUMENT_KEYS) or not isinstance(data["decisions"], list):
            raise _malformed(
                "malformed config document",
                f"exactly the keys {list(_DOCUMENT_KEYS)}, the decisions a list",
                sorted(data, key=repr),
            )
        decisions = [Decision.from_dict(d) for d in data["decisions"]]
        return cls(decisions, _from_json(data["value"]))


Candidate = ArchGraph | Config
"""What a search space holds and a `Trial` evaluates: an `ArchGraph` or a `Config`."""


def candidate_from_dict(data: Mapping[str, Any]) -> Candidate:
    """An `ArchGraph` or a `Config` from its ``to_dict`` form, by its ``"format"``.

    Raises
    ------
    InvalidArchitectureError
        When ``data`` is neither document.
    """
    found = data.get("format") if isinstance(data, Mapping) else None
    if found == FORMAT:
        return Config.from_dict(data)
    if found == ARCH_FORMAT:
        return ArchGraph.from_dict(data)
    raise InvalidArchitectureError(
        "not an architecture or config document",
        expected=f'a mapping with "format": "{ARCH_FORMAT}" or "{FORMAT}"',
        received=short_repr(found if isinstance(data, Mapping) else data),
        fix="pass the dict produced by ArchGraph.to_dict() or Config.to_dict()",
    )


def plain_value(value: Any, path: str = "value") -> Any:
    """``value`` as plain JSON values (tuples as lists, NumPy scalars as Python's), with
    `ArchGraph` and `Config` objects kept as they are.

    Raises
    ------
    SearchSpaceError
        For anything else, naming where in ``value`` it is.
    """
    if isinstance(value, ArchGraph | Config) or value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, np.generic) and not isinstance(value, np.ndarray):
        return plain_value(value.item(), path)
    if is_int(value) and abs(int(value)) < INT_LIMIT // 2:
        return int(value)
    if isinstance(value, numbers.Real) and not is_int(value) and np.isfinite(float(value)):
        return float(value)
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: plain_value(v, f"{path}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        key = next(k for k in value if not isinstance(k, str))
        raise SearchSpaceError(
            "the space function returned a dict with a key that is not text",
            expected=_PLAIN,
            received=f"key {describe(key)} in {path}",
            fix="use text keys, e.g. str(key)",
        )
    raise SearchSpaceError(
        "the space function returned something that is not JSON",
        expected=_PLAIN,
        received=f"{path} = {describe(value)}",
        fix="return plain values and build objects (models, optimizers) from them in the "
        "train function",
    )


def _to_json(value: Any) -> Any:
    if isinstance(value, ArchGraph | Config):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


def _from_json(data: Any) -> Any:
    if isinstance(data, dict):
        if data.get("format") in (ARCH_FORMAT, FORMAT):
            return candidate_from_dict(data)
        return {k: _from_json(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_from_json(v) for v in data]
    return data


def _malformed(problem: str, expected: str, received: object) -> SearchSpaceError:
    return SearchSpaceError(
        problem,
        expected=expected,
        received=short_repr(received),
        fix="pass the dict produced by Config.to_dict()",
    )
