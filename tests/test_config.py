"""morphml.yaml and its schema agree; dask.config precedence: file < environment < kwargs."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config
import pytest
import yaml

from morphml_dask.config import config_keys, config_value, load_defaults, load_schema
from morphml_dask.exceptions import MorphMLError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).parents[1]


@pytest.fixture
def restore_dask_config() -> Iterator[None]:
    """Put dask.config back exactly as it was after a test that refreshes it."""
    saved = copy.deepcopy(dask.config.config)
    try:
        yield
    finally:
        dask.config.config.clear()
        dask.config.config.update(saved)


def _schema_mismatches(config: dict[str, Any], schema: dict[str, Any], root: str) -> list[str]:
    """Keys present on one side only, recursively, as dotted paths."""
    properties = schema.get("properties", {})
    found = [f"{root}{k} (not in the schema)" for k in sorted(set(config) - set(properties))]
    found += [f"{root}{k} (not in morphml.yaml)" for k in sorted(set(properties) - set(config))]
    for key, value in config.items():
        if isinstance(value, dict) and key in properties:
            found += _schema_mismatches(value, properties[key], f"{root}{key}.")
        elif key in properties and "properties" in properties[key]:
            found.append(f"{root}{key} (an object in the schema only)")
    return found


def test_schema_describes_every_key_and_no_other() -> None:
    assert _schema_mismatches(load_defaults(), load_schema(), "") == []


def test_every_schema_entry_has_a_type_and_a_description() -> None:
    def walk(node: dict[str, Any], path: str) -> Iterator[str]:
        for key, child in node.get("properties", {}).items():
            if "type" not in child or "description" not in child:
                yield f"{path}{key}"
            yield from walk(child, f"{path}{key}.")

    assert list(walk(load_schema(), "")) == []


def test_the_defaults_validate_against_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="schema checks need jsonschema")
    jsonschema.Draft202012Validator.check_schema(load_schema())
    jsonschema.validate(load_defaults(), load_schema())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max-trials", 0),
        ("max-trials", "many"),
        ("gpus-per-trial", -1),
        ("lookahead", 1.5),
        ("scheduler-address", 8786),
        ("cluster", {"n-workers": 0}),
        ("cluster", {"gpus": -1}),
        ("cluster", {"gpus": 0.5}),
        ("max-trails", 5),
    ],
)
def test_the_schema_rejects_bad_settings(key: str, value: object) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="schema checks need jsonschema")
    config = load_defaults()
    config["morphml"][key] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, load_schema())


def test_importing_loads_the_defaults_into_dask_config() -> None:
    fresh: dict[str, Any] = {}
    dask.config.refresh(config=fresh, paths=[], env={})  # defaults only, no user files
    assert fresh["morphml"] == load_defaults()["morphml"]
    assert config_keys() == [
        "store",
        "max-trials",
        "max-retries",
        "quarantine-after",
        "gpus-per-trial",
        "lookahead",
        "persist-interval",
        "store-outage-timeout",
        "scheduler-timeout",
        "worker-timeout",
        "dashboard",
        "time-scale",
        "scheduler-address",
        "cluster.kind",
        "cluster.maximum-workers",
        "cluster.image",
        "cluster.gres",
        "cluster.n-workers",
        "cluster.threads-per-worker",
        "cluster.gpus",
        "cluster.dashboard-address",
    ]


@pytest.mark.usefixtures("restore_dask_config")
def test_environment_variables_override_yaml_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "morphml.yaml").write_text(
        yaml.safe_dump({"morphml": {"max-trials": 11, "store": "s3://bucket/runs"}})
    )
    monkeypatch.setenv("DASK_MORPHML__MAX_TRIALS", "7")
    monkeypatch.setenv("DASK_MORPHML__CLUSTER__N_WORKERS", "3")
    monkeypatch.setenv("DASK_MORPHML__CLUSTER__GPUS", "2")
    dask.config.refresh(paths=[str(tmp_path)])
    assert config_value("max-trials") == 7
    assert config_value("store") == "s3://bucket/runs"
    assert config_value("cluster.n-workers") == 3
    assert config_value("cluster.gpus") == 2  # the fake-GPU override, for tests of placement
    assert config_value("lookahead") == load_defaults()["morphml"]["lookahead"]


@pytest.mark.usefixtures("restore_dask_config")
def test_keyword_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASK_MORPHML__MAX_TRIALS", "7")
    dask.config.refresh()
    assert config_value("max-trials", 3) == 3
    assert config_value("max-trials", None) == 7
    with dask.config.set({"morphml.max-trials": 5}):
        assert config_value("max-trials") == 5
        assert config_value("max-trials", 3) == 3


def test_snake_case_keys_read_the_same_settings() -> None:
    with dask.config.set({"morphml.cluster.threads-per-worker": 2}):
        assert config_value("cluster.threads_per_worker") == 2
        assert config_value("max_trials") == config_value("max-trials")


def test_unknown_keys_name_the_closest_one() -> None:
    with pytest.raises(
        MorphMLError,
        match=r"unknown configuration key morphml.max-trails(.|\n)*use morphml.max-trials",
    ):
        config_value("max-trails")


def test_the_yaml_files_ship_with_the_package() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    assert "*.yaml" in package_data["morphml_dask"]
