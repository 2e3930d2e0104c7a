"""`TrainingTask`: train an architecture for real on an image dataset with PyTorch."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask.exceptions import InputError, TaskError, TrainingDivergedError
from morphml_dask.registry import Schema, register_kind
from morphml_dask.tasks._base import (
    DEFAULT_EPOCHS,
    BaseTask,
    Evaluation,
    architecture_of,
    check_epochs,
)
from morphml_dask.tasks._data import ImageDataset, load_digits, open_xarray_dataset
from morphml_dask.validation import (
    check_choice,
    check_int,
    check_number,
    check_options,
    invalid,
    is_int,
)

if TYPE_CHECKING:
    # torch loads when a model is built or trained, not when the task is imported: the
    # driver and the experiment loader import this module without training anything.
    import torch
    from torch import nn

    from morphml_dask.space import ArchGraph
    from morphml_dask.tasks._context import TrialContext
    from morphml_dask.trial import Trial

__all__ = ["TrainingTask"]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")
# Seeds are stored as signed 64-bit integers; torch's generators take no more.
MAX_SEED = 2**63 - 1


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

    name = "train"

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
        self.optimizer = check_choice("optimizer", optimizer, OPTIMIZERS, error=TaskError)
        self.schedule = check_choice("schedule", schedule, SCHEDULES, error=TaskError)
        self.batch_size = check_int(
            "batch_size", batch_size, low=1, error=TaskError, fix="set batch_size to e.g. 64"
        )
        self.seed = check_int(
            "seed", seed, low=0, high=MAX_SEED, error=TaskError, fix="set seed to e.g. 0"
        )
        self.max_epochs = (
            None
            if max_epochs is None
            else check_int(
                "max_epochs",
                max_epochs,
                low=1,
                error=TaskError,
                fix="set max_epochs to the largest budget, or None",
            )
        )
        self.learning_rate = _check_rate("learning_rate", learning_rate, 0.1, positive=True)
        self.momentum = _check_rate("momentum", momentum, 0.9)
        self.weight_decay = _check_rate("weight_decay", weight_decay, 5e-4)
        if isinstance(dataset, str) and dataset == "digits":  # == on an array is elementwise
            dataset = load_digits(self.seed)
        if not isinstance(dataset, ImageDataset):
            raise TaskError(
                "unknown dataset",
                expected="'digits' or an ImageDataset (make_dataset / open_xarray_dataset)",
                received=repr(dataset)[:200],
                fix="build your data with morphml_dask.tasks.make_dataset(images, labels)",
            )
        self.dataset = dataset

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
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
        import torch

        from morphml_dask.models import build_model

        torch.manual_seed(self.seed)
        return build_model(arch, self.dataset.num_classes, in_channels=self.dataset.input_shape[0])

    def run(self, trial: Trial, ctx: TrialContext) -> Evaluation:
        """Train the trial's architecture on ``ctx.device``. A promotion (a trial with a
        ``parent``) continues from the weights its parent saved; the weights are saved
        under the trial id and rung, unless the objective came out NaN or infinite."""
        from morphml_dask.storage import ExperimentStore

        arch = architecture_of(trial, self)
        store = ctx.store if isinstance(ctx.store, ExperimentStore) else None
        weights = None
        if trial.parent is not None and store is not None:
            weights = store.load_weights(trial.parent)
        evaluation = self.evaluate(
            arch,
            trial.budget,
            device=ctx.device,
            weights=weights,
            trained_epochs=trial.parent_budget if weights is not None else 0,
        )
        objective = evaluation.metrics.get(self.objective, math.nan)
        if store is not None and evaluation.weights is not None and math.isfinite(objective):
            store.save_weights(
                trial.id,
                trial.rung,
                evaluation.weights,
                num_classes=self.dataset.num_classes,
                in_channels=self.dataset.input_shape[0],
            )
        return evaluation

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
        from morphml_dask.models import count_flops, count_parameters

        started = time.perf_counter()
        data = self.dataset
        model = self.build(arch)
        if weights is not None:
            model.load_state_dict(weights)
        model.to(device)
        curve = self._train(model, range(trained_epochs, budget), device)
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

    def _train(self, model: nn.Module, epochs: range, device: str) -> list[dict[str, float]]:
        """Train ``model`` through ``epochs`` (0-based), scoring it after each: the curve."""
        data = self.dataset
        x_train, y_train = _tensors(data.x_train, data.y_train, device)
        x_val, y_val = _tensors(data.x_val, data.y_val, device)
        opt = self._make_optimizer(model)
        horizon = self.max_epochs or epochs.stop
        curve = []
        for epoch in epochs:
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
        return curve

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        import torch

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
        import torch
        from torch import nn

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
    import torch

    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


def _score(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in percent, in eval mode."""
    import torch
    from torch import nn

    model.eval()
    loss = 0.0
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), 512):
            logits = model(x[start : start + 512])
            target = y[start : start + 512]
            loss += nn.functional.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == target).sum().item())
    return loss / len(x), 100.0 * correct / len(x)


def _check_budget(budget: int, trained_epochs: int, max_epochs: int | None) -> None:
    ok = is_int(budget) and is_int(trained_epochs) and 0 <= trained_epochs < budget
    if not ok or (max_epochs is not None and budget > max_epochs):
        limit = f" and at most max_epochs={max_epochs}" if max_epochs is not None else ""
        raise TaskError(
            "invalid training budget",
            expected=f"an integer number of epochs greater than trained_epochs{limit}",
            received=f"budget={budget!r}, trained_epochs={trained_epochs!r}",
            fix="ask for more epochs than the weights were already trained for",
        )


def _check_rate(name: str, value: object, example: float, *, positive: bool = False) -> float:
    """A learning rate (> 0), momentum or weight decay (>= 0)."""
    return check_number(
        name,
        value,
        low=0,
        strict_low=positive,
        error=TaskError,
        fix=f"set {name} to e.g. {example}",
    )


# -- the experiment document's task section --------------------------------------------------

_ZARR_URL = (
    "'digits' or a Zarr store URL with a scheme or a .zarr suffix "
    "(s3://bucket/images.zarr, ./data/images.zarr)"
)


def _document_dataset(settings: dict[str, Any]) -> dict[str, Any]:
    """The section's arguments with the dataset its URL names opened (``storage_options``
    are the store's fsspec options); ``"digits"`` is left for the constructor to load."""
    url, options = settings.get("dataset", "digits"), settings.get("storage_options")
    if isinstance(url, str) and url == "digits":
        if options:
            raise invalid(
                TaskError,
                "storage_options",
                options,
                expected="absent: digits ships with scikit-learn",
            )
        return settings
    if not isinstance(url, str) or ("://" not in url and not url.rstrip("/").endswith(".zarr")):
        raise invalid(TaskError, "dataset", url, expected=_ZARR_URL)
    seed = settings.get("seed", 0)
    if not (is_int(seed) and seed >= 0):
        return settings  # the constructor refuses the seed before it looks at the dataset
    try:
        dataset = open_xarray_dataset(url, storage_options=options or None, seed=int(seed))
    except InputError:
        raise
    except Exception as error:  # any failure to read a store the user named
        raise TaskError(
            "cannot open the Zarr dataset of task.dataset",
            expected="a readable Zarr store with images and labels variables",
            received=f"{url!r}: {type(error).__name__}: {error}"[:300],
            fix="check the URL and task.storage_options (credentials, endpoint_url)",
        ) from error
    return {**settings, "dataset": dataset}


def _span_budgets(section: dict[str, Any], optimizer: object) -> None:
    """Make one learning-rate schedule span the largest budget the optimizer asks for.

    An optimizer with a ``budgets`` ladder (ASHA) continues trials from rung to rung, so
    ``max_epochs`` defaults to its top rung; any optimizer's budgets must fit in it.
    """
    ladder = getattr(optimizer, "budgets", None)
    largest = max(ladder) if ladder else getattr(optimizer, "budget", None)
    max_epochs = section.get("max_epochs")
    if max_epochs is None and ladder:
        section["max_epochs"] = largest
    elif is_int(max_epochs) and is_int(largest) and max_epochs < largest:
        raise invalid(
            TaskError,
            "max_epochs",
            max_epochs,
            expected=f"at least the largest budget the optimizer asks for, {largest}",
            fix=f"set max_epochs to {largest} or more, or remove it",
        )


def _check_storage_options(options: object) -> Any:
    return check_options("storage_options", options, error=TaskError)


register_kind(
    "task",
    TrainingTask.name,
    TrainingTask,
    Schema(
        document_only={"epochs": check_epochs, "storage_options": _check_storage_options},
        defaults={"epochs": DEFAULT_EPOCHS},
        prepare=_document_dataset,
        fit=_span_budgets,
    ),
)
