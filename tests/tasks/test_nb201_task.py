"""`NB201TabularTask`: lookups against the shipped tables, cost, errors, the paper's protocol."""

from __future__ import annotations

import csv
import io
import time
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morphml_dask.exceptions import SearchSpaceError, TaskError
from morphml_dask.space import CellSpace, DagSpace
from morphml_dask.tasks import BaseTask, NB201TabularTask
from morphml_dask.tasks._nb201 import _columns, _parse_table, _read_table

DATASETS = ("cifar10", "cifar100", "imagenet")
SPACE = CellSpace()
# NAS-Bench-201 key 333132 (README): the CIFAR-10 optimum by 200-epoch validation accuracy.
CIFAR10_BEST = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
)


def _csv_row(filename: str, index: int) -> dict[str, str]:
    """Row ``index`` of a shipped table, read independently of the task's loader."""
    source = resources.files("morphml_dask.data.nb201").joinpath(filename)
    with source.open(encoding="utf-8") as handle:
        return next(row for row in csv.DictReader(handle) if int(row["index"]) == index)


def test_is_a_task() -> None:
    task = NB201TabularTask()
    assert isinstance(task, BaseTask)
    assert task.dataset == "cifar10"
    assert (task.objective, task.direction) == ("val_accuracy", "maximize")
    assert task.to_dict() == {"name": "nb201-tabular", "dataset": "cifar10", "time_scale": 0.0}


def test_index_0_cifar10_literal() -> None:
    result = NB201TabularTask("cifar10").evaluate(SPACE.from_index(0), budget=12)
    assert result.metrics["val_accuracy"] == 63.364


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("index", [0, 1, 6111, 15624])
def test_metrics_match_the_tables(dataset: str, index: int) -> None:
    hp12 = _csv_row("nb201_hp12_accuracy.csv", index)
    full = _csv_row("nb201_200epoch.csv", index)
    arch = SPACE.from_arch_str(hp12["arch_str"])

    result = NB201TabularTask(dataset).evaluate(arch, budget=12)

    train_time = float(full[f"{dataset}-train_time"])
    expected = {
        "val_accuracy": float(hp12[f"{dataset}-val"]),
        "test_accuracy": float(hp12[f"{dataset}-test"]),
        "val_accuracy_200": float(full[f"{dataset}-val200"]),
        "train_time_200": train_time,
        "params": float(full[f"{dataset}-model_size"]) * 1e6,
        "latency": float(full[f"{dataset}-latency"]),
        "cost_seconds": train_time * 12 / 200,
        "index": float(index),
    }
    assert set(result.metrics) == {*expected, "wall_time"}
    for name, value in expected.items():
        assert result.metrics[name] == pytest.approx(value, rel=1e-12), name
    assert all(isinstance(v, float) for v in result.metrics.values())
    assert 0 <= result.metrics["wall_time"] < 1.0
    assert result.weights is None


def test_tables_agree_on_arch_strs() -> None:
    source = resources.files("morphml_dask.data.nb201")
    arch_strs = []
    for filename in ("nb201_hp12_accuracy.csv", "nb201_200epoch.csv"):
        with source.joinpath(filename).open(encoding="utf-8") as handle:
            arch_strs.append([row["arch_str"] for row in csv.DictReader(handle)])
    assert arch_strs[0] == arch_strs[1]
    assert len(arch_strs[0]) == len(SPACE)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, len(SPACE) - 1))
def test_index_metric_is_the_cell_index(index: int) -> None:
    result = NB201TabularTask().evaluate(SPACE.from_index(index))
    assert result.metrics["index"] == index


def test_cost_scales_with_the_epochs_charged() -> None:
    task = NB201TabularTask()
    arch = SPACE.from_index(1)
    train_time = task.evaluate(arch).metrics["train_time_200"]

    short = task.evaluate(arch, budget=12)
    full = task.evaluate(arch, budget=200)
    rest = task.evaluate(arch, budget=200, weights=short.weights, trained_epochs=12)

    assert short.metrics["cost_seconds"] == pytest.approx(train_time * 12 / 200)
    assert full.metrics["cost_seconds"] == pytest.approx(train_time)
    assert rest.metrics["cost_seconds"] == pytest.approx(train_time * 188 / 200)
    assert short.metrics["cost_seconds"] + rest.metrics["cost_seconds"] == pytest.approx(
        full.metrics["cost_seconds"]
    )
    # Two fidelities: 12 epochs reports the 12-epoch accuracy, 200 the 200-epoch one.
    assert short.metrics["val_accuracy"] == task.evaluate(arch, budget=100).metrics["val_accuracy"]
    assert rest.metrics["val_accuracy"] == full.metrics["val_accuracy_200"]
    assert rest.metrics["val_accuracy"] != short.metrics["val_accuracy"]


def test_curve_holds_the_epochs_the_tables_know() -> None:
    task = NB201TabularTask("cifar100")
    arch = SPACE.from_index(2)
    val_12 = task.evaluate(arch, budget=12).metrics["val_accuracy"]
    val_200 = task.evaluate(arch, budget=200).metrics["val_accuracy"]
    assert task.evaluate(arch, budget=3).curve == []
    assert task.evaluate(arch, budget=12).curve == [{"epoch": 12.0, "val_accuracy": val_12}]
    assert task.evaluate(arch, budget=200).curve == [
        {"epoch": 12.0, "val_accuracy": val_12},
        {"epoch": 200.0, "val_accuracy": val_200},
    ]
    rest = task.evaluate(arch, budget=200, trained_epochs=12)
    assert rest.curve == [{"epoch": 200.0, "val_accuracy": val_200}]


def test_accepts_numpy_integers() -> None:
    result = NB201TabularTask().evaluate(SPACE.from_index(3), budget=np.int64(12))  # type: ignore[arg-type]
    assert len(result.curve) == 1


def test_datasets_differ() -> None:
    arch = SPACE.from_index(1)
    vals = {d: NB201TabularTask(d).evaluate(arch).metrics["val_accuracy"] for d in DATASETS}
    assert vals["cifar10"] > vals["cifar100"] > vals["imagenet"]


def test_best_cifar10() -> None:
    index, accuracy = NB201TabularTask("cifar10").best()
    assert index == 6111
    assert SPACE.to_arch_str(SPACE.from_index(index)) == CIFAR10_BEST
    assert accuracy == pytest.approx(91.607, abs=5e-4)


@pytest.mark.parametrize(
    ("dataset", "optimum"),
    # Published optima (NAS-Bench-201 Table 5; the README notes 46.73 for this data).
    [("cifar10", 91.61), ("cifar100", 73.49), ("imagenet", 46.73)],
)
def test_best_matches_published_optimum(dataset: str, optimum: float) -> None:
    task = NB201TabularTask(dataset)
    index, accuracy = task.best()
    assert accuracy == pytest.approx(optimum, abs=0.01)
    result = task.evaluate(SPACE.from_index(index))
    assert result.metrics["val_accuracy_200"] == accuracy


def test_loading_is_fast() -> None:
    _read_table.cache_clear()
    _columns.cache_clear()
    start = time.perf_counter()
    for dataset in DATASETS:
        _columns(dataset)
    assert time.perf_counter() - start < 2.0


def test_incomplete_table() -> None:
    text = "index,arch_str,cifar10-val\n0,a,1.0\n0,b,2.0\n"
    with pytest.raises(TaskError, match=r"table t\.csv is incomplete(.|\n)*2 rows, 1 distinct"):
        _parse_table(io.StringIO(text), "t.csv")


def test_unknown_dataset() -> None:
    with pytest.raises(TaskError, match=r"unknown NAS-Bench-201 dataset(.|\n)*'cifar-10'"):
        NB201TabularTask("cifar-10")


@pytest.mark.parametrize(
    ("budget", "trained_epochs", "match"),
    [
        (0, 0, r"budget must be an integer(.|\n)*expected: an int >= 1(.|\n)*budget=0"),
        (12.0, 0, r"budget must be an integer(.|\n)*budget=12\.0"),
        (True, 0, r"budget must be an integer(.|\n)*budget=True"),
        (12, 12, r"budget must be(.|\n)*more than trained_epochs=12(.|\n)*budget=12"),
        (5, 12, r"budget must be(.|\n)*expected: an int >= 13"),
        (12, -1, r"trained_epochs must be a non-negative integer(.|\n)*received: -1"),
        (12, 1.0, r"trained_epochs must be a non-negative integer(.|\n)*received: 1\.0"),
    ],
)
def test_bad_epochs(budget: object, trained_epochs: object, match: str) -> None:
    task = NB201TabularTask()
    with pytest.raises(TaskError, match=match):
        task.evaluate(SPACE.from_index(0), budget=budget, trained_epochs=trained_epochs)  # type: ignore[arg-type]


def test_rejects_non_cell_arch() -> None:
    arch = DagSpace().sample(np.random.default_rng(0))
    with pytest.raises(SearchSpaceError, match="not a NAS-Bench-201 cell"):
        NB201TabularTask().evaluate(arch)


def test_time_scale_sleeps_the_simulated_cost() -> None:
    import time

    task = NB201TabularTask(time_scale=0.0005)
    arch = SPACE.from_index(1)
    started = time.perf_counter()
    result = task.evaluate(arch, budget=12)
    slept = time.perf_counter() - started
    assert slept >= result.metrics["cost_seconds"] * 0.0005
    assert result.metrics["wall_time"] >= result.metrics["cost_seconds"] * 0.0005
    with pytest.raises(TaskError, match=r"(?s)invalid time_scale.*received: -1"):
        NB201TabularTask(time_scale=-1)
