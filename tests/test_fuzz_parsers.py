"""Property-based fuzzing of the parsers users feed: experiment documents and architectures.

Every input either parses into a value that round-trips through its serialised form, or is
refused with a `MorphMLError` subclass: never a raw ``TypeError``, ``KeyError`` or crash.
Inputs are random JSON-like values and, more usefully, valid documents with one to three
meaningful mutations (a key dropped, renamed or added, a value of the wrong type, a number
perturbed, a value nested in a list or mapping). Runs are bounded and derandomized, so CI is
deterministic and takes seconds.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
from typing import Any

import numpy as np
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from morphml_dask.exceptions import (
    InvalidArchitectureError,
    MorphMLError,
    SearchSpaceError,
)
from morphml_dask.experiment import load_experiment
from morphml_dask.space import NB201_OPS, ArchGraph, CellSpace, DagSpace, space_from_dict

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- values -----------------------------------------------------------------------------------

_WORDS = st.sampled_from(
    [
        "name", "space", "task", "optimizer", "max_trials", "store", "version", "edges",
        "nodes", "op", "format", "kernel", "channels", "conv", "input", "output", "asha",
        "dag-cnn", "nb201-cell", "train", "digits", "cifar10", "maximize", "morphml.arch",
    ]
)  # fmt: skip
_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-.:/0123456789 ", max_size=10)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70),
    st.sampled_from([2**31, 2**63, 2**64, -(2**70), 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    _TEXT,
    _WORDS,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(_WORDS, _TEXT, st.integers(-2, 2)), inner, max_size=4)
    ),
    max_leaves=10,
)

# -- meaningful mutations ---------------------------------------------------------------------

MUTATIONS = ("drop", "retype", "insert", "perturb", "nest", "rename")
Path = tuple[Any, ...]


def _containers(node: Any, path: Path = ()) -> list[Path]:
    """Paths to every mapping and list inside ``node``, ``node`` itself first."""
    if not isinstance(node, dict | list):
        return []
    found = [path]
    for key, value in node.items() if isinstance(node, dict) else enumerate(node):
        found += _containers(value, (*path, key))
    return found


def _get(node: Any, path: Path) -> Any:
    for key in path:
        node = node[key]
    return node


def _perturbed(value: Any, data: st.DataObject) -> Any:
    """A near miss of ``value``: off by one, negated, scaled, of another type, non-finite."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        near = [value + 1, value - 1, -value, 0, value * 1000, str(value), 2**64]
        near += [float("nan"), float("inf")]
        if isinstance(value, int) and abs(value) < 2**1000:  # beyond, float() overflows
            near.append(float(value))
        elif isinstance(value, float) and math.isfinite(value):
            near.append(round(value))
        return data.draw(st.sampled_from(near))
    if isinstance(value, str):
        return data.draw(st.sampled_from([value.upper(), value[:-1], value + "x", "", f" {value}"]))
    return data.draw(SCALARS)


def mutate(document: Any, data: st.DataObject) -> Any:
    """``document`` with one mutation applied (a deep copy).

    A container is drawn first, then a key in it, so that top-level keys (``edges``,
    ``optimizer``) are hit as often as deeply nested ones.
    """
    document = copy.deepcopy(document)
    containers = _containers(document)
    if not containers:
        return data.draw(VALUES)
    parent = _get(document, data.draw(st.sampled_from(containers)))
    action = data.draw(st.sampled_from(MUTATIONS))
    if action == "insert" or not parent:
        if isinstance(parent, dict):
            parent[data.draw(st.one_of(_WORDS, _TEXT, st.integers(-2, 2)))] = data.draw(VALUES)
        else:
            parent.insert(data.draw(st.integers(0, len(parent))), data.draw(VALUES))
        return document
    key = data.draw(
        st.sampled_from(list(parent) if isinstance(parent, dict) else range(len(parent)))
    )
    if action == "drop":
        del parent[key]
    elif action == "retype":
        parent[key] = data.draw(VALUES)
    elif action == "perturb":
        parent[key] = _perturbed(parent[key], data)
    elif action == "nest":
        parent[key] = data.draw(st.sampled_from([[parent[key]], {"value": parent[key]}]))
    elif isinstance(parent, dict):  # rename: a typo, a case change, or a key of elsewhere
        new_key = data.draw(st.sampled_from([f"{key}s", str(key).upper(), str(key)[:-1]]) | _WORDS)
        parent[new_key] = parent.pop(key)
    return document


# -- experiment documents ---------------------------------------------------------------------


def nb201_doc() -> dict[str, Any]:
    return {
        "name": "tiny",
        "space": {"name": "nb201-cell"},
        "task": {"name": "nb201-tabular", "dataset": "cifar10", "epochs": 12},
        "optimizer": {"name": "regularized-evolution", "population_size": 4, "seed": 0},
        "max_trials": 10,
        "store": "memory://fuzz",
        "storage_options": {"anon": True},
    }


def digits_doc() -> dict[str, Any]:
    return {
        "name": "digits",
        "space": {"name": "dag-cnn", "max_nodes": 4, "widths": [16, 32], "skip_prob": 0.3},
        "task": {"name": "train", "dataset": "digits", "epochs": 4, "learning_rate": 0.1},
        "optimizer": {"name": "asha", "min_budget": 1, "max_budget": 4, "eta": 2, "seed": 0},
        "max_trials": 24,
    }


def assert_experiment_round_trips(source: Any) -> None:
    try:
        experiment = load_experiment(source)
    except MorphMLError as error:
        event(f"refused: {error.problem[:40]}")
        return
    event("parsed")
    document = experiment.to_dict()
    text = json.dumps(document, allow_nan=False)  # JSON-ready, no NaN
    assert load_experiment(document) == experiment
    assert load_experiment(json.loads(text)) == experiment
    assert load_experiment(yaml.safe_dump(document)) == experiment
    assert load_experiment(document).to_dict() == document


@FUZZ
@given(VALUES)
def test_random_values_as_experiments(value: Any) -> None:
    if isinstance(value, str) and "\n" not in value:
        value = {"name": value}  # a bare string is a path
    assert_experiment_round_trips(value)


@FUZZ
@given(st.sampled_from([nb201_doc, digits_doc]), st.sampled_from([1, 1, 2, 3]), st.data())
def test_mutated_experiments(base: Any, count: int, data: st.DataObject) -> None:
    document = base()
    for _ in range(count):
        document = mutate(document, data)
    assert_experiment_round_trips(document)
    try:
        text = yaml.safe_dump(document)
    except (yaml.YAMLError, ValueError, TypeError):
        return
    assert_experiment_round_trips(text if "\n" in text else document)


# -- architecture documents -------------------------------------------------------------------


def assert_arch_round_trips(data: Any) -> None:
    try:
        graph = ArchGraph.from_dict(data)
    except InvalidArchitectureError as error:
        event(f"refused: {error.problem[:40]}")
        return
    event("parsed")
    check_graph(graph)


def check_graph(graph: ArchGraph) -> None:
    """The graph survives JSON and pickling, and its fingerprint is that of its pruned form."""
    document = graph.to_dict()
    again = ArchGraph.from_dict(json.loads(json.dumps(document, allow_nan=False)))
    assert again == graph
    assert again.to_dict() == document
    assert again.fingerprint == graph.fingerprint
    assert pickle.loads(pickle.dumps(graph)) == graph
    assert graph.pruned().fingerprint == graph.fingerprint


@st.composite
def valid_arch(draw: st.DrawFn) -> dict[str, Any]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    space = draw(st.sampled_from([CellSpace(), DagSpace(max_nodes=5)]))
    return space.sample(rng).to_dict()


@FUZZ
@given(
    st.one_of(
        VALUES,
        st.fixed_dictionaries(
            {"format": st.just("morphml.arch"), "version": st.just(1)},
            optional={"nodes": VALUES, "edges": VALUES},
        ),
    )
)
def test_random_values_as_architectures(value: Any) -> None:
    assert_arch_round_trips(value)


@FUZZ
@given(valid_arch(), st.integers(1, 3), st.data())
def test_mutated_architectures(document: dict[str, Any], count: int, data: st.DataObject) -> None:
    check_graph(ArchGraph.from_dict(document))  # the unmutated document parses
    for _ in range(count):
        document = mutate(document, data)
    assert_arch_round_trips(document)


# -- search spaces, as checkpoints store them ------------------------------------------------


def assert_space_round_trips(data: Any) -> None:
    try:
        space = space_from_dict(data)
    except SearchSpaceError as error:
        event(f"refused: {error.problem[:40]}")
        return
    event("parsed")
    document = space.to_dict()
    again = space_from_dict(json.loads(json.dumps(document, allow_nan=False)))
    assert again.to_dict() == document
    assert space.contains(space.sample(np.random.default_rng(0)))


@FUZZ
@given(
    st.sampled_from([CellSpace().to_dict(), DagSpace().to_dict()]),
    st.integers(1, 3),
    st.data(),
)
def test_mutated_spaces(document: dict[str, Any], count: int, data: st.DataObject) -> None:
    for _ in range(count):
        document = mutate(document, data)
    assert_space_round_trips(document)


# -- NAS-Bench-201 cell strings ---------------------------------------------------------------

_CELL_TOKENS = st.sampled_from(["|", "+", "~", "0", "1", "2", "3", "~0|", *NB201_OPS, "conv"])


@st.composite
def mutated_cell(draw: st.DrawFn) -> str:
    ops = draw(st.lists(st.sampled_from(NB201_OPS), min_size=6, max_size=6))
    text = CellSpace().to_arch_str(CellSpace().from_ops(ops))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["op", "insert", "delete", "replace", "swap-groups"]))
        if action == "op":  # another op on one edge: often a valid cell, sometimes not
            old, new = draw(st.sampled_from(NB201_OPS)), draw(st.sampled_from([*NB201_OPS, "conv"]))
            text = text.replace(old, new, 1)
        elif action == "insert":
            text = text[:at] + draw(_CELL_TOKENS) + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 4)) :]
        elif action == "replace":
            text = text[:at] + draw(_CELL_TOKENS) + text[at + 1 :]
        else:
            text = "+".join(reversed(text.split("+")))
    return text


def assert_cell_round_trips(text: Any) -> None:
    space = CellSpace()
    try:
        cell = space.from_arch_str(text)
    except SearchSpaceError as error:
        event(f"refused: {error.problem[:40]}")
        return
    event("parsed")
    assert space.to_arch_str(cell) == text
    assert space.from_index(space.to_index(cell)) == cell


@FUZZ
@given(st.one_of(mutated_cell(), st.text(max_size=40), VALUES))
def test_cell_strings(text: Any) -> None:
    assert_cell_round_trips(text)
