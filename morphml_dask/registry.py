"""The kinds an experiment document can name, registered by the modules that define them.

A *kind* is a space, task or optimizer that an experiment section names
(``optimizer: {name: asha, eta: 3}``): a factory (its class, or any callable) and the
`Schema` of the section, which says what the document may give and how it becomes the
factory's arguments. Each built-in module registers its own kind next to its constructor::

    register_kind("optimizer", ASHA.name, ASHA, Schema(from_task={"max_budget": "epochs"}))

and the constructor validates every setting, once. `morphml_dask.experiment` only looks the
name up, fills in defaults, refuses unknown keys and names the key of a constructor's error.

A factory may also be given as an import path, ``"mypkg.spaces:MySpace"``, imported on
first use. Pure: no torch, Dask or fsspec, so that `morphml_dask.space` and
`morphml_dask.optim` register their kinds without loading them.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from morphml_dask.exceptions import ExperimentError, InputError

__all__ = [
    "SECTIONS",
    "Kind",
    "Schema",
    "get_kind",
    "import_path_of",
    "kinds",
    "register_kind",
    "resolve",
    "unregister_kind",
]

SECTIONS = ("space", "task", "optimizer", "pruner")
# Arguments the experiment passes itself, never written in a section.
PASSED_BY_EXPERIMENT = {
    "space": (),
    "task": (),
    "optimizer": ("space", "max_trials"),
    "pruner": (),
}

Factory = Callable[..., Any]


@dataclass(frozen=True)
class Schema:
    """What an experiment document's section may say about a kind, and how it becomes a
    call of the kind's factory.

    Every field is optional: ``Schema()`` lets a section give the factory's keyword
    parameters, as they are.

    Attributes
    ----------
    keys
        The keys the section may give besides ``name``; None for the factory's keyword
        parameters (less those the experiment passes itself: an optimizer's ``space`` and
        ``max_trials``). Include the `document_only` keys.
    convert
        Per key, how a document value becomes the argument, e.g. ``{"shape": tuple}`` for
        a factory that needs a tuple where YAML has lists, applied to every setting the
        factory is called with. The factory still checks the result, so a conversion should
        leave a value it cannot convert as it is.
    document_only
        Keys checked here and never passed to the factory, each with its check: a task's
        ``epochs`` (the budget optimizers default to). A check returns the value or raises
        an `InputError` made by `morphml_dask.validation`.
    defaults
        Defaults of keys the factory's signature does not have (the `document_only` ones).
    config
        Keys whose default is a ``morphml.`` dask config key, e.g.
        ``{"time_scale": "time-scale"}``.
    from_task
        For optimizers: keys whose default is a key of the task's section, e.g.
        ``{"budget": "epochs"}``.
    dropped_by
        Keys whose given, non-None value makes other keys' defaults meaningless, so that
        the normalized document leaves them out: ASHA's ``{"budgets": ("min_budget",
        "max_budget")}``.
    required
        Keys the section must give, e.g. a function task's ``("function", "objective")``.
    requires_space
        For tasks: the space kind the task can evaluate, e.g. ``"nb201-cell"``.
    prepare
        Turns the section's factory arguments (converted, document-only keys included)
        into the factory's keyword arguments, e.g. opening the dataset a URL names.
    fit
        For tasks: called with the task's section (a dict it may change) and the built
        optimizer before the task is built, e.g. to span the optimizer's largest budget
        with one learning-rate schedule.
    """

    keys: tuple[str, ...] | None = None
    convert: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    document_only: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, str] = field(default_factory=dict)
    from_task: Mapping[str, str] = field(default_factory=dict)
    dropped_by: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    requires_space: str | None = None
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    fit: Callable[[dict[str, Any], Any], None] | None = None


@dataclass(frozen=True)
class Kind:
    """A registered kind: where it goes, its name, its factory and its schema."""

    section: str
    name: str
    target: Factory | str
    schema: Schema = field(default_factory=Schema)

    @property
    def factory(self) -> Factory:
        """The factory, imported on first use when registered by ``"module:attr"``."""
        return resolve(self.target) if isinstance(self.target, str) else self.target

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys the section may give, besides ``name``."""
        if self.schema.keys is not None:
            return self.schema.keys
        passed = PASSED_BY_EXPERIMENT[self.section]
        keywords = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params = _parameters(self.factory).values()
        found = [p.name for p in params if p.kind in keywords and p.name not in passed]
        return (*found, *(k for k in self.schema.document_only if k not in found))

    def defaults(self) -> dict[str, Any]:
        """The default of every key that has one: the schema's, then the signature's."""
        keys = self.keys
        signature = {
            name: p.default
            for name, p in _parameters(self.factory).items()
            if name in keys and p.default is not inspect.Parameter.empty
        }
        return {**self.schema.defaults, **signature}

    def arguments(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The factory's keyword arguments for a section's settings (``name`` left out)."""
        convert, only = self.schema.convert, self.schema.document_only
        converted = {k: convert[k](v) if k in convert else v for k, v in settings.items()}
        if self.schema.prepare is not None:
            converted = self.schema.prepare(converted)
        return {k: v for k, v in converted.items() if k not in only}

    def build(self, settings: Mapping[str, Any], **passed: Any) -> Any:
        """Call the factory with a section's settings and what the experiment passes."""
        return self.factory(**passed, **self.arguments(settings))


_KINDS: dict[str, dict[str, Kind]] = {section: {} for section in SECTIONS}


def register_kind(
    section: str, name: str, factory: Factory | str, schema: Schema | None = None
) -> Kind:
    """Let experiment documents name ``factory`` as ``<section>: {name: <name>, ...}``.

    Parameters
    ----------
    section
        ``"space"``, ``"task"``, ``"optimizer"`` or ``"pruner"``.
    name
        The name documents use, e.g. ``"asha"``.
    factory
        The class (or any callable) that builds it from the section's keyword arguments,
        or its import path ``"module:attr"``, imported when first used. An optimizer's
        factory also takes ``space`` and ``max_trials``.
    schema
        What the section may give and how it becomes arguments; by default the factory's
        keyword parameters, as they are.

    Returns
    -------
    Kind

    Raises
    ------
    ExperimentError
        For an unknown section, an empty name, a factory that is neither callable nor an
        import path, or a name already registered for another factory.
    """
    if section not in SECTIONS:
        raise _misuse(
            f"unknown section {section!r}", f"one of {list(SECTIONS)}", repr(section), name
        )
    if not isinstance(name, str) or not name:
        raise _misuse("invalid kind name", "a non-empty string", repr(name), "a name")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise _misuse(
            "invalid kind factory", "a callable or a 'module:attr' path", repr(factory), name
        )
    kind = Kind(section, name, factory, schema or Schema())
    known = _KINDS[section].get(name)
    # Registering the same factory again (a module reloaded) replaces it.
    if known is not None and known.target is not factory and known.target != factory:
        raise ExperimentError(
            f"the {section} name {name!r} is already registered",
            expected="a name no other kind of the section uses",
            received=f"{factory!r}, while {name!r} is {known.target!r}",
            fix=f"register it under another name, or call unregister_kind({section!r}, "
            f"{name!r}) first",
        )
    _KINDS[section][name] = kind
    return kind


def unregister_kind(section: str, name: str) -> None:
    """Forget a registered kind (tests, plugins replacing a kind); unknown names are ignored."""
    _KINDS.get(section, {}).pop(name, None)


def kinds(section: str) -> dict[str, Kind]:
    """The kinds registered for ``section``, by name, in the order they were registered."""
    return dict(_KINDS.get(section, {}))


def get_kind(section: str, name: object) -> Kind | None:
    """The kind ``name`` of ``section``, or None when none is registered under it."""
    return _KINDS.get(section, {}).get(name) if isinstance(name, str) else None


@functools.cache
def resolve(path: str) -> Any:
    """The object an import path ``"package.module:attribute"`` names.

    Raises
    ------
    ExperimentError
        When the path is malformed, the module cannot be imported (it is missing, or raises
        as it is imported: a syntax error, a missing dependency) or lacks the attribute.
    """
    module_name, _, attribute = path.partition(":")
    fix = "check the path, and that the module is installed where the search runs"
    if not module_name or not attribute:
        raise ExperimentError(
            "invalid import path",
            expected="'package.module:attribute', e.g. 'mypkg.spaces:MySpace'",
            received=repr(path),
            fix=fix,
        )
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except Exception as error:  # a missing module or name, or one that fails as it imports
        raise ExperimentError(
            f"cannot import {path!r}",
            expected="an importable module with that attribute",
            received=f"{type(error).__name__}: {error}"[:300],
            fix=fix,
        ) from error
    return found


def import_path_of(
    obj: object,
    *,
    error: type[InputError] = ExperimentError,
    what: str = "the function",
    key: str | None = None,
) -> str:
    """The import path ``"module:name"`` that `resolve` turns back into ``obj``.

    A function defined in the ``__main__`` of a script that has a file is named after the
    file (``mlp_wine:space`` for ``python examples/mlp_wine.py``), or after the module run
    with ``python -m``, so that workers, which import it by that name, find it.

    Parameters
    ----------
    obj
        A function or class defined at module level.
    error
        The `InputError` subclass to raise, e.g. `SearchSpaceError`.
    what
        How the message names ``obj``, e.g. ``"the space function"``.
    key
        The setting ``obj`` was given as, recorded on the error.

    Raises
    ------
    InputError
        ``error``, for a lambda, a function defined inside another function, an object
        without a name, one defined in an interactive session, or a name that does not lead
        back to ``obj``.
    """
    qualname = getattr(obj, "__qualname__", None)
    module = getattr(obj, "__module__", None)
    if not (isinstance(qualname, str) and isinstance(module, str)):
        reason = "it has no module and name (a callable instance or a partial?)"
    elif "<lambda>" in qualname:
        reason = "a lambda has no name to import it by"
    elif "<locals>" in qualname:
        reason = "it is defined inside another function"
    else:
        found: Any = sys.modules.get(module)
        for part in qualname.split("."):
            found = getattr(found, part, None)
        path_module, reason = _main_module_name() if module == "__main__" else (module, "")
        if found is not obj:
            reason = f"{module}.{qualname} does not lead back to it (replaced or decorated?)"
        elif path_module is not None:
            return f"{path_module}:{qualname}"
    raise error(
        f"{what} has no import path",
        expected="a function defined at module level of a module the workers can import, "
        "e.g. def space(s): ... in mypkg/spaces.py",
        received=f"{obj!r}: {reason}"[:300],
        fix="define it with def at module level (in a package, or a file next to the "
        "experiment) and pass it, or its path 'module:name'",
        key=key,
    )


def _main_module_name() -> tuple[str | None, str]:
    """The importable name of the running script (the module of ``python -m``, else the
    file's stem), or None and why there is none."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and isinstance(spec.name, str) and spec.name != "__main__":
        return str(spec.name), ""
    filename = getattr(main, "__file__", None)
    if not isinstance(filename, str):
        return None, "it is defined in an interactive session (a notebook or the REPL)"
    stem = Path(filename).stem
    if not stem.isidentifier():
        return None, f"the script's file name {stem!r} is no module name"
    return stem, ""


def _parameters(factory: Factory) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature take nothing we know
        return {}


def _misuse(problem: str, expected: str, received: str, name: object) -> ExperimentError:
    return ExperimentError(
        problem,
        expected=expected,
        received=received,
        fix=f"call register_kind(section, name, factory) with {expected} for {name!r}",
    )
