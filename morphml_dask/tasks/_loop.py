"""The training loop of `TrainingTask`: the module that trains on its devices, its optimizer
and learning-rate schedule, and epochs of training and scoring."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import TaskError, TrainingDivergedError
from morphml_dask.validation import invalid

if TYPE_CHECKING:
    import torch
    from torch import nn

    from morphml_dask.tasks._feed import Feed
    from morphml_dask.tasks._train import TrainingTask

__all__ = ["TrainingLoop", "check_precision", "learning_rate", "make_optimizer", "wrap_for_devices"]

# Validation and test batches: inference only, so larger than any training batch.
EVAL_BATCH = 512


def wrap_for_devices(model: nn.Module, devices: Sequence[str], *, compile: bool) -> nn.Module:
    """The module that trains: ``model`` itself, compiled if ``compile`` is set, or,
    for several GPUs, `torch.nn.DataParallel` over them (``model`` on the first).

    Raises
    ------
    TaskError
        When ``devices`` names several devices that are not all CUDA GPUs.
    """
    import torch
    from torch import nn

    if len(devices) > 1:
        if any(torch.device(d).type != "cuda" for d in devices):
            raise invalid(
                TaskError,
                "devices",
                list(devices),
                expected="one device, or several CUDA GPUs to train data-parallel on",
                fix="train on one device, e.g. devices=('cpu',)",
            )
        return nn.DataParallel(model, device_ids=[torch.device(d) for d in devices])
    if compile:
        compiled: nn.Module = torch.compile(model)  # type: ignore[assignment]
        return compiled
    return model


def make_optimizer(task: TrainingTask, model: nn.Module) -> torch.optim.Optimizer:
    import torch

    if task.optimizer == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=task.learning_rate, weight_decay=task.weight_decay
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=task.learning_rate,
        momentum=task.momentum,
        weight_decay=task.weight_decay,
        nesterov=task.momentum > 0,
    )


def learning_rate(schedule: str, peak: float, epoch: int, horizon: int) -> float:
    """The rate of ``epoch`` (0-based) of ``horizon``: cosine-annealed from ``peak``."""
    if schedule == "constant":
        return peak
    return 0.5 * peak * (1.0 + math.cos(math.pi * epoch / horizon))


class TrainingLoop:
    """One evaluation's training loop: the module that trains, the batches it is fed and
    the precision of its forward passes.

    Losses are summed on the device and read once per epoch: reading each batch's loss
    would wait for the GPU at every step.
    """

    def __init__(self, model: nn.Module, feed: Feed, precision: str) -> None:
        self.model = model
        self.feed = feed
        self.bf16 = precision == "bf16"

    def autocast(self) -> AbstractContextManager[Any]:
        import torch

        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.feed.device).type, dtype=torch.bfloat16)

    def train_epoch(
        self, opt: torch.optim.Optimizer, batch_size: int, seed: int, epoch: int
    ) -> float:
        """One epoch of training; the mean training loss."""
        import torch
        from torch import nn

        model, feed = self.model, self.feed
        model.train()
        # Batch order depends only on (seed, epoch), so continuing a trial reproduces it.
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(feed.sizes["train"], generator=generator)
        total = torch.zeros((), dtype=torch.float64, device=feed.device)
        for x, y in feed.batches("train", batch_size, order):
            opt.zero_grad(set_to_none=True)
            with self.autocast():
                loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += loss.detach().double() * len(y)
        mean = total.item() / feed.sizes["train"]
        if not math.isfinite(mean):
            raise TrainingDivergedError(
                f"loss became {mean} in epoch {epoch + 1}; lower the learning rate"
            )
        return mean

    def score(self, split: str) -> tuple[float, float]:
        """Mean cross-entropy and accuracy in percent on ``split``, in eval mode."""
        import torch
        from torch import nn

        model, feed = self.model, self.feed
        model.eval()
        loss = torch.zeros((), dtype=torch.float64, device=feed.device)
        correct = torch.zeros((), dtype=torch.int64, device=feed.device)
        with torch.no_grad():
            for x, y in feed.batches(split, EVAL_BATCH):
                with self.autocast():
                    logits = model(x).float()
                loss += nn.functional.cross_entropy(logits, y, reduction="sum").double()
                correct += (logits.argmax(dim=1) == y).sum()
        count = feed.sizes[split]
        return loss.item() / count, 100.0 * correct.item() / count


def check_precision(precision: str, device: str) -> None:
    """Refuse bf16 where torch has no bfloat16 autocast: every trial would fail alike."""
    import torch

    if precision == "fp32":
        return
    kind = torch.device(device).type
    if not torch.amp.is_autocast_available(kind) or (
        kind == "cuda" and not torch.cuda.is_bf16_supported()
    ):
        raise TaskError(
            f"precision 'bf16' is not supported on {device}",
            expected="a device with bfloat16 autocast (CPUs, GPUs of compute capability 8 "
            "and newer)",
            received=f"device {device!r}",
            fix="set precision='fp32'",
            key="precision",
        )
