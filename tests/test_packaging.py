"""The repository's promises about itself: README snippets run, environments agree."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_every_dependency_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # Requirements with environment markers target other Pythons than the one
    # environment.yml pins.
    wanted = [
        r
        for r in project["dependencies"]
        + [r for extra in project["optional-dependencies"].values() for r in extra]
        if ";" not in r
    ]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed = set()
    for entry in env["dependencies"]:
        for item in entry["pip"] if isinstance(entry, dict) else [entry]:
            listed.add(_name(item))
    assert sorted({_name(r) for r in wanted} - listed) == []


def _readme_python_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [line for line in text.splitlines() if line.startswith(".venv/bin/python -c ")]


def test_readme_opens_with_the_two_commands() -> None:
    first_block = (ROOT / "README.md").read_text().split("```")[1]
    assert "make run" in first_block
    assert "make test" in first_block
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("command", _readme_python_commands())
def test_readme_snippets_run_as_printed(command: str) -> None:
    argv = shlex.split(command)
    argv[0] = sys.executable  # the interpreter running the tests is the repository's venv
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


EXAMPLE_FILES = sorted((ROOT / "examples").glob("*.py"))


def test_readme_python_example_runs(tmp_path: Path) -> None:
    """Every Python block of the README runs, except a listing copied word for word from an
    example file (`tests/test_examples.py` runs the examples)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    for block in blocks:
        excerpt = next((f for f in EXAMPLE_FILES if block in f.read_text()), None)
        if excerpt is None:
            # In a fresh folder: the stores the examples write start empty every time.
            subprocess.run(
                [sys.executable, "-c", block], cwd=tmp_path, check=True, capture_output=True
            )
            continue
        # A listing of an example file, word for word: tests/test_examples.py runs the file.
        assert block.count("\n") > 10, f"{excerpt} matched by a trivial block"
