"""What a trial does on a worker: datasets, the training recipe, tabular benchmark tasks."""

from __future__ import annotations

from morphml_dask.tasks._base import DEFAULT_EPOCHS, BaseTask, Evaluation, check_epochs
from morphml_dask.tasks._data import ImageDataset, load_digits, make_dataset, open_xarray_dataset
from morphml_dask.tasks._nb201 import NB201TabularTask
from morphml_dask.tasks._train import TrainingTask

__all__ = [
    "DEFAULT_EPOCHS",
    "BaseTask",
    "Evaluation",
    "ImageDataset",
    "NB201TabularTask",
    "TrainingTask",
    "check_epochs",
    "load_digits",
    "make_dataset",
    "open_xarray_dataset",
]
