"""Search spaces and optimizers stay pure: no torch, Dask, fsspec or driver imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "morphml_dask"
FORBIDDEN = ("torch", "dask", "distributed", "fsspec", "s3fs", "zarr", "xarray")
PURE = ("space", "optim")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_import_no_framework(package: str) -> None:
    files = sorted((PACKAGE / package).rglob("*.py"))
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


def test_importing_the_space_loads_no_framework() -> None:
    code = (
        "import sys, morphml_dask.space, morphml_dask;"
        f"print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
