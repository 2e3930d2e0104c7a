from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from morphml_dask import DatasetError, MorphMLError
from morphml_dask.exceptions import TrainingDivergedError
from morphml_dask.space import ArchGraph, DagSpace, Node
from morphml_dask.tasks import TrainingTask, load_digits, make_dataset, open_xarray_dataset

SMALL = ArchGraph(
    ["input", Node("conv", kernel=3, channels=32), Node("conv", kernel=3, channels=32), "output"],
    [(0, 1), (1, 2), (2, 3), (0, 3)],
)


def test_small_dag_reaches_90_percent_on_digits_in_five_epochs() -> None:
    assert DagSpace().contains(SMALL)
    result = TrainingTask(seed=0).evaluate(SMALL, 5)
    assert result.metrics["val_accuracy"] >= 90.0
    assert result.metrics["test_accuracy"] >= 90.0
    assert [c["epoch"] for c in result.curve] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert result.curve[-1]["val_loss"] < result.curve[0]["val_loss"]
    assert result.metrics["params"] > 0 and result.metrics["flops"] > 0
    assert result.metrics["cost_seconds"] == result.metrics["wall_time"] > 0
    assert result.weights is not None and any(k.endswith("weight") for k in result.weights)


def test_training_is_deterministic_under_a_seed_on_cpu() -> None:
    first = TrainingTask(seed=3).evaluate(SMALL, 2)
    again = TrainingTask(seed=3).evaluate(SMALL, 2)
    other = TrainingTask(seed=4).evaluate(SMALL, 2)
    assert first.curve == again.curve
    assert first.metrics["test_loss"] == again.metrics["test_loss"]
    assert first.curve != other.curve


def test_training_continues_from_saved_weights() -> None:
    task = TrainingTask(seed=0, max_epochs=4)
    short = task.evaluate(SMALL, 2)
    assert short.weights is not None
    continued = task.evaluate(SMALL, 4, weights=short.weights, trained_epochs=2)
    assert [c["epoch"] for c in continued.curve] == [3.0, 4.0]
    # Continuing from trained weights starts far above a fresh model's first epoch.
    fresh = task.evaluate(SMALL, 1)
    assert continued.curve[0]["val_loss"] < fresh.curve[0]["val_loss"]
    assert continued.metrics["val_accuracy"] >= 85.0


def test_divergence_is_reported() -> None:
    task = TrainingTask(learning_rate=1e12, weight_decay=0.0, schedule="constant")
    with pytest.raises(TrainingDivergedError, match="lower the learning rate"):
        task.evaluate(SMALL, 3)


def test_sampled_architectures_train() -> None:
    space, rng = DagSpace(max_nodes=3, widths=(8, 16)), np.random.default_rng(0)
    for _ in range(3):
        result = TrainingTask().evaluate(space.sample(rng), 1)
        assert 0.0 <= result.metrics["val_accuracy"] <= 100.0


@pytest.mark.parametrize(
    ("kwargs", "budget", "message"),
    [
        ({"optimizer": "lbfgs"}, 1, r"(?s)invalid optimizer.*\['sgd', 'adam'\].*'lbfgs'"),
        ({"schedule": "step"}, 1, r"(?s)invalid schedule.*'step'"),
        (
            {"batch_size": 0},
            1,
            r"(?s)invalid batch_size.*an integer >= 1.*received: 0 \(int\).*e\.g\. 64",
        ),
        ({"dataset": "mnist"}, 1, r"(?s)unknown dataset.*received: 'mnist'.*make_dataset"),
        ({}, 0, r"(?s)invalid training budget.*greater than trained_epochs.*budget=0"),
        ({"max_epochs": 3}, 5, r"(?s)invalid training budget.*at most max_epochs=3.*budget=5"),
    ],
)
def test_bad_recipe(kwargs: dict[str, object], budget: int, message: str) -> None:
    with pytest.raises(MorphMLError, match=message):
        TrainingTask(**kwargs).evaluate(SMALL, budget)  # type: ignore[arg-type]


def test_digits_dataset() -> None:
    data = load_digits()
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 1797
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0


GOOD_X = np.zeros((12, 1, 4, 4), dtype=np.float32)
GOOD_Y = np.arange(12) % 3


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (
            np.zeros((12, 4)),
            GOOD_Y,
            r"(?s)images of the wrong shape.*\(N, H, W\) or \(N, C, H, W\).*shape \(12, 4\)",
        ),
        (
            np.zeros((0, 1, 4, 4)),
            GOOD_Y[:0],
            r"(?s)images of the wrong shape.*non-empty.*shape \(0, 1, 4, 4\)",
        ),
        (GOOD_X.astype(str), GOOD_Y, r"(?s)images of the wrong dtype.*real numbers.*astype"),
        (np.full((12, 1, 4, 4), np.nan), GOOD_Y, r"(?s)NaN or infinite.*192 non-finite"),
        (
            GOOD_X,
            GOOD_Y[:5],
            r"(?s)labels of the wrong shape.*shape \(12,\).*received: shape \(5,\)",
        ),
        (GOOD_X, GOOD_Y.astype(float), r"(?s)invalid labels.*non-negative integer.*float64"),
        (GOOD_X, GOOD_Y * 0, r"(?s)single class.*at least two classes"),
    ],
)
def test_bad_arrays(images: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        make_dataset(images, labels, name="mine")


def test_bad_split() -> None:
    with pytest.raises(DatasetError, match=r"(?s)malformed split.*train, val or test"):
        make_dataset(GOOD_X, GOOD_Y, split=["train"] * 11 + ["holdout"])
    with pytest.raises(DatasetError, match=r"(?s)empty test split.*split sizes \[6, 6, 0\]"):
        make_dataset(GOOD_X, GOOD_Y, split=["train"] * 6 + ["val"] * 6)


def _write_store(url: str, with_split: bool) -> None:
    rng = np.random.default_rng(0)
    variables = {
        "images": (("sample", "channel", "y", "x"), rng.random((30, 3, 6, 6)).astype("float32")),
        "labels": (("sample",), rng.integers(0, 4, 30)),
    }
    if with_split:
        variables["split"] = (("sample",), np.array(["train"] * 20 + ["val"] * 5 + ["test"] * 5))
    xr.Dataset(variables).to_zarr(url, mode="w", zarr_format=2)


def test_xarray_dataset_from_a_local_zarr_folder(tmp_path: Path) -> None:
    url = str(tmp_path / "data.zarr")
    _write_store(url, with_split=True)
    data = open_xarray_dataset(url)
    assert data.input_shape == (3, 6, 6)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (20, 5, 5)
    result = TrainingTask(data, batch_size=8).evaluate(SMALL, 1)
    assert np.isfinite(result.metrics["val_loss"])


def test_xarray_dataset_through_fsspec_memory() -> None:
    _write_store("memory://morphml-test/data.zarr", with_split=False)
    data = open_xarray_dataset("memory://morphml-test/data.zarr")
    assert len(data.x_train) == 18 and data.num_classes <= 4


def test_xarray_dataset_with_other_variable_names(tmp_path: Path) -> None:
    url = str(tmp_path / "data.zarr")
    _write_store(url, with_split=False)
    with pytest.raises(DatasetError, match=r"(?s)lacks variables \['pixels'\].*pass images=\.\.\."):
        open_xarray_dataset(url, images="pixels")
