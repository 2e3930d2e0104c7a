"""`TrainingTask`: train an architecture for real on an image dataset with PyTorch."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from morphml_dask.exceptions import TaskError, TrainingDivergedError
from morphml_dask.models import build_model, count_flops, count_parameters
from morphml_dask.tasks._base import BaseTask, Evaluation
from morphml_dask.tasks._data import ImageDataset, load_digits

if TYPE_CHECKING:
    from morphml_dask.space import ArchGraph

__all__ = ["TrainingTask"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")


class TrainingTask(BaseTask):
    """Supervised image classification: the budget is the number of epochs.

    Parameters
    ----------
    dataset
        An `ImageDataset`, or ``"digits"`` (scikit-learn's 8x8 digits, the default).
    optimizer
        ``"sgd"`` (Nesterov momentum) or ``"adam"``.
    learning_rate, momentum, weight_decay, batch_size
        The usual recipe settings.
    schedule
        ``"cosine"`` anneals the learning rate to zero at ``max_epochs``; ``"constant"``.
    max_epochs
        Horizon of the learning-rate schedule. Set it to the largest budget when trials are
        continued (ASHA), so a model trained 3 then 9 epochs follows one schedule; by default
        each evaluation anneals over its own budget.
    seed
        Seeds weight initialisation and batch order: on the CPU, the same seed gives the same
        metrics.

    Notes
    -----
    Accuracies are percentages. Only the model's weights carry over a continuation; the
    optimizer's momentum restarts.
    """

    def __init__(
        self,
        dataset: ImageDataset | str = "digits",
        *,
        optimizer: str = "sgd",
        learning_rate: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        batch_size: int = 64,
        schedule: str = "cosine",
        max_epochs: int | None = None,
        seed: int = 0,
    ) -> None:
        _check_choice("optimizer", optimizer, OPTIMIZERS)
        _check_choice("schedule", schedule, SCHEDULES)
        _check_int("batch_size", batch_size, 1, "64")
        _check_int("seed", seed, 0, "0")
        if max_epochs is not None:
            _check_int("max_epochs", max_epochs, 1, "the largest budget, or None")
        _check_number("learning_rate", learning_rate, 0.1, positive=True)
        _check_number("momentum", momentum, 0.9)
        _check_number("weight_decay", weight_decay, 5e-4)
        if isinstance(dataset, str) and dataset == "digits":  # == on an array is elementwise
            dataset = load_digits(seed)
        if not isinstance(dataset, ImageDataset):
            raise TaskError(
                "unknown dataset",
                expected="'digits' or an ImageDataset (make_dataset / open_xarray_dataset)",
                received=repr(dataset)[:200],
                fix="build your data with morphml_dask.tasks.make_dataset(images, labels)",
            )
        self.dataset = dataset
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.schedule = schedule
        self.max_epochs = max_epochs
        self.seed = seed

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": "train",
            "dataset": self.dataset.name,
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "schedule": self.schedule,
            "max_epochs": self.max_epochs,
            "seed": self.seed,
        }

    def build(self, arch: ArchGraph) -> nn.Module:
        """The untrained model for ``arch`` on this dataset, initialised from the seed."""
        torch.manual_seed(self.seed)
        return build_model(arch, self.dataset.num_classes, in_channels=self.dataset.input_shape[0])

    def evaluate(
        self,
        arch: ArchGraph,
        budget: int,
        *,
        device: str = "cpu",
        weights: dict[str, torch.Tensor] | None = None,
        trained_epochs: int = 0,
    ) -> Evaluation:
        _check_budget(budget, trained_epochs, self.max_epochs)
        started = time.perf_counter()
        data = self.dataset
        model = self.build(arch)
        if weights is not None:
            model.load_state_dict(weights)
        model.to(device)
        x_train, y_train = _tensors(data.x_train, data.y_train, device)
        x_val, y_val = _tensors(data.x_val, data.y_val, device)
        opt = self._make_optimizer(model)
        horizon = self.max_epochs or budget
        curve = []
        for epoch in range(trained_epochs, budget):
            for group in opt.param_groups:
                group["lr"] = self._learning_rate(epoch, horizon)
            train_loss = self._train_epoch(model, opt, x_train, y_train, epoch)
            val_loss, val_acc = _score(model, x_val, y_val)
            curve.append(
                {
                    "epoch": float(epoch + 1),
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_accuracy": val_acc,
                }
            )
        test_loss, test_acc = _score(model, *_tensors(data.x_test, data.y_test, device))
        wall = time.perf_counter() - started
        metrics = {
            **{k: v for k, v in curve[-1].items() if k != "epoch"},
            "test_loss": test_loss,
            "test_accuracy": test_acc,
            "params": float(count_parameters(model)),
            "flops": float(count_flops(model, (1, *data.input_shape))),
            "epochs": float(budget),
            "wall_time": wall,
            "cost_seconds": wall,
        }
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return Evaluation(metrics=metrics, curve=curve, weights=state)

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(
                model.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
            )
        return torch.optim.SGD(
            model.parameters(),
            lr=self.learning_rate,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.momentum > 0,
        )

    def _learning_rate(self, epoch: int, horizon: int) -> float:
        if self.schedule == "constant":
            return self.learning_rate
        return 0.5 * self.learning_rate * (1.0 + math.cos(math.pi * epoch / horizon))

    def _train_epoch(
        self,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        x: torch.Tensor,
        y: torch.Tensor,
        epoch: int,
    ) -> float:
        model.train()
        # Batch order depends only on (seed, epoch), so continuing a trial reproduces it.
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(x), generator=generator).to(x.device)
        total = 0.0
        for start in range(0, len(x), self.batch_size):
            batch = order[start : start + self.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"loss became {loss.item()} in epoch {epoch + 1}; lower the learning rate"
                )
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += loss.item() * len(batch)
        return total / len(x)


def _tensors(
    x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


@torch.no_grad()
def _score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in percent, in eval mode."""
    model.eval()
    loss = 0.0
    correct = 0
    for start in range(0, len(x), 512):
        logits = model(x[start : start + 512])
        target = y[start : start + 512]
        loss += nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(dim=1) == target).sum().item())
    return loss / len(x), 100.0 * correct / len(x)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise TaskError(
            f"invalid {name}",
            expected=f"one of {list(allowed)}",
            received=repr(value),
            fix=f"set {name} to one of {list(allowed)}",
        )


def _check_budget(budget: int, trained_epochs: int, max_epochs: int | None) -> None:
    ok = (
        isinstance(budget, int) and isinstance(trained_epochs, int) and 0 <= trained_epochs < budget
    )
    if not ok or (max_epochs is not None and budget > max_epochs):
        limit = f" and at most max_epochs={max_epochs}" if max_epochs is not None else ""
        raise TaskError(
            "invalid training budget",
            expected=f"an integer number of epochs greater than trained_epochs{limit}",
            received=f"budget={budget!r}, trained_epochs={trained_epochs!r}",
            fix="ask for more epochs than the weights were already trained for",
        )


def _check_int(name: str, value: object, low: int, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise TaskError(
            f"invalid {name}",
            expected="a positive integer" if low == 1 else "a non-negative integer",
            received=repr(value),
            fix=f"set {name} to e.g. {example}",
        )


def _check_number(name: str, value: object, example: float, *, positive: bool = False) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 if positive else value >= 0)
    )
    if not ok:
        raise TaskError(
            f"invalid {name}",
            expected=f"a finite number {'> 0' if positive else '>= 0'}",
            received=repr(value),
            fix=f"set {name} to e.g. {example}",
        )
