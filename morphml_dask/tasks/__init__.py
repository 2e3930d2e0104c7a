"""What a trial does on a worker: your own train function (`FunctionTask`, with its
`TrialContext`), the built-in training recipe, tabular benchmark tasks, datasets."""

from __future__ import annotations

from morphml_dask.tasks._base import DEFAULT_EPOCHS, BaseTask, Evaluation, check_epochs
from morphml_dask.tasks._context import TrialContext, trial_seed
from morphml_dask.tasks._data import ImageDataset, load_digits, make_dataset, opened_datasets
from morphml_dask.tasks._feed import device_tensors
from morphml_dask.tasks._function import FunctionTask, TrainFunction
from morphml_dask.tasks._nb201 import NB201TabularTask
from morphml_dask.tasks._proxy import ModelBuilder, ProxyTask
from morphml_dask.tasks._reported import reported_metrics
from morphml_dask.tasks._train import TrainingTask
from morphml_dask.tasks._warmup import check_warmup_task, is_warmup, score_for_warmup
from morphml_dask.tasks._zarr import ZarrSource, open_xarray_dataset

__all__ = [
    "DEFAULT_EPOCHS",
    "BaseTask",
    "Evaluation",
    "FunctionTask",
    "ImageDataset",
    "ModelBuilder",
    "NB201TabularTask",
    "ProxyTask",
    "TrainFunction",
    "TrainingTask",
    "TrialContext",
    "ZarrSource",
    "check_epochs",
    "check_warmup_task",
    "device_tensors",
    "is_warmup",
    "load_digits",
    "make_dataset",
    "open_xarray_dataset",
    "opened_datasets",
    "reported_metrics",
    "score_for_warmup",
    "trial_seed",
]
