"""Experiments: one YAML document naming the space, task, optimizer and budget of a search.

A document, e.g. ``examples/digits.yaml``::

    name: digits-evolution
    space: {name: dag-cnn, max_nodes: 4, widths: [16, 32]}
    task: {name: train, dataset: digits, epochs: 4, learning_rate: 0.1, seed: 0}
    optimizer: {name: regularized-evolution, population_size: 8, sample_size: 3, seed: 0}
    max_trials: 24
    store: ./runs/digits

`load_experiment` validates it completely, builds the space and the task, and checks that
the optimizer can be built, without writing anything. Every mistake raises `ExperimentError`
naming the key at fault (``optimizer.population_size``). `Experiment.to_dict` returns the
document with every default filled in, which the driver stores with its checkpoints so that
``load_experiment(experiment.to_dict())`` rebuilds the same search.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import inspect
import json
import math
import numbers
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from morphml_dask.config import config_value
from morphml_dask.exceptions import ExperimentError, MorphMLError
from morphml_dask.optim import (
    ASHA,
    BaseOptimizer,
    BayesianOptimization,
    GeneticAlgorithm,
    RandomSearch,
    RegularizedEvolution,
)
from morphml_dask.space import BaseSearchSpace, CellSpace, DagSpace
from morphml_dask.tasks import BaseTask, NB201TabularTask, TrainingTask, open_xarray_dataset

__all__ = ["Experiment", "load_experiment"]

FORMAT_VERSION = 1
DEFAULT_EPOCHS = 12
TRAIN_TASK = "train"
Check = Callable[[Any, str], Any]


@dataclass(frozen=True)
class Experiment:
    """A validated experiment: its normalized document and the objects built from it.

    Build one with `load_experiment`. Two experiments are equal when their documents are.

    Attributes
    ----------
    document
        The normalized document, every default filled in; see `to_dict`.
    space
        The search space the document describes.
    task
        The task every trial runs.
    """

    document: dict[str, Any]
    space: BaseSearchSpace = field(compare=False, repr=False)
    task: BaseTask = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return str(self.document["name"])

    @property
    def max_trials(self) -> int:
        return int(self.document["max_trials"])

    @property
    def store_url(self) -> str:
        """The local path or fsspec URL of the experiment store."""
        return str(self.document["store"])

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec options of the store (credentials, endpoint), a fresh copy."""
        return copy.deepcopy(self.document["storage_options"])

    @property
    def gpus_per_trial(self) -> float:
        """GPU resources each trial asks for; 0 for CPU trials."""
        value: float = self.document["gpus_per_trial"]
        return value

    def make_optimizer(self) -> BaseOptimizer:
        """A fresh optimizer from the optimizer section, with the space and max_trials.

        Each call builds a new one, e.g. to load a checkpoint into with
        `BaseOptimizer.load_state_dict`.
        """
        return _make_optimizer(self.document, self.space)

    def to_dict(self) -> dict[str, Any]:
        """The normalized document, JSON-ready; `load_experiment` reads it back as equal."""
        return copy.deepcopy(self.document)

    def __hash__(self) -> int:
        return hash(json.dumps(self.document, sort_keys=True))

    def __repr__(self) -> str:
        doc = self.document
        return (
            f"Experiment(name={doc['name']!r}, space={doc['space']['name']!r}, "
            f"task={doc['task']['name']!r}, optimizer={doc['optimizer']['name']!r}, "
            f"max_trials={doc['max_trials']}, store={doc['store']!r})"
        )


def load_experiment(source: str | os.PathLike[str] | Mapping[str, Any]) -> Experiment:
    """Read, validate and build an experiment.

    Parameters
    ----------
    source
        A path to a YAML file, YAML text (a string with a newline in it), or the document
        as a mapping (e.g. `Experiment.to_dict` output). The mapping is not modified.

    Returns
    -------
    Experiment

    Raises
    ------
    ExperimentError
        For a missing file, invalid YAML, or any key or value the format does not allow;
        the message names the key (``optimizer.population_size``) and how to fix it.
        Errors of the space, task and optimizer constructors are re-raised as
        `ExperimentError` with their message, chained.

    Examples
    --------
    >>> exp = load_experiment('''
    ... name: tiny
    ... space: {name: nb201-cell}
    ... task: {name: nb201-tabular, dataset: cifar10}
    ... optimizer: {name: random-search, seed: 0}
    ... max_trials: 10
    ... ''')
    >>> exp.make_optimizer().ask(1)[0].budget
    12
    """
    document = _read(source)
    return _build(document)


# -- reading ---------------------------------------------------------------------------------


def _read(source: object) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        document: object = source
        origin = "the mapping"
    elif isinstance(source, str) and "\n" in source:
        document, origin = _parse(source, "the YAML text"), "the YAML text"
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        document, origin = _parse(_read_file(path), str(path)), str(path)
    else:
        _fail(
            "unsupported experiment source",
            expected="a path to a YAML file, YAML text, or a mapping",
            received=_show(source),
            fix='call load_experiment("experiment.yaml")',
        )
    if not isinstance(document, Mapping):
        _fail(
            f"the experiment in {origin} is not a mapping",
            expected="a YAML mapping with name, space, task and optimizer keys",
            received=_show(document),
            fix="start from examples/digits.yaml",
        )
    return document


def _read_file(path: Path) -> str:
    fix = f"check the path; relative paths start from the working directory {Path.cwd()}"
    if not path.exists():
        _fail("experiment file not found", expected="a YAML file", received=str(path), fix=fix)
    if not path.is_file():
        _fail("experiment path is not a file", expected="a YAML file", received=str(path), fix=fix)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        _fail(
            "cannot read the experiment file",
            expected="a readable UTF-8 YAML file",
            received=f"{path}: {error}",
            fix="check the file's permissions and encoding",
        )


def _parse(text: str, origin: str) -> object:
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        # PyYAML raises ValueError for integers too long for Python to parse.
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(error, "problem", None) or str(error)
        _fail(
            f"invalid YAML in {origin}{where}",
            expected="a YAML mapping, as in examples/digits.yaml",
            received=f"{problem}{where}",
            fix=f"correct the YAML syntax{where} of {origin}",
        )


# -- checks ----------------------------------------------------------------------------------


def _fail(problem: str, *, expected: str, received: str, fix: str) -> NoReturn:
    raise ExperimentError(problem, expected=expected, received=received, fix=fix)


def _repr(value: object) -> str:
    """``repr(value)``, shortened; never fails (Python refuses to print huge integers)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__} too long to print>"
    return f"{text[:77]}..." if len(text) > 80 else text


def _key(value: object) -> str:
    """A key as it reads in a path: strings as they are, anything else as its repr."""
    plain = isinstance(value, str) and value != "" and value.strip() == value
    return value if isinstance(value, str) and plain else _repr(value)


def _show(value: object) -> str:
    return f"{_repr(value)} ({type(value).__name__})"


def _wrong(path: str, value: object, expected: str) -> NoReturn:
    fix = f"set {path} to {expected}"
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            float(value)
            fix += "; YAML reads numbers like 1e-3 as text, write 1.0e-3"
    _fail(f"invalid value for {path}", expected=expected, received=_show(value), fix=fix)


def _scalar(expected: str, test: Callable[[Any], bool], convert: Callable[[Any], Any]) -> Check:
    def check(value: Any, path: str) -> Any:
        if not test(value):
            _wrong(path, value, expected)
        return convert(value)

    return check


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _bounds(low: float | None, high: float | None, strict_low: bool = False) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" {'>' if strict_low else '>='} {low}"
    return ""


def _integer(low: int | None = None, high: int | None = None) -> Check:
    expected = f"an integer{_bounds(low, high)}"

    def check(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            _wrong(path, value, expected)
        x = int(value)
        if (low is not None and x < low) or (high is not None and x > high):
            _wrong(path, value, expected)
        if x >= 2**64:  # beyond any count, and beyond what JSON readers take
            _wrong(path, value, f"{expected}, below 2**64")
        return x

    return check


def _number(low: float | None = None, high: float | None = None, strict_low: bool = False) -> Check:
    def test(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return False
        try:
            x = float(v)
        except OverflowError:  # an integer beyond the floats
            return False
        above = low is None or (x > low if strict_low else x >= low)
        return math.isfinite(x) and above and (high is None or x <= high)

    def convert(v: Any) -> Any:
        return int(v) if isinstance(v, numbers.Integral) else float(v)

    return _scalar(f"a number{_bounds(low, high, strict_low)}", test, convert)


def _string(choices: tuple[str, ...] | None = None) -> Check:
    expected = f"one of {list(choices)}" if choices else "a non-empty string"
    test: Callable[[Any], bool] = (
        (lambda v: isinstance(v, str) and v in choices)
        if choices
        else (lambda v: isinstance(v, str) and v != "")
    )
    return _scalar(expected, test, str)


def _optional(check: Check) -> Check:
    def optional(value: Any, path: str) -> Any:
        return None if value is None else check(value, path)

    return optional


def _list_of(item: Check, what: str) -> Check:
    def check(value: Any, path: str) -> Any:
        if not isinstance(value, list | tuple) or len(value) == 0:
            _wrong(path, value, f"a non-empty list of {what}")
        return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

    return check


def _json(value: Any, path: str) -> Any:
    """A JSON-ready copy of ``value``: mappings with string keys, lists, scalars."""
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                _wrong(f"{path}.{_key(key)}", key, "a string key")
        return {k: _json(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return _integer(-(2**63), 2**64 - 1)(value, path)
    if isinstance(value, numbers.Real) and math.isfinite(_number()(value, path)):
        return float(value)
    _wrong(path, value, "text, a finite number, true/false, null, a list or a mapping")


def _options(value: Any, path: str) -> Any:
    if not isinstance(value, Mapping):
        _wrong(path, value, "a mapping of fsspec options, e.g. {anon: true}")
    return _json(value, path)


def _metric_bounds(value: Any, path: str) -> Any:
    if not isinstance(value, Mapping) or not value:
        _wrong(path, value, "a mapping of metric upper bounds, e.g. {params: 1000000}")
    bound = _number()
    return {_string()(k, f"{path} key"): bound(v, f"{path}.{k}") for k, v in value.items()}


def _objective_pair(value: Any, path: str) -> Any:
    if not isinstance(value, list | tuple) or len(value) != 2:
        _wrong(path, value, "a [metric, direction] pair, e.g. [params, minimize]")
    return [_string()(value[0], f"{path}[0]"), _DIRECTION(value[1], f"{path}[1]")]


_DIRECTION = _string(("maximize", "minimize"))
_SEED = _optional(_integer(0, 2**63 - 1))
_OBJECTIVES = _optional(_list_of(_objective_pair, "[metric, direction] pairs"))
_COMMON = {"objective": _string(), "direction": _DIRECTION, "seed": _SEED}


@dataclass(frozen=True)
class _Kind:
    """A space, task or optimizer the document can name: its class and its settings."""

    cls: type[Any]
    params: dict[str, Check]
    extra: tuple[str, ...] = ()  # settings of the document that the constructor does not take

    def defaults(self) -> dict[str, Any]:
        """The constructor's defaults of the settings the document may give."""
        params = inspect.signature(self.cls).parameters.items()
        return {
            k: p.default
            for k, p in params
            if k in self.params and p.default is not inspect.Parameter.empty
        }


_SPACES = {
    DagSpace.name: _Kind(
        DagSpace,
        {
            "max_nodes": _integer(1),
            "min_nodes": _integer(1),
            "ops": _list_of(_string(), "op names"),
            "kernels": _list_of(_integer(1), "kernel sizes"),
            "widths": _list_of(_integer(1), "channel counts"),
            "skip_prob": _number(0, 1),
        },
    ),
    CellSpace.name: _Kind(CellSpace, {}),
}
_TASKS = {
    TRAIN_TASK: _Kind(
        TrainingTask,
        {
            "dataset": _string(),
            "storage_options": _options,
            "epochs": _integer(1),
            "optimizer": _string(),
            "learning_rate": _number(0, strict_low=True),
            "momentum": _number(0),
            "weight_decay": _number(0),
            "batch_size": _integer(1),
            "schedule": _string(),
            "max_epochs": _optional(_integer(1)),
            "seed": _integer(0, 2**63 - 1),
        },
        extra=("epochs", "storage_options"),
    ),
    NB201TabularTask.name: _Kind(
        NB201TabularTask,
        {"dataset": _string(), "time_scale": _number(0), "epochs": _integer(1)},
        extra=("epochs",),
    ),
}
_OPTIMIZERS = {
    RandomSearch.name: _Kind(RandomSearch, {"budget": _integer(1), **_COMMON}),
    RegularizedEvolution.name: _Kind(
        RegularizedEvolution,
        {
            "population_size": _integer(2),
            "sample_size": _integer(1),
            "budget": _integer(1),
            "constraints": _optional(_metric_bounds),
            "objectives": _OBJECTIVES,
            "greedy_start": _integer(0),
            "avoid_repeats": _scalar("true or false", _is_bool, bool),
            **_COMMON,
        },
    ),
    GeneticAlgorithm.name: _Kind(
        GeneticAlgorithm,
        {
            "population_size": _integer(2),
            "elitism": _integer(0),
            "tournament_size": _integer(1),
            "crossover_rate": _number(0, 1),
            "mutation_rate": _number(0, 1),
            "budget": _integer(1),
            "objectives": _OBJECTIVES,
            **_COMMON,
        },
    ),
    ASHA.name: _Kind(
        ASHA,
        {
            "min_budget": _integer(1),
            "max_budget": _integer(1),
            "eta": _integer(2),
            "budgets": _optional(_list_of(_integer(1), "budgets")),
            "brackets": _integer(1),
            **_COMMON,
        },
    ),
    BayesianOptimization.name: _Kind(
        BayesianOptimization,
        {
            "budget": _integer(1),
            "n_initial": _integer(1),
            "n_candidates": _integer(1),
            "acquisition": _string(),
            "xi": _number(0),
            "kappa": _number(0),
            **_COMMON,
        },
    ),
}
_SECTIONS: dict[str, dict[str, _Kind]] = {
    "space": _SPACES,
    "task": _TASKS,
    "optimizer": _OPTIMIZERS,
}
_SCALARS: dict[str, Check] = {
    "version": _scalar(f"{FORMAT_VERSION}, the only format version", lambda v: v == 1, int),
    "name": _string(),
    "max_trials": _integer(1),
    "store": _string(),
    "storage_options": _options,
    "gpus_per_trial": _number(0),
}
_TOP = ["version", "name", "space", "task", "optimizer", *list(_SCALARS)[2:]]
_REQUIRED = {
    "name": "my-search",
    "space": "{name: dag-cnn, max_nodes: 4}",
    "task": "{name: train, dataset: digits, epochs: 4}",
    "optimizer": "{name: regularized-evolution, population_size: 8, seed: 0}",
}
# Top-level settings whose default is a morphml_dask config key.
_FROM_CONFIG = {"max_trials": "max-trials", "store": "store", "gpus_per_trial": "gpus-per-trial"}


def _where_else(key: object, here: str) -> str | None:
    """The section (or "the top level") where ``key`` is a valid setting, if any."""
    if here and key in _TOP:
        return "the top level"
    for section, kinds in _SECTIONS.items():
        if section != here and any(key in kind.params or key == "name" for kind in kinds.values()):
            return f"the {section} section"
    return None


def _check_keys(mapping: Mapping[Any, Any], valid: list[str], here: str) -> None:
    prefix = f"{here}." if here else ""
    for key in mapping:
        if key in valid:
            continue
        path = f"{prefix}{_key(key)}"
        elsewhere = _where_else(key, here)
        close = difflib.get_close_matches(_key(key), valid, n=1)
        if elsewhere:
            fix = f"move {key} to {elsewhere}"
        elif close:
            fix = f"rename {path} to {prefix}{close[0]}"
        else:
            fix = f"remove {path}"
        _fail(
            f"unknown key {path}",
            expected=f"keys among {sorted(valid)}",
            received=_repr(key),
            fix=fix,
        )


def _settings(value: Any, path: str, checks: Mapping[str, Check]) -> dict[str, Any]:
    _check_keys(value, list(checks), path)
    return {key: checks[key](v, f"{path}.{key}") for key, v in value.items()}


def _from_config(key: str, path: str, check: Check) -> Any:
    return check(config_value(key), f"{path} (default from the dask config morphml.{key})")


@contextlib.contextmanager
def _building(section: str) -> Iterator[None]:
    """Re-raise a constructor's error as an `ExperimentError` that names the section."""
    try:
        yield
    except ExperimentError:
        raise
    except MorphMLError as error:
        raise ExperimentError(
            f"invalid {section} section: {error.problem}",
            expected=error.expected,
            received=error.received,
            fix=f"in {section}: {error.fix}",
        ) from error


# -- building --------------------------------------------------------------------------------


def _section(document: Mapping[str, Any], section: str) -> tuple[str, dict[str, Any]]:
    """The kind named by a section and its checked settings, without the name."""
    value, kinds = document[section], _SECTIONS[section]
    names = sorted(kinds)
    if not isinstance(value, Mapping):
        _wrong(section, value, f"a mapping with a name, e.g. {section}: {_REQUIRED[section]}")
    if "name" not in value:
        _fail(
            f"missing {section}.name",
            expected=f"a name among {names}",
            received=f"keys {sorted(map(_key, value))}",
            fix=f"add name: {names[0]} to the {section} section",
        )
    name = value["name"]
    if not isinstance(name, str) or name not in kinds:
        close = difflib.get_close_matches(_key(name), names, n=1)
        _fail(
            f"unknown {section}.name",
            expected=f"one of {names}",
            received=_repr(name),
            fix=f"set {section}.name to {close[0] if close else names[0]}"
            + ("" if close else f" or another of {names}"),
        )
    rest = {k: v for k, v in value.items() if k != "name"}
    return name, _settings(rest, section, kinds[name].params)


def _build(document: Mapping[str, Any]) -> Experiment:
    doc = _top_level(document)
    space_name, space_settings = _section(document, "space")
    space_kind = _SPACES[space_name]
    doc["space"] = {"name": space_name, **space_kind.defaults(), **space_settings}
    with _building("space"):
        space: BaseSearchSpace = space_kind.cls(**space_settings)

    task_name, task_settings = _section(document, "task")
    optimizer_name, optimizer_settings = _section(document, "optimizer")
    if task_name != TRAIN_TASK and space_name != CellSpace.name:
        _fail(
            f"the {task_name} task needs the {CellSpace.name} space",
            expected=f"space.name {CellSpace.name}",
            received=repr(space_name),
            fix=f"set space.name to {CellSpace.name}, or task.name to {TRAIN_TASK}",
        )
    doc["task"] = _task_doc(task_name, task_settings)
    doc["optimizer"] = _optimizer_doc(optimizer_name, optimizer_settings, doc["task"])
    optimizer = _make_optimizer(doc, space)  # the constructor checks the settings
    if task_name == TRAIN_TASK:
        budget = doc["optimizer"].get("budget")
        largest = max(optimizer.budgets) if isinstance(optimizer, ASHA) else budget
        _settle_max_epochs(doc["task"], largest, optimizer_name)
    doc = {key: doc[key] for key in _TOP}  # in the order of the format
    doc = json.loads(json.dumps(doc))  # JSON-ready: tuples of defaults become lists
    return Experiment(doc, space, _build_task(doc["task"], _TASKS[task_name]))


def _top_level(document: Mapping[str, Any]) -> dict[str, Any]:
    """The checked top-level settings, defaults from the config filled in."""
    _check_keys(document, _TOP, "")
    missing = [key for key in _REQUIRED if key not in document]
    if missing:
        _fail(
            f"missing required key {missing[0]}",
            expected=f"the keys {list(_REQUIRED)}",
            received=f"keys {sorted(map(_key, document))}",
            fix=f"add {missing[0]}: {_REQUIRED[missing[0]]}",
        )
    doc: dict[str, Any] = {"version": FORMAT_VERSION, "storage_options": {}}
    for key, check in _SCALARS.items():
        if key in document:
            doc[key] = check(document[key], key)
        elif key in _FROM_CONFIG:
            doc[key] = _from_config(_FROM_CONFIG[key], key, check)
    return doc


def _task_doc(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    doc = {"name": name, "epochs": DEFAULT_EPOCHS, **_TASKS[name].defaults()}
    if name == NB201TabularTask.name:
        doc["time_scale"] = _from_config("time-scale", "task.time_scale", _number(0))
    return doc | settings


def _optimizer_doc(name: str, settings: dict[str, Any], task_doc: dict[str, Any]) -> dict[str, Any]:
    kind, task_cls = _OPTIMIZERS[name], _TASKS[task_doc["name"]].cls
    filled = {"objective": task_cls.objective, "direction": task_cls.direction}
    defaults = kind.defaults()
    if "budget" in kind.params:
        filled["budget"] = task_doc["epochs"]
    elif settings.get("budgets") is not None:  # ASHA's rungs, listed: no ladder to make
        del defaults["min_budget"], defaults["max_budget"]
    elif "max_budget" not in settings:
        filled["max_budget"] = task_doc["epochs"]
    return {"name": name, **defaults, **filled, **settings}


def _make_optimizer(document: Mapping[str, Any], space: BaseSearchSpace) -> BaseOptimizer:
    settings = copy.deepcopy(document["optimizer"])
    cls = _OPTIMIZERS[settings.pop("name")].cls
    with _building("optimizer"):
        optimizer: BaseOptimizer = cls(space, max_trials=document["max_trials"], **settings)
    return optimizer


def _settle_max_epochs(task_doc: dict[str, Any], largest: int, optimizer_name: str) -> None:
    """ASHA continues trials: one learning-rate schedule must span its largest budget."""
    max_epochs = task_doc["max_epochs"]
    if max_epochs is None and optimizer_name == ASHA.name:
        task_doc["max_epochs"] = largest
    elif max_epochs is not None and max_epochs < largest:
        _fail(
            "invalid value for task.max_epochs",
            expected=f"at least the largest budget the optimizer asks for, {largest}",
            received=repr(max_epochs),
            fix=f"set task.max_epochs to {largest} or more, or remove it",
        )


def _build_task(settings: Mapping[str, Any], kind: _Kind) -> BaseTask:
    kwargs = {k: v for k, v in settings.items() if k != "name" and k not in kind.extra}
    if kind.cls is TrainingTask:
        kwargs["dataset"] = _dataset(settings)
    with _building("task"):
        task: BaseTask = kind.cls(**kwargs)
    return task


def _dataset(settings: Mapping[str, Any]) -> Any:
    url, options = settings["dataset"], settings.get("storage_options")
    if url == "digits":
        if options:
            _wrong("task.storage_options", options, "absent: digits ships with scikit-learn")
        return url
    if "://" not in url and not url.rstrip("/").endswith(".zarr"):
        _wrong(
            "task.dataset",
            url,
            "'digits' or a Zarr store URL with a scheme or a .zarr suffix "
            "(s3://bucket/images.zarr, ./data/images.zarr)",
        )
    with _building("task"):
        try:
            return open_xarray_dataset(url, storage_options=options or None, seed=settings["seed"])
        except MorphMLError:
            raise
        except Exception as error:  # any failure to read a store the user named
            _fail(
                "cannot open the Zarr dataset of task.dataset",
                expected="a readable Zarr store with images and labels variables",
                received=f"{url!r}: {type(error).__name__}: {error}"[:300],
                fix="check the URL and task.storage_options (credentials, endpoint_url)",
            )
