"""Datasets travel by URL: a Zarr store on the S3 server is opened by the workers themselves,
once per process, and the task's plugin stays a few kilobytes whatever the dataset's size."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from morphml_dask import DatasetError
from morphml_dask.tasks import (
    ImageDataset,
    TrainingTask,
    load_digits,
    make_dataset,
    open_xarray_dataset,
    opened_datasets,
)

xr = pytest.importorskip("xarray")

# 600 RGB images of 32x32: 7.4 MB of float32 pixels.
SAMPLES, SHAPE, CLASSES = 600, (3, 32, 32), 4


def _images(seed: int = 0) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    images = rng.random((SAMPLES, *SHAPE), dtype=np.float32)
    labels = np.arange(SAMPLES) % CLASSES
    return images, labels


def _write(url: str, options: dict[str, Any] | None = None, **arrays: Any) -> None:
    images, labels = _images()
    variables = {
        "images": (("sample", "channel", "y", "x"), arrays.get("images", images)),
        "labels": (("sample",), arrays.get("labels", labels)),
    }
    xr.Dataset(variables).to_zarr(url, mode="w", storage_options=options, zarr_format=2)


def _bucket(options: dict[str, Any]) -> str:
    import s3fs

    bucket = f"data-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    return f"s3://{bucket}/images.zarr"


def test_a_dataset_on_s3_pickles_as_its_url_and_loads_once_per_process(
    s3_options: dict[str, Any],
) -> None:
    from distributed.protocol import pickle as dask_pickle

    from morphml_dask.driver import TaskPlugin

    url = _bucket(s3_options)
    _write(url, s3_options)
    dataset = open_xarray_dataset(url, storage_options=s3_options, seed=3)
    assert dataset.input_shape == SHAPE and dataset.num_classes == CLASSES
    assert dataset.sizes == (360, 120, 120) and dataset.nbytes > 7_000_000
    assert not dataset.is_loaded and url not in opened_datasets()

    plugin = TaskPlugin(TrainingTask(dataset), "search", s3_options)
    # What Dask sends each worker: the task, its dataset's URL and options, not its 7.4 MB.
    payload: bytes = dask_pickle.dumps(plugin)  # type: ignore[no-untyped-call]
    assert len(payload) < 10_000
    assert len(pickle.dumps(dataset)) < 2_000
    assert url not in opened_datasets(), "pickling read the arrays"

    # Two copies, as two searches' plugins would give a worker, share one load.
    first, second = pickle.loads(pickle.dumps(dataset)), pickle.loads(pickle.dumps(dataset))
    assert first.load() is second.load()
    assert opened_datasets().count(url) == 1
    images, labels = _images()
    expected = make_dataset(images, labels, seed=3)
    assert np.array_equal(first.x_train, expected.x_train)
    assert np.array_equal(second.y_test, expected.y_test)
    # Another seed splits differently: another dataset.
    other = open_xarray_dataset(url, storage_options=s3_options, seed=4)
    assert other.load() is not first.load()
    assert opened_datasets().count(url) == 2


def test_the_digits_travel_by_name() -> None:
    from distributed.protocol import pickle as dask_pickle

    from morphml_dask.driver import TaskPlugin

    digits = load_digits(0)
    assert digits.is_loaded and digits.load() is load_digits(0)
    payload: bytes = dask_pickle.dumps(  # type: ignore[no-untyped-call]
        TaskPlugin(TrainingTask(), "search")
    )
    assert len(payload) < 10_000
    copy = pickle.loads(pickle.dumps(digits))
    assert not copy.is_loaded
    assert copy.load() is digits


@pytest.mark.slow
def test_workers_open_the_dataset_themselves(s3_options: dict[str, Any], tmp_path: Path) -> None:
    from morphml_dask.driver import Search
    from morphml_dask.optim import RandomSearch
    from morphml_dask.space import DagSpace
    from morphml_dask.testing import local_client

    url = _bucket(s3_options)
    _write(url, s3_options)
    dataset = open_xarray_dataset(url, storage_options=s3_options)
    # Streamed (7.4 MB > 1 MB), through the trial's own thread: a Dask worker is a daemonic
    # process, which may not start the DataLoader's worker processes.
    task = TrainingTask(dataset, batch_size=64, device_data_mb=1, loader_workers=2)
    optimizer = RandomSearch(DagSpace(max_nodes=3, widths=(8,)), budget=1, max_trials=4, seed=0)
    with local_client(n_workers=2, threads_per_worker=2) as client:
        table = Search(optimizer, task, store=str(tmp_path / "store"), client=client).run()
        opened = client.run(opened_datasets)
    assert list(table["state"]) == ["complete"] * 4, table["error"].tolist()
    ran_on = set(table["worker"])
    assert ran_on and all(opened[worker].count(url) == 1 for worker in ran_on), opened
    assert url not in opened_datasets() and not dataset.is_loaded


def test_an_experiment_checks_its_dataset_without_reading_the_images(tmp_path: Path) -> None:
    from morphml_dask.experiment import load_experiment

    url = str(tmp_path / "images.zarr")
    _write(url)
    document = {
        "name": "by-url",
        "space": {"name": "dag-cnn"},
        "task": {"name": "train", "dataset": url, "storage_options": {}, "epochs": 1},
        "optimizer": {"name": "random-search", "seed": 0},
        "max_trials": 2,
    }
    task = load_experiment(document).task
    assert isinstance(task, TrainingTask) and task.dataset.url == url
    assert task.dataset.input_shape == SHAPE and task.dataset.num_classes == CLASSES
    assert not task.dataset.is_loaded and url not in opened_datasets()


def test_opening_reads_no_images(tmp_path: Path) -> None:
    """NaN pixels pass the opening (it reads the metadata and the labels) and are refused
    where the images are first read."""
    url = str(tmp_path / "nan.zarr")
    images, _ = _images()
    images[5, 0, 0, 0] = np.nan
    _write(url, images=images)
    dataset = open_xarray_dataset(url)
    with pytest.raises(DatasetError, match=r"(?s)NaN or infinite pixels.*1 non-finite"):
        dataset.load()


def test_a_store_that_changed_since_it_was_opened(tmp_path: Path) -> None:
    url = str(tmp_path / "changing.zarr")
    _write(url)
    dataset = open_xarray_dataset(url)
    _write(url, labels=np.arange(SAMPLES) % (CLASSES + 1))
    with pytest.raises(
        DatasetError,
        match=r"(?s)dataset '.*changing\.zarr' changed since it was opened.*\(4, \(3, 32, 32\), "
        r"\(360, 120, 120\)\).*received: \(5,.*write a new URL",
    ):
        dataset.x_train  # noqa: B018 (reading it loads it)


GOOD_IMAGES = (("sample", "y", "x"), np.zeros((SAMPLES, 4, 4), dtype=np.float32))
GOOD_LABELS = (("sample",), np.arange(SAMPLES) % CLASSES)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"images": (("sample", "x"), np.zeros((SAMPLES, 32))), "labels": GOOD_LABELS},
            r"(?s)images of the wrong shape.*\(N, H, W\) or \(N, C, H, W\).*shape \(600, 32\)",
        ),
        (
            {
                "images": (("sample", "y", "x"), np.zeros((SAMPLES, 4, 4), bool)),
                "labels": GOOD_LABELS,
            },
            r"(?s)images of the wrong dtype.*real numbers.*dtype bool",
        ),
        (
            {"images": GOOD_IMAGES, "labels": (("sample",), np.arange(SAMPLES) * 0.5)},
            r"(?s)invalid labels.*non-negative integer class ids.*float64",
        ),
        (
            {"images": GOOD_IMAGES, "labels": (("sample",), np.zeros(SAMPLES, int))},
            r"(?s)single class.*at least two classes",
        ),
    ],
)
def test_a_malformed_store_is_refused_when_opened(
    tmp_path: Path, variables: dict[str, Any], message: str
) -> None:
    url = str(tmp_path / "bad.zarr")
    xr.Dataset(variables).to_zarr(url, mode="w", zarr_format=2)
    with pytest.raises(DatasetError, match=message):
        open_xarray_dataset(url)


def test_datasets_are_immutable() -> None:
    dataset = make_dataset(np.zeros((12, 1, 4, 4)), np.arange(12) % 3)
    with pytest.raises(AttributeError, match="ImageDataset is immutable: cannot set 'name'"):
        dataset.name = "other"
    assert isinstance(dataset, ImageDataset) and dataset.url is None
    assert repr(dataset) == (
        "ImageDataset(name='arrays', num_classes=3, input_shape=(1, 4, 4), sizes=(7, 2, 3))"
    )
