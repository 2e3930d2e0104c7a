"""The kind registry: built-in kinds register themselves, and a registered kind (by object or
by import path) is named, defaulted, checked and built like a built-in one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from morphml_dask.exceptions import ExperimentError, SearchSpaceError
from morphml_dask.experiment import load_experiment
from morphml_dask.optim import ASHA, RandomSearch
from morphml_dask.registry import (
    SECTIONS,
    Kind,
    Schema,
    get_kind,
    kinds,
    register_kind,
    resolve,
    unregister_kind,
)
from morphml_dask.space import CellSpace, DagSpace, space_from_dict
from morphml_dask.tasks import NB201TabularTask, TrainingTask
from morphml_dask.validation import check_int


def small_dag(depth: int = 3, widths: tuple[int, ...] = (8,)) -> DagSpace:
    """A user's space factory: its settings are its keyword parameters."""
    depth = check_int("depth", depth, low=1, high=8, error=SearchSpaceError)
    assert isinstance(widths, tuple), "the schema converts YAML lists"
    return DagSpace(max_nodes=depth, widths=widths)


def not_a_space(size: int = 1) -> object:
    return {"size": size}


@pytest.fixture
def registered() -> Iterator[list[tuple[str, str]]]:
    """Kinds a test registers, forgotten afterwards so that other tests see the built-ins."""
    added: list[tuple[str, str]] = []
    yield added
    for section, name in added:
        unregister_kind(section, name)


def register(added: list[tuple[str, str]], section: str, name: str, *args: Any) -> Kind:
    added.append((section, name))
    return register_kind(section, name, *args)


def document(**sections: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "custom",
        "space": {"name": "nb201-cell"},
        "task": {"name": "nb201-tabular", "dataset": "cifar10", "epochs": 30},
        "optimizer": {"name": "random-search", "seed": 0},
        "max_trials": 4,
    }
    return doc | sections


def test_the_built_in_kinds_register_themselves() -> None:
    assert SECTIONS == ("space", "task", "optimizer", "pruner")
    assert list(kinds("space")) == ["nb201-cell", "dag-cnn", "function"]
    assert set(kinds("task")) == {"train", "nb201-tabular", "function", "proxy"}
    assert set(kinds("optimizer")) >= {"asha", "random-search", "regularized-evolution"}
    assert set(kinds("pruner")) == {"median", "successive-halving", "hyperband"}
    assert get_kind("space", "dag-cnn") == Kind("space", "dag-cnn", DagSpace)
    assert get_kind("task", TrainingTask.name).factory is TrainingTask  # type: ignore[union-attr]
    assert get_kind("space", "nope") is None
    assert get_kind("space", ["dag-cnn"]) is None


def test_a_schema_declares_document_only_keys_defaults_and_the_task_it_fills_from() -> None:
    task = get_kind("task", NB201TabularTask.name)
    assert task is not None
    assert task.keys == ("dataset", "time_scale", "epochs")
    assert task.defaults() == {"epochs": 12, "dataset": "cifar10", "time_scale": 0.0}
    assert task.arguments({"dataset": "cifar100", "epochs": 5}) == {"dataset": "cifar100"}
    assert task.schema.requires_space == CellSpace.name
    asha = get_kind("optimizer", ASHA.name)
    assert asha is not None
    assert "space" not in asha.keys and "max_trials" not in asha.keys
    assert asha.schema.from_task == {"max_budget": "epochs"}


def test_a_kind_registered_by_import_path_is_imported_when_used(
    registered: list[tuple[str, str]],
) -> None:
    kind = register(
        registered,
        "optimizer",
        "random-by-path",
        "morphml_dask.optim:RandomSearch",
        Schema(from_task={"budget": "epochs"}),
    )
    assert kind.factory is RandomSearch
    exp = load_experiment(document(optimizer={"name": "random-by-path", "seed": 3}))
    optimizer = exp.make_optimizer()
    assert isinstance(optimizer, RandomSearch)
    assert (optimizer.budget, optimizer.seed, optimizer.max_trials) == (30, 3, 4)
    assert exp.to_dict()["optimizer"]["budget"] == 30
    assert load_experiment(exp.to_dict()) == exp


def test_a_registered_factory_is_named_defaulted_converted_and_checked(
    registered: list[tuple[str, str]],
) -> None:
    register(registered, "space", "small-dag", small_dag, Schema(convert={"widths": tuple}))
    doc = document(
        space={"name": "small-dag", "depth": 2, "widths": [8, 16]},
        task={"name": "train", "dataset": "digits", "epochs": 1},
    )
    exp = load_experiment(doc)
    assert isinstance(exp.space, DagSpace)
    assert (exp.space.max_nodes, exp.space.widths) == (2, (8, 16))
    assert exp.to_dict()["space"] == {"name": "small-dag", "depth": 2, "widths": [8, 16]}
    assert space_from_dict({"name": "small-dag", "depth": 4}).to_dict()["max_nodes"] == 4
    doc["space"]["depth"] = 9
    with pytest.raises(
        ExperimentError,
        match=r"invalid value for space\.depth(.|\n)*an integer from 1 to 8(.|\n)*"
        r"received: 9 \(int\)(.|\n)*fix: set space\.depth to an integer from 1 to 8",
    ) as caught:
        load_experiment(doc)
    assert isinstance(caught.value.__cause__, SearchSpaceError)
    doc["space"] = {"name": "small-dag", "dept": 2}
    with pytest.raises(ExperimentError, match=r"unknown key space\.dept(.|\n)*space\.depth"):
        load_experiment(doc)
    doc["space"] = {"name": "small-dag"}
    doc["optimizer"]["depth"] = 2
    with pytest.raises(ExperimentError, match=r"move depth to the space section"):
        load_experiment(doc)


def test_a_factory_that_makes_something_else_is_refused(
    registered: list[tuple[str, str]],
) -> None:
    register(registered, "space", "not-a-space", not_a_space)
    with pytest.raises(
        ExperimentError,
        match=r"the factory of the space 'not-a-space' made no BaseSearchSpace(.|\n)*"
        r"received: \{'size': 1\} \(dict\)(.|\n)*fix: return a BaseSearchSpace",
    ):
        load_experiment(document(space={"name": "not-a-space"}))


def test_registering_the_same_factory_again_replaces_it(
    registered: list[tuple[str, str]],
) -> None:
    first = register(registered, "space", "again", small_dag)
    second = register(registered, "space", "again", small_dag, Schema(convert={"widths": tuple}))
    assert first.target is second.target
    assert get_kind("space", "again") == second
    unregister_kind("space", "again")
    assert get_kind("space", "again") is None
    unregister_kind("space", "again")  # forgetting twice is harmless


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("model", "x", small_dag),
            r"unknown section 'model'(.|\n)*one of \['space', 'task', 'optimizer', 'pruner'\]"
            r"(.|\n)*received: 'model'(.|\n)*fix: call register_kind",
        ),
        (("space", "", small_dag), r"invalid kind name(.|\n)*a non-empty string(.|\n)*''"),
        (
            ("space", "x", 42),
            r"invalid kind factory(.|\n)*a callable or a 'module:attr' path(.|\n)*received: 42",
        ),
        (
            ("space", "dag-cnn", small_dag),
            r"the space name 'dag-cnn' is already registered(.|\n)*no other kind"
            r"(.|\n)*unregister_kind\('space', 'dag-cnn'\)",
        ),
    ],
)
def test_registration_mistakes(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        register_kind(*args)
    assert get_kind("space", "dag-cnn") == Kind("space", "dag-cnn", DagSpace)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("morphml_dask.optim", r"invalid import path(.|\n)*'package\.module:attribute'"),
        (
            "morphml_dask.no_such_module:Thing",
            r"cannot import 'morphml_dask.no_such_module:Thing'(.|\n)*ModuleNotFoundError"
            r"(.|\n)*fix: check the path",
        ),
        ("morphml_dask.optim:NoSuchOptimizer", r"(.|\n)*AttributeError(.|\n)*NoSuchOptimizer"),
    ],
)
def test_import_paths_that_name_nothing(path: str, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        resolve(path)
    assert resolve("morphml_dask.space:DagSpace.name") == "dag-cnn"


def test_a_kind_registered_by_a_broken_path_fails_when_named(
    registered: list[tuple[str, str]],
) -> None:
    register(registered, "optimizer", "missing", "morphml_dask.optim:NoSuchOptimizer")
    with pytest.raises(ExperimentError, match=r"cannot import 'morphml_dask.optim:NoSuch"):
        load_experiment(document(optimizer={"name": "missing"}))
    with pytest.raises(ExperimentError, match=r"unknown key task\.seeds(.|\n)*task\.seed"):
        load_experiment(document(task={"name": "train", "seeds": 1}))
