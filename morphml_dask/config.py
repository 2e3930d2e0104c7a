"""morphml_dask's configuration: ``morphml.yaml``'s defaults in `dask.config` under ``morphml.``.

Importing this module registers the defaults with `dask.config.update_defaults`, as
dask-jobqueue and distributed do. Users override them, lowest precedence first, through

- YAML read by dask.config, e.g. ``~/.config/dask/morphml.yaml``::

      morphml:
        max-trials: 200

- environment variables, ``DASK_MORPHML__MAX_TRIALS=200`` or
  ``DASK_MORPHML__CLUSTER__N_WORKERS=4`` (read when dask is imported, or on
  `dask.config.refresh`),
- ``dask.config.set({"morphml.max-trials": 200})``,
- keyword arguments: every function that reads a setting takes it as a keyword that
  defaults to ``None`` and falls back to `config_value`.

``morphml-schema.yaml`` next to this module describes every key.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from importlib import resources
from typing import Any, TypeVar, overload

import dask.config
import yaml

from morphml_dask.exceptions import InputError

__all__ = ["config_keys", "config_value", "load_defaults", "load_schema"]

T = TypeVar("T")

_PACKAGE = "morphml_dask"
DEFAULTS_FILE = "morphml.yaml"
SCHEMA_FILE = "morphml-schema.yaml"


def _read_yaml(filename: str) -> dict[str, Any]:
    text = resources.files(_PACKAGE).joinpath(filename).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    if not isinstance(document, dict):  # pragma: no cover - the shipped files are dicts
        raise InputError(
            f"{filename} is not a YAML mapping",
            expected="a mapping at the top of the file",
            received=type(document).__name__,
            fix="reinstall morphml_dask",
        )
    return document


def load_defaults() -> dict[str, Any]:
    """The shipped defaults, ``{"morphml": {...}}``, as read from ``morphml.yaml``."""
    return _read_yaml(DEFAULTS_FILE)


def load_schema() -> dict[str, Any]:
    """The JSON schema of the configuration, as read from ``morphml-schema.yaml``."""
    return _read_yaml(SCHEMA_FILE)


def config_keys() -> list[str]:
    """Every configuration key below ``morphml.``, dotted, e.g. ``"cluster.n-workers"``."""
    return _flatten(load_defaults()["morphml"])


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            keys += _flatten(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


dask.config.update_defaults(load_defaults())


@overload
def config_value(key: str, value: None = None) -> Any: ...


@overload
def config_value(key: str, value: T | None) -> T: ...


def config_value(key: str, value: Any = None) -> Any:
    """``value`` when it is not None, else the configured ``morphml.<key>``.

    Parameters
    ----------
    key
        A key below ``morphml.``, kebab-case or snake_case: ``"max-trials"``,
        ``"cluster.n_workers"``.
    value
        The caller's keyword argument; it wins over the configuration when given.

    Raises
    ------
    InputError
        When ``key`` is not a morphml_dask setting.

    Examples
    --------
    >>> config_value("max-trials", 7)
    7
    >>> import dask
    >>> with dask.config.set({"morphml.max-trials": 12}):
    ...     config_value("max_trials")
    12
    """
    if value is not None:
        return value
    try:
        return dask.config.get(f"morphml.{key}")
    except KeyError:
        pass
    try:
        # A configuration replaced wholesale (dask's test harness does) lost our defaults.
        return dask.config.get(f"morphml.{key}", config=load_defaults())
    except KeyError:
        known = config_keys()
        close = difflib.get_close_matches(key.replace("_", "-"), known, n=1)
        raise InputError(
            f"unknown configuration key morphml.{key}",
            expected=f"one of {known}",
            received=repr(key),
            fix=f"use morphml.{close[0]}" if close else "use a key of morphml.yaml",
        ) from None
