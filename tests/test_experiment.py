"""Experiment documents: the examples build, documents round-trip, every mistake is named."""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import pickle
from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morphml_dask.exceptions import (
    ExperimentError,
    MorphMLError,
    OptimizerError,
    SearchSpaceError,
    TaskError,
)
from morphml_dask.experiment import Experiment, load_experiment
from morphml_dask.optim import (
    ASHA,
    BayesianOptimization,
    GeneticAlgorithm,
    RandomSearch,
    RegularizedEvolution,
)
from morphml_dask.registry import SECTIONS, kinds
from morphml_dask.space import CellSpace, DagSpace
from morphml_dask.tasks import NB201TabularTask, TrainingTask
from morphml_dask.trial import TrialResult

EXAMPLES = Path(__file__).parents[1] / "examples"
DIGITS = EXAMPLES / "digits.yaml"
NB201 = EXAMPLES / "nb201.yaml"


def nb201_doc(**changes: Any) -> dict[str, Any]:
    """A small valid document that builds in milliseconds (no dataset, no torch)."""
    doc: dict[str, Any] = {
        "name": "tiny",
        "space": {"name": "nb201-cell"},
        "task": {"name": "nb201-tabular", "dataset": "cifar10"},
        "optimizer": {"name": "regularized-evolution", "population_size": 4, "seed": 0},
        "max_trials": 10,
    }
    doc.update(changes)
    return doc


def digits_doc() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DIGITS.read_text())
    return document


def with_section(section: str, **changes: Any) -> dict[str, Any]:
    doc = nb201_doc()
    doc[section] = {**doc[section], **changes}
    return doc


# -- the examples and round trips ------------------------------------------------------------


def test_the_digits_example_builds_what_it_says() -> None:
    exp = load_experiment(DIGITS)
    assert exp.name == "digits-evolution"
    assert isinstance(exp.space, DagSpace)
    assert (exp.space.max_nodes, exp.space.widths) == (4, (16, 32))
    assert isinstance(exp.task, TrainingTask)
    assert (exp.task.dataset.name, exp.task.learning_rate, exp.task.seed) == ("digits", 0.1, 0)
    optimizer = exp.make_optimizer()
    assert isinstance(optimizer, RegularizedEvolution)
    assert (optimizer.population_size, optimizer.sample_size, optimizer.budget) == (8, 3, 4)
    assert (optimizer.max_trials, optimizer.seed) == (24, 0)
    assert (exp.max_trials, exp.store_url, exp.storage_options, exp.gpus_per_trial) == (
        24,
        "./runs/digits",
        {},
        0,
    )


def test_the_nb201_example_builds_what_it_says() -> None:
    exp = load_experiment(str(NB201))
    assert isinstance(exp.space, CellSpace)
    assert isinstance(exp.task, NB201TabularTask)
    assert (exp.task.dataset, exp.task.time_scale) == ("cifar10", 0.0005)
    optimizer = exp.make_optimizer()
    assert isinstance(optimizer, ASHA)
    assert (optimizer.budgets, optimizer.eta, optimizer.max_trials) == ((12, 200), 3, 200)
    assert (exp.store_url, exp.max_trials) == ("./runs/nb201", 200)
    assert "max_budget" not in exp.to_dict()["optimizer"]  # ignored beside budgets: left out


@pytest.mark.parametrize("source", [DIGITS, NB201])
def test_documents_round_trip(source: Path) -> None:
    exp = load_experiment(source)
    document = exp.to_dict()
    assert json.loads(json.dumps(document)) == document  # JSON-ready, as checkpoints need
    again = load_experiment(document)
    assert again == exp
    assert again.to_dict() == document
    assert hash(again) == hash(exp)
    assert load_experiment(yaml.safe_dump(document)) == exp  # YAML text, too


def test_loading_does_not_modify_the_mapping_and_to_dict_is_a_copy() -> None:
    doc = nb201_doc()
    before = copy.deepcopy(doc)
    exp = load_experiment(doc)
    assert doc == before
    exp.to_dict()["optimizer"]["population_size"] = 99
    exp.storage_options["key"] = "x"
    assert exp.make_optimizer().population_size == 4  # type: ignore[attr-defined]
    assert exp.storage_options == {}


def test_the_normalized_document_fills_every_default() -> None:
    document = load_experiment(nb201_doc()).to_dict()
    assert list(document) == [
        "version",
        "name",
        "space",
        "task",
        "optimizer",
        "pruner",
        "max_trials",
        "store",
        "storage_options",
        "gpus_per_trial",
        "python_path",
    ]
    assert document["pruner"] is None  # none named: every trial trains to its budget
    assert document["python_path"] == []  # a document that is no file has no folder
    assert document["optimizer"] == {
        "name": "regularized-evolution",
        "population_size": 4,
        "sample_size": 3,
        "budget": 12,
        "constraints": None,
        "objectives": None,
        "greedy_start": 0,
        "avoid_repeats": False,
        "inherit_weights": False,
        "child_budget": None,
        "warmup": 0,
        "warmup_proxy": "synflow",
        "warmup_keep": None,
        "objective": "val_accuracy",
        "direction": "maximize",
        "seed": 0,
    }
    assert document["task"] == {
        "name": "nb201-tabular",
        "epochs": 12,
        "dataset": "cifar10",
        "time_scale": 0.0,
    }


def test_make_optimizer_returns_a_fresh_optimizer_that_resumes_a_checkpoint() -> None:
    exp = load_experiment(nb201_doc())
    first, second = exp.make_optimizer(), exp.make_optimizer()
    assert first is not second
    trials = first.ask(3)
    assert [t.arch for t in second.ask(3)] == [t.arch for t in trials]  # same seed
    for trial in trials[:2]:
        first.tell(TrialResult.complete(trial.id, {"val_accuracy": 50.0}))
    resumed = exp.make_optimizer()
    resumed.load_state_dict(first.state_dict())
    assert [t.arch for t in resumed.ask(2)] == [t.arch for t in first.ask(2)]


def test_yaml_text_and_files_give_the_same_experiment(tmp_path: Path) -> None:
    text = yaml.safe_dump(nb201_doc())
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    from_file = load_experiment(path)
    assert from_file == load_experiment(str(path))
    # A file's folder goes on the import path; otherwise the two are the same experiment.
    assert from_file.to_dict()["python_path"] == [str(tmp_path.resolve())]
    assert load_experiment(text) == load_experiment({**nb201_doc(), "python_path": []})
    assert load_experiment(from_file.to_dict()) == from_file


@pytest.mark.parametrize(
    ("name", "cls", "settings"),
    [
        (RandomSearch.name, RandomSearch, {}),
        (RegularizedEvolution.name, RegularizedEvolution, {"population_size": 3}),
        (GeneticAlgorithm.name, GeneticAlgorithm, {"population_size": 4, "elitism": 1}),
        (ASHA.name, ASHA, {"eta": 2}),
        (BayesianOptimization.name, BayesianOptimization, {"n_initial": 2}),
    ],
)
def test_every_optimizer_can_be_named(name: str, cls: type, settings: dict[str, Any]) -> None:
    exp = load_experiment(nb201_doc(optimizer={"name": name, "seed": 1, **settings}))
    optimizer = exp.make_optimizer()
    assert isinstance(optimizer, cls)
    assert (optimizer.max_trials, optimizer.seed) == (10, 1)
    assert len(optimizer.ask(2)) >= 1


def test_every_constructor_setting_is_part_of_the_format() -> None:
    for section in SECTIONS:
        for name, kind in kinds(section).items():
            params = set(inspect.signature(kind.factory).parameters) - {"space", "max_trials"}
            assert params <= set(kind.keys), f"{section} {name}: {params - set(kind.keys)}"
    assert set(kinds("optimizer")) == {
        c.name
        for c in (RandomSearch, RegularizedEvolution, GeneticAlgorithm, ASHA, BayesianOptimization)
    }


# -- defaults: the task's epochs, the config -------------------------------------------------


def test_the_budget_defaults_to_the_task_epochs() -> None:
    exp = load_experiment(
        with_section("task", epochs=50) | {"optimizer": {"name": "random-search"}}
    )
    assert exp.make_optimizer().budget == 50  # type: ignore[attr-defined]
    exp = load_experiment(nb201_doc(optimizer={"name": "random-search", "budget": 200}))
    assert exp.make_optimizer().budget == 200  # type: ignore[attr-defined]


def test_asha_on_a_training_task_spans_one_learning_rate_schedule() -> None:
    doc = digits_doc()
    doc["optimizer"] = {"name": "asha", "min_budget": 1, "eta": 2}
    exp = load_experiment(doc)
    assert exp.make_optimizer().budgets == (1, 2, 4)  # type: ignore[attr-defined]
    assert exp.task.max_epochs == 4  # type: ignore[attr-defined]
    assert exp.to_dict()["task"]["max_epochs"] == 4
    doc["task"]["max_epochs"] = 3
    with pytest.raises(
        ExperimentError,
        match=r"invalid value for task.max_epochs(.|\n)*largest budget the optimizer asks for, 4",
    ):
        load_experiment(doc)


def test_missing_top_level_settings_come_from_the_dask_config() -> None:
    doc = nb201_doc()
    del doc["max_trials"]
    with dask.config.set(
        {
            "morphml.max-trials": 33,
            "morphml.store": "memory://runs",
            "morphml.gpus-per-trial": 0.5,
            "morphml.time-scale": 0.01,
        }
    ):
        exp = load_experiment(doc)
        assert load_experiment(nb201_doc(max_trials=5, store="here")).max_trials == 5
    assert (exp.max_trials, exp.store_url, exp.gpus_per_trial) == (33, "memory://runs", 0.5)
    assert exp.task.time_scale == 0.01  # type: ignore[attr-defined]
    assert load_experiment(exp.to_dict()) == exp  # the defaults are written down


def test_a_config_default_is_read_only_when_the_document_leaves_the_key_out() -> None:
    with dask.config.set({"morphml.time-scale": -1}):
        exp = load_experiment(with_section("task", time_scale=0.5))
        with pytest.raises(
            ExperimentError,
            match=r"invalid value for task\.time_scale \(default from the dask config "
            r"morphml\.time-scale\)(.|\n)*received: -1 \(int\)(.|\n)*fix: set task\.time_scale "
            r"\(default from the dask config morphml\.time-scale\) to e\.g\. 0\.001",
        ):
            load_experiment(nb201_doc())
    assert exp.task.time_scale == 0.5  # type: ignore[attr-defined]


def test_numpy_values_and_tuples_normalize_to_json() -> None:
    doc = digits_doc()
    doc["space"]["widths"] = (np.int64(16), 32)
    doc["optimizer"]["population_size"] = np.int64(8)
    doc["task"]["learning_rate"] = np.float32(0.25)
    document = load_experiment(doc).to_dict()
    assert document["space"]["widths"] == [16, 32]
    assert type(document["optimizer"]["population_size"]) is int
    assert (document["task"]["learning_rate"], type(document["task"]["learning_rate"])) == (
        0.25,
        float,
    )
    assert json.loads(json.dumps(document)) == document
    assert load_experiment(document).to_dict() == document


def test_a_bad_config_default_is_named_as_such() -> None:
    doc = nb201_doc()
    del doc["max_trials"]
    with (
        dask.config.set({"morphml.max-trials": "many"}),
        pytest.raises(
            ExperimentError,
            match=r"max_trials \(default from the dask config morphml.max-trials\)",
        ),
    ):
        load_experiment(doc)


def test_a_zarr_dataset_is_opened_with_its_storage_options(tmp_path: Path) -> None:
    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(0)
    images = rng.random((30, 8, 8)).astype("float32")
    labels = np.arange(30) % 3
    url = str(tmp_path / "images.zarr")
    data = {"images": (("sample", "h", "w"), images), "labels": ("sample", labels)}
    xr.Dataset(data).to_zarr(url, zarr_format=2)
    doc = digits_doc()
    doc["task"] |= {"dataset": url, "storage_options": {}}
    exp = load_experiment(doc)
    assert exp.task.dataset.name == url  # type: ignore[attr-defined]
    assert exp.task.dataset.num_classes == 3  # type: ignore[attr-defined]
    assert exp.to_dict()["task"]["storage_options"] == {}
    assert load_experiment(exp.to_dict()) == exp


def test_loading_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    load_experiment(DIGITS)
    load_experiment(NB201)
    doc = digits_doc()
    doc["task"]["dataset"] = "missing/images.zarr"
    with pytest.raises(ExperimentError):
        load_experiment(doc)
    assert list(tmp_path.iterdir()) == []


# -- every mistake, named --------------------------------------------------------------------


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        ExperimentError, match=r"experiment file not found(.|\n)*received: .*nope.yaml"
    ):
        load_experiment(tmp_path / "nope.yaml")
    with pytest.raises(ExperimentError, match="experiment path is not a file"):
        load_experiment(tmp_path)


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ExperimentError, match="cannot read the experiment file"):
        load_experiment(path)


def test_yaml_syntax_errors_show_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nspace: {name: dag-cnn\ntask: [1, 2\n")
    with pytest.raises(
        ExperimentError,
        match=r"invalid YAML in .*broken.yaml at line \d+, column \d+(.|\n)*fix: correct the YAML",
    ):
        load_experiment(path)
    with pytest.raises(ExperimentError, match=r"invalid YAML in the YAML text at line 2, column"):
        load_experiment("name: x\n  - bad: [\n")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("- name\n- space\n", r"the experiment in the YAML text is not a mapping"),
        ("# only a comment\n", r"is not a mapping(.|\n)*received: None"),
        (42, r"unsupported experiment source(.|\n)*received: 42 \(int\)"),
        ([nb201_doc()], r"unsupported experiment source"),
    ],
)
def test_documents_that_are_not_mappings(source: Any, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        load_experiment(source)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_trial": 5}, r"unknown key max_trial(.|\n)*fix: rename max_trial to max_trials"),
        ({"epochs": 5}, r"unknown key epochs(.|\n)*fix: move epochs to the task section"),
        ({"zzz": 1}, r"unknown key zzz(.|\n)*fix: remove zzz"),
        ({3: 1}, r"unknown key 3"),
    ],
)
def test_unknown_top_level_keys(changes: dict[Any, Any], message: str) -> None:
    doc: dict[Any, Any] = nb201_doc()
    doc.update(changes)
    with pytest.raises(ExperimentError, match=message):
        load_experiment(doc)


@pytest.mark.parametrize(
    ("section", "changes", "message"),
    [
        (
            "optimizer",
            {"populaton_size": 8},
            r"unknown key optimizer.populaton_size(.|\n)*rename optimizer.populaton_size to "
            r"optimizer.population_size",
        ),
        (
            "optimizer",
            {"max_trials": 8},
            r"unknown key optimizer.max_trials(.|\n)*fix: move max_trials to the top level",
        ),
        (
            "optimizer",
            {"epochs": 8},
            r"unknown key optimizer.epochs(.|\n)*fix: move epochs to the task section",
        ),
        ("task", {"time_scal": 1}, r"rename task.time_scal to task.time_scale"),
        ("space", {"max_nodes": 4}, r"unknown key space.max_nodes(.|\n)*keys among \[\]"),
    ],
)
def test_unknown_section_keys(section: str, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        load_experiment(with_section(section, **changes))


@pytest.mark.parametrize("section", ["name", "space", "task", "optimizer"])
def test_missing_required_sections(section: str) -> None:
    doc = nb201_doc()
    del doc[section]
    with pytest.raises(
        ExperimentError, match=rf"missing required key {section}(.|\n)*fix: add {section}: "
    ):
        load_experiment(doc)


@pytest.mark.parametrize(
    ("section", "value", "message"),
    [
        ("space", "dag-cnn", r"invalid value for space(.|\n)*a mapping with a name"),
        ("task", {"dataset": "cifar10"}, r"missing task.name(.|\n)*nb201-tabular"),
        (
            "space",
            {"name": "dag"},
            r"unknown space.name(.|\n)*one of \['dag-cnn', 'function', 'nb201-cell'\](.|\n)*"
            r"set space.name to dag-cnn",
        ),
        ("task", {"name": "training"}, r"unknown task.name(.|\n)*set task.name to train"),
        (
            "optimizer",
            {"name": "regularised-evolution"},
            r"unknown optimizer.name(.|\n)*one of \['asha', 'bayesian-optimization', "
            r"'genetic-algorithm', 'random-search', 'regularized-evolution'\]"
            r"(.|\n)*set optimizer.name to regularized-evolution",
        ),
        ("optimizer", {"name": ["asha"]}, r"unknown optimizer.name(.|\n)*received: \['asha'\]"),
    ],
)
def test_section_names(section: str, value: Any, message: str) -> None:
    with pytest.raises(ExperimentError, match=message):
        load_experiment(nb201_doc(**{section: value}))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("optimizer.population_size", "eight", r"an integer >= 2(.|\n)*'eight' \(str\)"),
        ("optimizer.population_size", True, r"an integer >= 2(.|\n)*True \(bool\)"),
        ("optimizer.population_size", 8.0, r"an integer >= 2"),
        ("optimizer.seed", -1, r"invalid value for optimizer.seed"),
        ("optimizer.direction", "up", r"one of \['maximize', 'minimize'\]"),
        ("optimizer.objectives", [["params"]], r"optimizer.objectives\[0\](.|\n)*pair"),
        ("optimizer.objectives", [["params", "down"]], r"optimizer.objectives\[0\]\[1\]"),
        ("optimizer.constraints", {"params": "big"}, r"optimizer.constraints.params"),
        ("task.time_scale", float("nan"), r"invalid value for task.time_scale(.|\n)*>= 0"),
        ("task.epochs", 0, r"invalid value for task.epochs(.|\n)*an integer >= 1"),
        ("name", 2024, r"invalid value for name(.|\n)*a non-empty string"),
        ("max_trials", 0, r"invalid value for max_trials(.|\n)*an integer >= 1"),
        ("gpus_per_trial", -1, r"invalid value for gpus_per_trial(.|\n)*a number >= 0"),
        ("gpus_per_trial", 10**400, r"invalid value for gpus_per_trial"),
        ("max_trials", 2**64, r"invalid value for max_trials(.|\n)*an integer >= 1, below 2\*\*64"),
        pytest.param(
            "max_trials", 10**5000, r"received: <int too long to print> \(int\)", id="huge-int"
        ),
        ("storage_options", {"port": 2**64}, r"storage_options.port"),
        ("store", "", r"invalid value for store(.|\n)*a non-empty string"),
        ("storage_options", ["anon"], r"invalid value for storage_options(.|\n)*fsspec options"),
        ("storage_options", {"anon": {1: True}}, r"invalid value for storage_options.anon.1"),
        ("storage_options", {"when": float("inf")}, r"storage_options.when"),
        ("version", 2, r"invalid value for version(.|\n)*1, the only format version"),
    ],
)
def test_wrong_values_name_their_path(path: str, value: Any, message: str) -> None:
    doc = nb201_doc()
    *parents, key = path.split(".")
    target = doc
    for parent in parents:
        target = target[parent]
    target[key] = value
    with pytest.raises(ExperimentError, match=message):
        load_experiment(doc)


def test_wrong_values_in_the_training_task() -> None:
    doc = digits_doc()
    doc["space"]["widths"] = [16, "32"]
    with pytest.raises(ExperimentError, match=r"invalid value for space.widths\[1\]"):
        load_experiment(doc)
    doc = digits_doc()
    doc["task"]["learning_rate"] = "1e-3"
    with pytest.raises(
        ExperimentError,
        match=r"invalid value for task.learning_rate(.|\n)*a number > 0(.|\n)*write 1.0e-3",
    ):
        load_experiment(doc)
    doc["task"]["learning_rate"] = 0
    with pytest.raises(ExperimentError, match=r"task.learning_rate(.|\n)*a number > 0"):
        load_experiment(doc)


@pytest.mark.parametrize(
    ("section", "changes", "message", "cause"),
    [
        (
            "optimizer",
            {"population_size": 4, "sample_size": 5},
            r"invalid value for optimizer\.sample_size(.|\n)*from 1 to population_size \(4\)"
            r"(.|\n)*received: 5 \(int\)(.|\n)*fix: set optimizer\.sample_size to e\.g\. 3",
            OptimizerError,
        ),
        (
            "optimizer",
            {"name": "asha", "budgets": [200, 12]},
            r"invalid value for optimizer\.budgets(.|\n)*strictly increasing"
            r"(.|\n)*received: \[200, 12\] \(list\)(.|\n)*fix: in optimizer: list each rung",
            OptimizerError,
        ),
        (
            "optimizer",
            {"name": "genetic-algorithm", "objectives": [["params", "minimize"]]},
            r"invalid optimizer section: objective is not one of the objectives"
            r"(.|\n)*fix: in optimizer: pass objective='params'",
            OptimizerError,
        ),
        (
            "task",
            {"dataset": "mnist"},
            r"invalid value for task\.dataset: unknown NAS-Bench-201 dataset(.|\n)*cifar100"
            r"(.|\n)*'mnist' \(str\)",
            TaskError,
        ),
    ],
)
def test_constructor_errors_keep_their_message(
    section: str, changes: dict[str, Any], message: str, cause: type[Exception]
) -> None:
    doc = nb201_doc()
    doc[section] = {"name": doc[section]["name"], **changes}
    with pytest.raises(ExperimentError, match=message) as caught:
        load_experiment(doc)
    assert isinstance(caught.value.__cause__, cause)


def test_space_constructor_errors_keep_their_message() -> None:
    doc = digits_doc()
    doc["space"] |= {"min_nodes": 5, "max_nodes": 4}
    with pytest.raises(
        ExperimentError,
        match=r"invalid space section: invalid DagSpace setting max_nodes/min_nodes",
    ) as caught:
        load_experiment(doc)
    assert isinstance(caught.value.__cause__, SearchSpaceError)
    doc = digits_doc()
    doc["task"]["optimizer"] = "rmsprop"
    with pytest.raises(
        ExperimentError,
        match=r"invalid value for task\.optimizer(.|\n)*'sgd', 'adam'(.|\n)*'rmsprop' \(str\)",
    ):
        load_experiment(doc)


def test_the_tabular_task_needs_its_space() -> None:
    with pytest.raises(
        ExperimentError,
        match=r"the nb201-tabular task needs the nb201-cell space(.|\n)*received: 'dag-cnn'",
    ):
        load_experiment(nb201_doc(space={"name": "dag-cnn"}))


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"dataset": "mnist"}, r"invalid value for task.dataset(.|\n)*'digits' or a Zarr store"),
        (
            {"storage_options": {"anon": True}},
            r"invalid value for task.storage_options(.|\n)*digits ships with scikit-learn",
        ),
        (
            {"dataset": "does/not/exist.zarr"},
            r"invalid task section: cannot open the Zarr dataset(.|\n)*does/not/exist.zarr",
        ),
    ],
)
def test_bad_datasets(task: dict[str, Any], message: str) -> None:
    doc = digits_doc()
    doc["task"] |= task
    with pytest.raises(ExperimentError, match=message):
        load_experiment(doc)


# -- your own code: function sections, import paths, the experiment's folder ---------------

_USER_MODULE = """
from morphml_dask.space import CellSpace
from morphml_dask.tasks import NB201TabularTask


def space(s):
    return {"width": s.choice("width", [8, 16]), "lr": s.float("lr", 1e-3, 1e-1, log=True)}


def fit(config, ctx):
    ctx.report(1, val_loss=config["lr"])


class SmallCells(CellSpace):
    \"\"\"A user's space class.\"\"\"


class ScaledLookup(NB201TabularTask):
    \"\"\"A user's task class, with a setting of its own.\"\"\"

    def __init__(self, scale: float = 1.0, dataset: str = "cifar10") -> None:
        super().__init__(dataset)
        self.scale = scale
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of the user's, with a unique name, written next to the experiment files."""
    import sys
    import uuid

    monkeypatch.setattr(sys, "path", list(sys.path))  # loading puts the folder there
    name = f"user_code_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(_USER_MODULE)
    return name


def _write(folder: Path, document: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _function_doc(module: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": "own-code",
        "space": {"function": f"{module}:space"},
        "task": {"function": f"{module}:fit", "objective": "val_loss", "direction": "minimize"},
        "optimizer": {"name": "regularized-evolution", "population_size": 4, "seed": 0},
        "max_trials": 8,
        **changes,
    }


def test_function_sections_name_the_users_functions_next_to_the_experiment(
    tmp_path: Path, user_module: str
) -> None:
    from morphml_dask.space import FunctionSpace
    from morphml_dask.tasks import FunctionTask

    exp = load_experiment(_write(tmp_path, _function_doc(user_module)))
    assert isinstance(exp.space, FunctionSpace)
    assert isinstance(exp.task, FunctionTask)
    assert (exp.task.objective, exp.task.direction, exp.task.seed) == ("val_loss", "minimize", 0)
    document = exp.to_dict()
    assert document["space"] == {"name": "function", "function": f"{user_module}:space"}
    assert document["task"] == {
        "name": "function",
        "function": f"{user_module}:fit",
        "objective": "val_loss",
        "direction": "minimize",
        "seed": 0,
        "epochs": 12,
    }
    assert document["python_path"] == [str(tmp_path.resolve())]
    # The optimizer ranks by the task's objective, in its direction, for its epochs.
    assert document["optimizer"]["objective"] == "val_loss"
    assert document["optimizer"]["direction"] == "minimize"
    optimizer = exp.make_optimizer()
    trial = optimizer.ask(1)[0]
    assert trial.budget == 12 and set(trial.arch.value) == {"width", "lr"}  # type: ignore[union-attr]
    assert load_experiment(document) == exp
    assert load_experiment(json.loads(json.dumps(document))).to_dict() == document


def test_a_stored_document_loads_in_a_fresh_process_anywhere(
    tmp_path: Path, user_module: str
) -> None:
    """What `morphml resume URL` does: the checkpoint's document, from another folder."""
    import subprocess
    import sys

    experiment = _write(tmp_path / "exp", _function_doc(user_module))
    (tmp_path / f"{user_module}.py").rename(tmp_path / "exp" / f"{user_module}.py")
    document = load_experiment(experiment).to_dict()
    assert document["python_path"] == [str((tmp_path / "exp").resolve())]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import json, sys; from morphml_dask.experiment import load_experiment; "
        "exp = load_experiment(json.loads(sys.argv[1])); "
        "print(type(exp.space).__name__, exp.task.function, exp.make_optimizer().ask(1)[0].id)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(document)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["FunctionSpace", f"{user_module}:fit", "t000001"]


def test_python_path_folders_are_relative_to_the_experiment_file(
    tmp_path: Path, user_module: str
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / f"{user_module}.py").rename(tmp_path / "src" / f"{user_module}.py")
    path = _write(tmp_path / "experiments", _function_doc(user_module, python_path=["../src"]))
    exp = load_experiment(path)
    assert exp.to_dict()["python_path"] == [
        str((tmp_path / "experiments").resolve()),
        str((tmp_path / "src").resolve()),
    ]
    assert exp.task.function == f"{user_module}:fit"  # type: ignore[attr-defined]


def test_a_section_name_may_be_the_import_path_of_your_own_class(
    tmp_path: Path, user_module: str
) -> None:
    from morphml_dask.registry import get_kind, unregister_kind

    space_path, task_path = f"{user_module}:SmallCells", f"{user_module}:ScaledLookup"
    document = nb201_doc(
        space={"name": space_path},
        task={"name": task_path, "scale": 2.5, "epochs": 4},
        optimizer={"name": "random-search", "seed": 0},
    )
    try:
        exp = load_experiment(_write(tmp_path, document))
        assert type(exp.space).__name__ == "SmallCells"
        assert (type(exp.task).__name__, exp.task.scale) == ("ScaledLookup", 2.5)  # type: ignore[attr-defined]
        assert get_kind("space", space_path) is not None  # registered when first named
        normalized = exp.to_dict()
        assert normalized["space"]["name"] == space_path
        assert normalized["task"] == {
            "name": task_path,
            "epochs": 4,
            "scale": 2.5,
            "dataset": "cifar10",
        }
        assert exp.make_optimizer().ask(1)[0].budget == 4  # the task's epochs, as built-ins
        assert load_experiment(normalized) == exp
        with pytest.raises(ExperimentError, match=r"(?s)unknown key task\.scael.*rename"):
            load_experiment({**normalized, "task": {"name": task_path, "scael": 1.0}})
    finally:
        unregister_kind("space", space_path)
        unregister_kind("task", task_path)


def test_experiment_errors_cross_process_boundaries() -> None:
    with pytest.raises(ExperimentError) as caught:
        load_experiment(nb201_doc(max_trials=0))
    again = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(again, ExperimentError)
    assert str(again) == str(caught.value)


def test_experiment_is_frozen_and_shows_its_essentials() -> None:
    exp = load_experiment(nb201_doc(store="s3://bucket/runs"))
    with pytest.raises(AttributeError):
        exp.space = CellSpace()  # type: ignore[misc]
    assert isinstance(exp, Experiment)
    assert repr(exp) == (
        "Experiment(name='tiny', space='nb201-cell', task='nb201-tabular', "
        "optimizer='regularized-evolution', max_trials=10, store='s3://bucket/runs')"
    )


# -- fuzz: nothing but MorphMLError escapes --------------------------------------------------

_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789 ", max_size=12)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.sampled_from([0, 1, 2, 2**63, -(2**70), 10**400]),
    st.builds(pow, st.just(10), st.just(5000)),  # too long for Python to print
    st.floats(allow_nan=True, allow_infinity=True),
    _TEXT,
    st.sampled_from(
        ["asha", "dag-cnn", "nb201-cell", "train", "digits", "cifar10", "maximize", "sgd"]
    ),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(_TEXT, st.integers(-2, 2)), inner, max_size=4)
    ),
    max_leaves=8,
)
_SECTION_KEYS = sorted(
    {
        "name",
        *(key for section in SECTIONS for kind in kinds(section).values() for key in kind.keys),
    }
)
_TOP_KEYS = ["version", "name", "space", "task", "optimizer", "max_trials", "store"]


def _load(document: Any) -> None:
    with contextlib.suppress(MorphMLError):
        load_experiment(document)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_VALUES)
def test_random_documents_raise_only_morphml_errors(document: Any) -> None:
    if isinstance(document, str) and "\n" not in document:
        document = {"name": document}  # a bare string would be a path
    _load(document)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {},
        optional={
            key: st.one_of(
                _VALUES,
                st.dictionaries(st.sampled_from(_SECTION_KEYS), _VALUES, max_size=5),
            )
            for key in _TOP_KEYS
        },
    )
)
def test_documents_of_known_keys_raise_only_morphml_errors(document: dict[str, Any]) -> None:
    _load(document)


_MUTATION = st.tuples(
    st.sampled_from(["delete", "replace", "add"]),
    st.sampled_from(["", "space", "task", "optimizer"]),
    st.integers(0, 20),
    st.one_of(st.sampled_from(_SECTION_KEYS), _TEXT),
    _VALUES,
)


def _mutate(document: dict[str, Any], mutation: tuple[str, str, int, str, Any]) -> None:
    action, section, index, new_key, value = mutation
    target = document.get(section) if section else document
    if not isinstance(target, dict):
        return
    keys = sorted(target, key=str)
    if action == "add" or not keys:
        target[new_key] = value
    elif action == "delete":
        del target[keys[index % len(keys)]]
    else:
        target[keys[index % len(keys)]] = value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["nb201", "digits"]), st.lists(_MUTATION, min_size=1, max_size=3))
def test_mutations_of_valid_documents_raise_only_morphml_errors(
    base: str, mutations: list[tuple[str, str, int, str, Any]]
) -> None:
    document = nb201_doc() if base == "nb201" else digits_doc()
    for mutation in mutations:
        _mutate(document, mutation)
    _load(document)
    _load(yaml.safe_dump(document) if _dumpable(document) else document)


def _dumpable(document: Any) -> bool:
    try:
        yaml.safe_dump(document)
    except (yaml.YAMLError, ValueError):
        return False
    return True
