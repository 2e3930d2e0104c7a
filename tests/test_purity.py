"""Search spaces and optimizers stay pure: no torch, Dask, fsspec or driver imports; and torch
loads only when a model is built or trained, not when tasks, experiments or the driver are
imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "morphml_dask"
FORBIDDEN = ("torch", "dask", "distributed", "fsspec", "s3fs", "zarr", "xarray")
PURE = ("space", "optim", "prune")
# Modules the pure packages import, pure themselves.
PURE_MODULES = ("registry.py", "validation.py", "exceptions.py", "trial.py", "gpus.py")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", [*PURE, *PURE_MODULES])
def test_pure_packages_import_no_framework(package: str) -> None:
    path = PACKAGE / package
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    if not files:
        pytest.skip(f"morphml_dask.{package} does not exist yet")
    offenders = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in files
        for name in _imports(path)
        if name.split(".")[0] in FORBIDDEN
        or name.startswith(("morphml_dask.models", "morphml_dask.tasks", "morphml_dask.driver"))
    }
    assert not offenders


def _loaded_after(modules: str, watched: tuple[str, ...]) -> list[str]:
    """Which of ``watched`` a fresh interpreter has loaded after ``import <modules>``."""
    code = f"import sys, {modules};print(sorted(m for m in {watched!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded: list[str] = ast.literal_eval(out.stdout.strip())
    return loaded


@pytest.mark.parametrize(
    "modules",
    [
        "morphml_dask.space, morphml_dask",
        "morphml_dask.optim",
        "morphml_dask.prune",
        "morphml_dask.registry",
    ],
)
def test_importing_the_pure_packages_loads_no_framework(modules: str) -> None:
    assert _loaded_after(modules, FORBIDDEN) == []


@pytest.mark.parametrize(
    "modules", ["morphml_dask.tasks, morphml_dask.experiment", "morphml_dask.driver"]
)
def test_torch_loads_only_to_build_or_train_a_model(modules: str) -> None:
    assert _loaded_after(modules, ("torch",)) == []
