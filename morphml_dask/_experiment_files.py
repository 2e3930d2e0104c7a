"""Reading an experiment document: a YAML file, YAML text or a mapping, each refused with an
`ExperimentError` that says what was expected when it is no experiment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from morphml_dask.exceptions import ExperimentError
from morphml_dask.validation import describe

__all__ = ["read_document"]


def read_document(source: object) -> tuple[Mapping[str, Any], Path | None]:
    """The experiment document of a path, YAML text or mapping, and the folder of the file it
    was read from (None for text and mappings)."""
    folder = None
    if isinstance(source, Mapping):
        document: object = source
        origin = "the mapping"
    elif isinstance(source, str) and "\n" in source:
        document, origin = _parse(source, "the YAML text"), "the YAML text"
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        document, origin = _parse(_read_file(path), str(path)), str(path)
        folder = path.resolve().parent
    else:
        raise ExperimentError(
            "unsupported experiment source",
            expected="a path to a YAML file, YAML text, or a mapping",
            received=describe(source),
            fix='call load_experiment("experiment.yaml")',
        )
    if not isinstance(document, Mapping):
        raise ExperimentError(
            f"the experiment in {origin} is not a mapping",
            expected="a YAML mapping with name, space, task and optimizer keys",
            received=describe(document),
            fix="start from examples/digits.yaml",
        )
    return document, folder


def _read_file(path: Path) -> str:
    fix = f"check the path; relative paths start from the working directory {Path.cwd()}"
    if not path.exists():
        raise ExperimentError(
            "experiment file not found", expected="a YAML file", received=str(path), fix=fix
        )
    if not path.is_file():
        raise ExperimentError(
            "experiment path is not a file", expected="a YAML file", received=str(path), fix=fix
        )
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ExperimentError(
            "cannot read the experiment file",
            expected="a readable UTF-8 YAML file",
            received=f"{path}: {error}",
            fix="check the file's permissions and encoding",
        ) from error


def _parse(text: str, origin: str) -> object:
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as error:
        # PyYAML raises ValueError for integers too long for Python to parse.
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(error, "problem", None) or str(error)
        raise ExperimentError(
            f"invalid YAML in {origin}{where}",
            expected="a YAML mapping, as in examples/digits.yaml",
            received=f"{problem}{where}",
            fix=f"correct the YAML syntax{where} of {origin}",
        ) from error
