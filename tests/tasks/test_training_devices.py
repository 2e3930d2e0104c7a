"""`TrainingTask` on its devices: data on the device once per process or streamed through a
DataLoader, bf16 autocast, torch.compile, data-parallel wrapping, and the reduction stages
saved with the weights."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from morphml_dask.exceptions import TaskError
from morphml_dask.space import ArchGraph, DagSpace, Node
from morphml_dask.storage import open_store
from morphml_dask.tasks import (
    TrainingTask,
    TrialContext,
    device_tensors,
    load_digits,
    make_dataset,
)
from morphml_dask.tasks._feed import DeviceFeed, LoaderFeed, feed_for
from morphml_dask.trial import Trial, TrialRecord, TrialResult

SMALL = ArchGraph(
    ["input", Node("conv", kernel=3, channels=16), "output"],
    [(0, 1), (1, 2), (0, 2)],
)


def test_a_small_dataset_is_put_on_the_device_once_and_shared() -> None:
    digits = load_digits(0)
    tensors = device_tensors(digits, "cpu")
    assert device_tensors(digits, "cpu") is tensors
    # An unpickled copy (what a worker gets from each search's plugin) shares them too.
    assert device_tensors(pickle.loads(pickle.dumps(digits)), "cpu") is tensors
    x, y = tensors["train"]
    assert x.shape == (digits.sizes[0], 1, 8, 8) and y.dtype == torch.int64
    feed = feed_for(digits, "cpu", device_data_mb=256, loader_workers=2)
    assert isinstance(feed, DeviceFeed) and feed.tensors is tensors


def test_a_large_dataset_streams_with_the_same_batches_and_results() -> None:
    digits = load_digits(0)  # 0.46 MB
    feed = feed_for(digits, "cpu", device_data_mb=0.1, loader_workers=2)
    assert isinstance(feed, LoaderFeed) and feed.workers == 2 and not feed.pinned
    resident = DeviceFeed(digits, "cpu")
    order = torch.randperm(digits.sizes[0], generator=torch.Generator().manual_seed(0))
    streamed = list(feed.batches("train", 100, order))
    assert len(streamed) == 11
    for (x, y), (x_ref, y_ref) in zip(streamed, resident.batches("train", 100, order), strict=True):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)

    on_device = TrainingTask(seed=1).evaluate(SMALL, 2)
    through_loader = TrainingTask(seed=1, device_data_mb=0.1, loader_workers=2).evaluate(SMALL, 2)
    assert through_loader.curve == on_device.curve
    assert through_loader.metrics["test_loss"] == on_device.metrics["test_loss"]


class _Recording(TrainingTask):
    """Records the dtype of the logits of every forward pass."""

    dtypes: set[torch.dtype]

    def build(self, arch: ArchGraph) -> nn.Module:
        model = super().build(arch)
        model.register_forward_hook(lambda _m, _i, out: self.dtypes.add(out.dtype))
        return model


def test_bf16_autocast_on_the_cpu() -> None:
    results = {}
    for precision in ("fp32", "bf16"):
        task = _Recording(seed=0, precision=precision)
        task.dtypes = set()
        results[precision] = task.evaluate(SMALL, 3)
        # Training and scoring run under autocast; counting the FLOPs does not.
        expected = {torch.bfloat16, torch.float32} if precision == "bf16" else {torch.float32}
        assert task.dtypes == expected
    assert results["bf16"].curve != results["fp32"].curve
    bf16, fp32 = results["bf16"], results["fp32"]
    assert bf16.curve[-1]["train_loss"] < bf16.curve[0]["train_loss"]
    assert abs(bf16.metrics["val_accuracy"] - fp32.metrics["val_accuracy"]) <= 5.0
    weights = results["bf16"].weights
    assert weights is not None and all(
        v.dtype in (torch.float32, torch.int64) for v in weights.values()
    )


def test_compile_and_data_parallel_wrap_the_model() -> None:
    model = TrainingTask().build(SMALL)
    assert TrainingTask().wrap(model, ("cpu",)) is model
    compiled = TrainingTask(compile=True).wrap(model, ("cpu",))
    # torch.compile is lazy: the wrapper compiles on its first call (not run here: a CPU
    # compilation takes tens of seconds).
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled._orig_mod is model
    assert TrainingTask(compile=True).to_dict()["compile"] is True
    with pytest.raises(
        TaskError,
        match=r"(?s)invalid devices.*several CUDA GPUs to train data-parallel on.*\['cpu', 'cpu'\]",
    ):
        TrainingTask().wrap(model, ("cpu", "cpu"))


def _image_dataset(side: int) -> Any:
    rng = np.random.default_rng(0)
    return make_dataset(rng.random((60, 3, side, side)), np.arange(60) % 3, name=f"{side}px")


def test_reductions_are_picked_from_the_image_size_and_saved_with_the_weights(
    tmp_path: Path,
) -> None:
    from morphml_dask.models import load_model

    assert TrainingTask().model_reductions() == 0  # the 8x8 digits: networks unchanged
    assert TrainingTask(_image_dataset(32)).model_reductions() == 2
    assert TrainingTask(_image_dataset(32), reductions=1).model_reductions() == 1
    task = TrainingTask(_image_dataset(16), batch_size=16)
    assert task.model_reductions() == 1
    store = open_store(str(tmp_path / "store"))
    trial = Trial("t000001", DagSpace().sample(np.random.default_rng(0)), budget=1)
    evaluation = task.run(trial, TrialContext(trial, store=store))
    store.append_records([TrialRecord(trial, TrialResult.complete(trial.id, evaluation.metrics))])
    saved = store.saved_weights(trial.id)
    assert (saved.num_classes, saved.in_channels, saved.reductions) == (3, 3, 1)
    model = load_model(store, trial.id)
    x = torch.from_numpy(task.dataset.x_test)
    expected = task.build(trial.arch)  # type: ignore[arg-type]
    expected.load_state_dict(evaluation.weights)  # type: ignore[arg-type]
    assert torch.equal(model(x), expected.eval()(x))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"precision": "fp16"},
            r"(?s)invalid precision.*one of \['fp32', 'bf16'\].*'fp16'.*set precision to one of",
        ),
        ({"compile": "yes"}, r"(?s)invalid compile.*True or False.*'yes'.*compile: false"),
        ({"compile": 1}, r"(?s)invalid compile.*True or False.*received: 1"),
        (
            {"reductions": -1},
            r"(?s)invalid reductions.*an integer >= 0.*-1.*pick them from the image size",
        ),
        ({"device_data_mb": -5}, r"(?s)invalid device_data_mb.*a number >= 0.*-5.*e\.g\. 256"),
        ({"device_data_mb": "1GB"}, r"(?s)invalid device_data_mb.*a number >= 0.*'1GB'"),
        ({"loader_workers": 1.5}, r"(?s)invalid loader_workers.*an integer >= 0.*1\.5"),
    ],
)
def test_bad_device_options(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TaskError, match=message):
        TrainingTask(**kwargs)


def test_an_experiment_document_takes_the_device_options() -> None:
    from morphml_dask.experiment import load_experiment

    options = {
        "precision": "bf16",
        "compile": True,
        "reductions": 0,
        "device_data_mb": 64,
        "loader_workers": 0,
    }
    document = {
        "name": "devices",
        "space": {"name": "dag-cnn"},
        "task": {"name": "train", "dataset": "digits", "epochs": 1, **options},
        "optimizer": {"name": "random-search", "seed": 0},
        "max_trials": 2,
    }
    experiment = load_experiment(document)
    task = experiment.task
    assert isinstance(task, TrainingTask)
    assert {key: getattr(task, key) for key in options} == options
    assert experiment.to_dict()["task"] | options == experiment.to_dict()["task"]
    assert load_experiment(experiment.to_dict()) == experiment
