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

The ``name`` of each section picks a kind registered with
`morphml_dask.registry.register_kind`; the kind's constructor checks its settings, and this
module names the key of any error it raises. It checks the top-level keys itself.

Your own code comes in three ways: a section that gives ``function:`` instead of ``name:``
(``space: {function: "mypkg.spaces:mlp"}``, ``task: {function: "mypkg.train:fit",
objective: val_loss, direction: minimize}``), a ``name:`` that is the import path of your
subclass of `BaseSearchSpace`, `BaseTask` or `BaseOptimizer`, registered when first named,
and the folders of ``python_path`` (by default the experiment file's own), put on
``sys.path`` so that a module next to the experiment imports, in the driver and in the
worker processes of a local cluster.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import importlib
import json
import numbers
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from morphml_dask._experiment_files import read_document
from morphml_dask._fits import check_optimizer_fits_task
from morphml_dask.config import config_value
from morphml_dask.exceptions import ExperimentError, InputError
from morphml_dask.gpus import check_gpus_per_trial

# Importing the packages registers their built-in kinds.
from morphml_dask.optim import BaseOptimizer
from morphml_dask.prune import BasePruner
from morphml_dask.registry import SECTIONS, Kind, Schema, get_kind, kinds, register_kind, resolve
from morphml_dask.space import BaseSearchSpace
from morphml_dask.tasks import DEFAULT_EPOCHS, BaseTask, check_epochs
from morphml_dask.validation import (
    check_int,
    check_json,
    check_options,
    check_string,
    describe,
    invalid,
    key_of,
    key_text,
    short_repr,
)

__all__ = ["Experiment", "load_experiment"]

FORMAT_VERSION = 1


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
        """GPUs each trial needs: whole GPUs, a share of one (0.5: two trials per GPU), or 0
        for CPU trials."""
        value: float = self.document["gpus_per_trial"]
        return value

    def make_optimizer(self) -> BaseOptimizer:
        """A fresh optimizer from the optimizer section, with the space and max_trials.

        Each call builds a new one, e.g. to load a checkpoint into with
        `BaseOptimizer.load_state_dict`.
        """
        return _make_optimizer(self.document, self.space)

    def make_pruner(self) -> BasePruner | None:
        """A fresh pruner from the pruner section, or None when the document names none."""
        section = self.document.get("pruner")
        return None if section is None else _make_pruner(section)

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
    document, folder = read_document(source)
    return _build(document, folder)


# -- errors ----------------------------------------------------------------------------------


def _wrong(path: str, value: object, expected: str) -> NoReturn:
    raise _located(invalid(ExperimentError, path, value, expected=expected), "", {})


def _located(error: InputError, section: str, suffixes: Mapping[str, str]) -> ExperimentError:
    """``error`` (a constructor's, or a check's) as an `ExperimentError` that names its key
    path, ``optimizer.population_size``, or its section when it names no setting."""
    key = key_of(error)
    if key is None:
        where = f"invalid {section} section: " if section else ""
        return ExperimentError(
            where + error.problem,
            expected=error.expected,
            received=error.received,
            fix=f"in {section}: {error.fix}" if section else error.fix,
        )
    setting = re.split(r"[.\[]", key, maxsplit=1)[0]
    path = (f"{section}.{key}" if section else key) + suffixes.get(setting, "")
    problem = f"invalid value for {path}"
    if not error.problem.startswith("invalid "):  # e.g. "unknown NAS-Bench-201 dataset"
        problem += f": {error.problem}"
    fix = error.fix
    if fix.startswith(f"set {key} "):  # the shared checks' fixes: "set <key> to ..."
        fix = f"set {path} " + fix.removeprefix(f"set {key} ")
    elif section:
        fix = f"in {section}: {fix}"
    return ExperimentError(problem, expected=error.expected, received=error.received, fix=fix)


@contextlib.contextmanager
def _naming(section: str, suffixes: Mapping[str, str] | None = None) -> Iterator[None]:
    """Re-raise the `InputError` of a check or constructor as an `ExperimentError` naming its
    key path in ``section`` ("" for the top level); ``suffixes`` follow the path of a
    setting, e.g. where its default came from."""
    try:
        yield
    except InputError as error:
        if isinstance(error, ExperimentError) and key_of(error) is None:
            raise
        raise _located(error, section, suffixes or {}) from error


# -- the top level ---------------------------------------------------------------------------


def _check_version(key: str, value: Any) -> int:
    if not (isinstance(value, numbers.Real) and value == FORMAT_VERSION):
        raise invalid(
            ExperimentError, key, value, expected=f"{FORMAT_VERSION}, the only format version"
        )
    return FORMAT_VERSION


def _check_gpus(key: str, value: Any) -> Any:
    # 0, a share of one GPU (0.5: two trials per GPU) or whole GPUs: morphml_dask.gpus.
    check_gpus_per_trial(value, name=key, error=ExperimentError)
    return check_json(key, value, error=ExperimentError)  # as written: 1 stays 1


_TOP_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "version": _check_version,
    "name": lambda key, value: check_string(key, value, error=ExperimentError),
    "max_trials": lambda key, value: check_int(key, value, low=1, error=ExperimentError),
    "store": lambda key, value: check_string(key, value, error=ExperimentError),
    "storage_options": lambda key, value: check_options(key, value, error=ExperimentError),
    "gpus_per_trial": _check_gpus,
}
_TOP = [
    "version",
    "name",
    *SECTIONS,
    "max_trials",
    "store",
    "storage_options",
    "gpus_per_trial",
    "python_path",
]
_REQUIRED = {
    "name": "my-search",
    "space": "{name: dag-cnn, max_nodes: 4}",
    "task": "{name: train, dataset: digits, epochs: 4}",
    "optimizer": "{name: regularized-evolution, population_size: 8, seed: 0}",
}
# Sections a document may leave out, with what the error messages show as an example.
_OPTIONAL = {"pruner": "{name: successive-halving, min_budget: 1, eta: 3}"}
# Top-level settings whose default is a morphml_dask config key.
_FROM_CONFIG = {"max_trials": "max-trials", "store": "store", "gpus_per_trial": "gpus-per-trial"}


def _from_config(key: str) -> str:
    return f" (default from the dask config morphml.{key})"


def _top_level(document: Mapping[str, Any]) -> dict[str, Any]:
    """The checked top-level settings, defaults from the config filled in."""
    _check_keys(document, _TOP, "")
    missing = [key for key in _REQUIRED if key not in document]
    if missing:
        raise ExperimentError(
            f"missing required key {missing[0]}",
            expected=f"the keys {list(_REQUIRED)}",
            received=f"keys {sorted(map(key_text, document))}",
            fix=f"add {missing[0]}: {_REQUIRED[missing[0]]}",
        )
    doc: dict[str, Any] = {"version": FORMAT_VERSION, "storage_options": {}}
    with _naming(""):
        for key, check in _TOP_CHECKS.items():
            if key in document:
                doc[key] = check(key, document[key])
            elif key in _FROM_CONFIG:
                source = _FROM_CONFIG[key]
                doc[key] = check(key + _from_config(source), config_value(source))
    return doc


def _where_else(key: object, here: str) -> str | None:
    """The section (or "the top level") where ``key`` is a valid setting, if any."""
    if here and key in _TOP:
        return "the top level"
    for section in SECTIONS:
        if section != here and (key == "name" or any(key in keys for keys in _keys(section))):
            return f"the {section} section"
    return None


def _keys(section: str) -> Iterator[tuple[str, ...]]:
    """The keys of each kind of ``section`` that can be imported: a kind registered by a
    path that is broken fails when it is named, not when another key is misspelt."""
    for kind in kinds(section).values():
        with contextlib.suppress(ExperimentError):
            yield kind.keys


def _check_keys(mapping: Mapping[Any, Any], valid: list[str], here: str) -> None:
    prefix = f"{here}." if here else ""
    for key in mapping:
        if key in valid:
            continue
        path = f"{prefix}{key_text(key)}"
        elsewhere = _where_else(key, here)
        close = difflib.get_close_matches(key_text(key), valid, n=1)
        if elsewhere:
            fix = f"move {key} to {elsewhere}"
        elif close:
            fix = f"rename {path} to {prefix}{close[0]}"
        else:
            fix = f"remove {path}"
        raise ExperimentError(
            f"unknown key {path}",
            expected=f"keys among {sorted(valid)}",
            received=short_repr(key),
            fix=fix,
        )


# -- the sections ----------------------------------------------------------------------------


def _section(document: Mapping[str, Any], section: str) -> tuple[Kind, dict[str, Any]]:
    """The kind a section names and the settings it gives, document-only ones checked."""
    value = document[section]
    names = sorted(kinds(section))
    if not isinstance(value, Mapping):
        example = {**_REQUIRED, **_OPTIONAL}[section]
        _wrong(section, value, f"a mapping with a name, e.g. {section}: {example}")
    if "name" not in value and "function" in value and section in ("space", "task"):
        value = {"name": _FUNCTION, **value}  # space: {function: mypkg.spaces:mlp}
    if "name" not in value:
        named = [name for name in names if name != _FUNCTION]  # chosen by function: instead
        raise ExperimentError(
            f"missing {section}.name",
            expected=f"a name among {named}"
            + (", or function: 'module:name'" if section in ("space", "task") else ""),
            received=f"keys {sorted(map(key_text, value))}",
            fix=f"add name: {named[0]} to the {section} section",
        )
    kind = get_kind(section, value["name"])
    if kind is None and isinstance(value["name"], str) and ":" in value["name"]:
        kind = _imported_kind(section, value["name"])
    if kind is None:
        close = difflib.get_close_matches(key_text(value["name"]), names, n=1)
        raise ExperimentError(
            f"unknown {section}.name",
            expected=f"one of {names}",
            received=short_repr(value["name"]),
            fix=f"set {section}.name to {close[0] if close else names[0]}"
            + ("" if close else f" or another of {names}"),
        )
    given = {k: v for k, v in value.items() if k != "name"}
    _check_keys(given, list(kind.keys), section)
    missing = [key for key in kind.schema.required if key not in given]
    if missing:
        raise ExperimentError(
            f"missing {section}.{missing[0]}",
            expected=f"the keys {list(kind.schema.required)} in a {kind.name} {section} section",
            received=f"keys {sorted(map(key_text, given))}",
            fix=f"add {missing[0]}: ... to the {section} section",
        )
    with _naming(section):
        for key, check in kind.schema.document_only.items():
            if key in given:
                given[key] = check(given[key])
    return kind, given


# The kind of a section that names a function of yours rather than a kind.
_FUNCTION = "function"
_BASES: dict[str, type[Any]] = {
    "space": BaseSearchSpace,
    "task": BaseTask,
    "optimizer": BaseOptimizer,
}


def _imported_kind(section: str, path: str) -> Kind:
    """The kind ``name: "mypkg.spaces:MySpace"`` names: your subclass of the section's base
    class, registered under its import path when first named."""
    base = _BASES[section]
    try:
        found = resolve(path)
    except ExperimentError as error:
        raise ExperimentError(
            f"invalid value for {section}.name: cannot import {path!r}",
            expected=f"a registered {section} name, or the import path of a {base.__name__} "
            "subclass",
            received=error.received,
            fix=f"check {section}.name, and that its module is importable (installed, or next "
            "to the experiment file)",
        ) from error
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ExperimentError(
            f"invalid value for {section}.name: {path!r} is not a {base.__name__} subclass",
            expected=f"the import path of a class derived from {base.__name__}",
            received=describe(found),
            fix=f"point {section}.name at your {base.__name__} subclass, e.g. mypkg.mod:MyClass",
        )
    schema = Schema()
    if section == "task":  # like the built-in tasks: epochs is the budget optimizers default to
        schema = Schema(document_only={"epochs": check_epochs}, defaults={"epochs": DEFAULT_EPOCHS})
    return register_kind(section, path, found, schema)


def _section_doc(kind: Kind, given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A section with its defaults filled in, and the suffix of each key whose default
    came from the dask config, for error messages."""
    doc: dict[str, Any] = {"name": kind.name, **kind.defaults()}
    suffixes = {}
    for key, source in kind.schema.config.items():
        if key not in given:
            doc[key] = config_value(source)
            suffixes[key] = _from_config(source)
    return doc | dict(given), suffixes


def _optimizer_doc(
    kind: Kind, given: Mapping[str, Any], task: Kind, task_doc: Mapping[str, Any]
) -> dict[str, Any]:
    """The optimizer section, defaults filled in: the task's objective and direction, the
    keys the schema takes from the task (``budget`` from ``epochs``), the signature's."""
    doc, _ = _section_doc(kind, given)
    for key in ("objective", "direction"):
        # A function task names its objective in its section; other tasks in their class.
        value = task_doc.get(key, getattr(task.factory, key, None))
        if key in kind.keys and key not in given and isinstance(value, str):
            doc[key] = value
    _fill_from_task(doc, kind, given, task_doc)
    for key, dropped in kind.schema.dropped_by.items():
        if given.get(key) is not None:  # e.g. ASHA's listed rungs: no ladder to make
            for name in dropped:
                if name not in given:
                    doc.pop(name, None)
    return doc


def _check_space_fits(task: Kind, space: Kind) -> None:
    needed = task.schema.requires_space
    if needed is None or needed == space.name:
        return
    others = [
        name
        for name, kind in kinds("task").items()
        if kind.schema.requires_space in (None, space.name)
    ]
    raise ExperimentError(
        f"the {task.name} task needs the {needed} space",
        expected=f"space.name {needed}",
        received=repr(space.name),
        fix=f"set space.name to {needed}"
        + (f", or task.name to {' or '.join(others)}" if others else ""),
    )


# -- building --------------------------------------------------------------------------------


def _build(document: Mapping[str, Any], folder: Path | None) -> Experiment:
    doc = _top_level(document)
    doc["python_path"] = _python_path(document.get("python_path", []), folder)
    _importable(doc["python_path"])
    space_kind, space_given = _section(document, "space")
    doc["space"], space_suffixes = _section_doc(space_kind, space_given)
    with _naming("space", space_suffixes):
        space = _made("space", space_kind, space_kind.build(space_given), BaseSearchSpace)
    task_kind, task_given = _section(document, "task")
    optimizer_kind, optimizer_given = _section(document, "optimizer")
    _check_space_fits(task_kind, space_kind)
    doc["task"], task_suffixes = _section_doc(task_kind, task_given)
    doc["optimizer"] = _optimizer_doc(optimizer_kind, optimizer_given, task_kind, doc["task"])
    fit = task_kind.schema.fit
    # A task that fits no optimizer is built first: its errors (a direction the optimizer
    # takes from it, too) are named in the task section, where they were written.
    if fit is None:
        task = _make_task(doc, task_kind, task_suffixes)
        _make_optimizer(doc, space)
    else:
        with _naming("task", task_suffixes):
            fit(doc["task"], _make_optimizer(doc, space))
        task = _make_task(doc, task_kind, task_suffixes)
    check_optimizer_fits_task(doc["optimizer"], task)
    doc["pruner"] = _pruner_doc(document, doc["task"])
    with _naming(""):  # JSON-ready: tuples become lists, NumPy scalars Python's
        doc = {key: check_json(key, doc[key], error=ExperimentError) for key in _TOP}
    return Experiment(doc, space, task)


def _make_task(document: Mapping[str, Any], kind: Kind, suffixes: dict[str, str]) -> BaseTask:
    with _naming("task", suffixes):
        settings = {k: v for k, v in document["task"].items() if k != "name"}
        task: BaseTask = _made("task", kind, kind.build(settings), BaseTask)
    return task


def _python_path(value: object, folder: Path | None) -> list[str]:
    """The folders to import your modules from, absolute: the experiment file's own, then
    those ``python_path`` lists (relative to the file's folder, else to the working
    directory)."""
    if not (isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value)):
        _wrong("python_path", value, "a list of folders, e.g. [src, ../shared]")
    base = folder or Path.cwd()
    found = [] if folder is None else [str(folder)]
    for index, entry in enumerate(value):
        try:
            resolved = str((base / entry).resolve())
        except (OSError, ValueError):  # a NUL character, a name too long
            _wrong(f"python_path[{index}]", entry, "a folder's path")
        if resolved not in found:
            found.append(resolved)
    return found


def _importable(folders: list[str]) -> None:
    """Put ``folders`` first on ``sys.path``, in order, where they are not yet. They stay:
    the search imports from them while it runs, and a local cluster's worker processes,
    started later, inherit ``sys.path``."""
    for folder in reversed(folders):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    importlib.invalidate_caches()  # modules written since the folder was last listed


def _fill_from_task(
    doc: dict[str, Any], kind: Kind, given: Mapping[str, Any], task_doc: Mapping[str, Any]
) -> None:
    """Default the keys the kind's schema takes from the task (``budget`` from ``epochs``)."""
    for key, task_key in kind.schema.from_task.items():
        if key not in given and task_key in task_doc:
            doc[key] = task_doc[task_key]


def _pruner_doc(document: Mapping[str, Any], task_doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The pruner section, defaults filled in (``max_budget`` from the task's ``epochs``),
    once the pruner it describes was built; None when the document names none."""
    if document.get("pruner") is None:
        return None
    kind, given = _section(document, "pruner")
    doc, _ = _section_doc(kind, given)
    _fill_from_task(doc, kind, given, task_doc)
    _make_pruner(doc)
    return doc


def _make_pruner(section: Mapping[str, Any]) -> BasePruner:
    kind = get_kind("pruner", section["name"])
    if kind is None:
        raise ExperimentError(
            "unknown pruner.name",
            expected=f"one of {sorted(kinds('pruner'))}",
            received=repr(section["name"]),
            fix="register the pruner again before making it",
        )
    with _naming("pruner"):
        made = kind.build({k: v for k, v in section.items() if k != "name"})
    pruner: BasePruner = _made("pruner", kind, made, BasePruner)
    return pruner


def _make_optimizer(document: Mapping[str, Any], space: BaseSearchSpace) -> BaseOptimizer:
    settings = copy.deepcopy(document["optimizer"])
    kind = get_kind("optimizer", settings.pop("name"))
    if kind is None:  # unregistered since the document was loaded
        raise ExperimentError(
            "unknown optimizer.name",
            expected=f"one of {sorted(kinds('optimizer'))}",
            received=repr(document["optimizer"]["name"]),
            fix="register the optimizer again before making it",
        )
    with _naming("optimizer"):
        made = kind.build(settings, space=space, max_trials=document["max_trials"])
    optimizer: BaseOptimizer = _made("optimizer", kind, made, BaseOptimizer)
    return optimizer


def _made(section: str, kind: Kind, value: Any, base: type[Any]) -> Any:
    """``value``, if the factory of ``kind`` made an instance of ``base``."""
    if not isinstance(value, base):
        raise ExperimentError(
            f"the factory of the {section} {kind.name!r} made no {base.__name__}",
            expected=f"a {base.__name__} from {kind.target!r}",
            received=describe(value),
            fix=f"return a {base.__name__} subclass instance from the factory",
        )
    return value
