"""`TrainingTask`: train an architecture for real on an image dataset with PyTorch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import InputError, TaskError
from morphml_dask.registry import Schema, register_kind
from morphml_dask.tasks._base import (
    DEFAULT_EPOCHS,
    BaseTask,
    Evaluation,
    architecture_of,
    check_epochs,
)
from morphml_dask.tasks._data import ImageDataset, load_digits
from morphml_dask.tasks._feed import DEFAULT_DEVICE_DATA_MB, DEFAULT_LOADER_WORKERS, feed_for
from morphml_dask.tasks._limits import check_limits, check_proxies, within_limits
from morphml_dask.tasks._loop import (
    TrainingLoop,
    check_precision,
    learning_rate,
    make_optimizer,
    wrap_for_devices,
)
from morphml_dask.tasks._zarr import open_xarray_dataset
from morphml_dask.validation import (
    check_bool,
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

# Given each point of the curve as it is made; True stops the training (a pruned trial).
EpochHook = Callable[[dict[str, float]], bool]
Curve = list[dict[str, float]]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("fp32", "bf16")
# Seeds are stored as signed 64-bit integers; torch's generators take no more.
MAX_SEED = 2**63 - 1


class TrainingTask(BaseTask):
    """Supervised image classification: the budget is the number of epochs.

    Parameters
    ----------
    dataset
        An `ImageDataset`, or ``"digits"`` (scikit-learn's 8x8 digits, the default). A
        dataset opened from a URL (`open_xarray_dataset`) travels to the workers as its URL
        and they open it themselves, once per process.
    optimizer
        ``"sgd"`` (Nesterov momentum) or ``"adam"``.
    learning_rate, momentum, weight_decay, batch_size
        The usual recipe settings.
    schedule
        ``"cosine"`` anneals the learning rate to zero at ``max_epochs``; ``"constant"``.
    inherit_learning_rate
        The learning rate a child that inherited a parent's weights (`Trial.inherits`)
        starts its own schedule from, annealed over its own epochs (a warm restart, as in
        LEMONADE). Default: a tenth of ``learning_rate``: on digits, one epoch at the full
        0.1 undid what a child inherited (a parent at 98 % gave children at 82-95 %), one at
        0.01 kept it (95-97 %).
    max_epochs
        Horizon of the learning-rate schedule. Set it to the largest budget when trials are
        continued (ASHA), so a model trained 3 then 9 epochs follows one schedule; by default
        each evaluation anneals over its own budget.
    seed
        Seeds weight initialisation and batch order: on the CPU, the same seed gives the same
        metrics.
    precision
        ``"fp32"``, or ``"bf16"``: forward passes under bfloat16 autocast (on GPUs with
        bfloat16 and on CPUs), weights and optimizer steps in float32.
    compile
        Compile the model with `torch.compile` before it trains: the first epoch pays for the
        compilation, the others run faster.
    reductions
        The strided stages of a `DagSpace` network; None picks them from the image size
        (`morphml_dask.models.reductions_for`: 0 for 8x8 images, 2 for 32x32). Saved with
        the weights, so that `morphml_dask.models.load_model` rebuilds the same network.
        NAS-Bench-201 networks have their own reduction cells and ignore it.
    proxies
        Zero-cost proxies (`PROXIES`) as ``proxy_<name>``, of a model that starts from scratch.
    limits
        Upper bounds on proxies (``{"params": 1e6, "latency_ms": 5}``): a candidate above one
        is rejected before it trains (`CandidateRejected`, a failure of kind ``constraint``).
    device_data_mb
        A dataset of at most this many megabytes (2**20 bytes, all splits) is copied to the
        device once per worker process and shared by its trials; a larger one streams from
        host memory through a `torch.utils.data.DataLoader`.
    loader_workers
        The worker processes of that `DataLoader`. A Dask worker is a daemonic process,
        which may not start any: there, set ``distributed.worker.daemon`` to false, or the
        trial's own thread gathers the batches.

    Notes
    -----
    Accuracies are percentages. Only the model's weights carry over a continuation; the
    optimizer's momentum restarts. A trial lent several GPUs (``gpus_per_trial`` of 2 or
    more) trains data-parallel on them with `torch.nn.DataParallel`: each batch is split
    across the devices and the gradients are summed on the first; such a trial is not
    compiled (the compiled module would not reach DataParallel's replicas).
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
        inherit_learning_rate: float | None = None,
        seed: int = 0,
        precision: str = "fp32",
        compile: bool = False,
        reductions: int | None = None,
        device_data_mb: float = DEFAULT_DEVICE_DATA_MB,
        loader_workers: int = DEFAULT_LOADER_WORKERS,
        proxies: Sequence[str] = (),
        limits: Mapping[str, float] | None = None,
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
        self.inherit_learning_rate = (
            self.learning_rate / 10
            if inherit_learning_rate is None
            else _check_rate("inherit_learning_rate", inherit_learning_rate, 0.01, positive=True)
        )
        self.momentum = _check_rate("momentum", momentum, 0.9)
        self.weight_decay = _check_rate("weight_decay", weight_decay, 5e-4)
        self.precision = check_choice("precision", precision, PRECISIONS, error=TaskError)
        self.compile = check_bool("compile", compile, error=TaskError, fix="set compile: false")
        self.reductions = _check_reductions(reductions)
        self.device_data_mb = check_number(
            "device_data_mb", device_data_mb, low=0, error=TaskError, fix="set it to e.g. 256"
        )
        self.loader_workers = check_int(
            "loader_workers", loader_workers, low=0, error=TaskError, fix="set it to e.g. 2"
        )
        self.dataset = _check_dataset(dataset, self.seed)
        self.proxies = check_proxies(proxies, allow_empty=True)
        self.limits = check_limits(limits)

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
            "inherit_learning_rate": self.inherit_learning_rate,
            "seed": self.seed,
            "precision": self.precision,
            "compile": self.compile,
            "reductions": self.reductions,
            "device_data_mb": self.device_data_mb,
            "loader_workers": self.loader_workers,
            "proxies": list(self.proxies),
            "limits": dict(self.limits),
        }

    def model_reductions(self) -> int:
        """The reduction stages a `DagSpace` network gets: ``reductions``, or the number
        `morphml_dask.models.reductions_for` picks for the dataset's image size."""
        if self.reductions is not None:
            return self.reductions
        from morphml_dask.models import reductions_for

        _, height, width = self.dataset.input_shape
        return reductions_for(height, width)

    def build(self, arch: ArchGraph) -> nn.Module:
        """The untrained model for ``arch`` on this dataset, initialised from the seed."""
        import torch

        from morphml_dask.models import build_model

        torch.manual_seed(self.seed)
        return build_model(
            arch,
            self.dataset.num_classes,
            in_channels=self.dataset.input_shape[0],
            reductions=self.model_reductions(),
        )

    def wrap(self, model: nn.Module, devices: Sequence[str]) -> nn.Module:
        """The module that trains ``model`` on ``devices`` (`wrap_for_devices`)."""
        return wrap_for_devices(model, devices, compile=self.compile)

    def run(self, trial: Trial, ctx: TrialContext) -> Evaluation:
        """Train the trial's architecture on ``ctx.devices`` (data-parallel when it was lent
        several GPUs). A promotion (a trial with a ``parent``) continues from the weights
        its parent saved; a child of another architecture (`Trial.inherits`) starts from
        what fits of them (`inherit_weights`: exactly transformed for a morphism) and trains
        ``budget`` epochs. The weights are saved under the trial id and rung, unless the
        objective came out NaN or infinite."""
        from morphml_dask.storage import ExperimentStore

        arch = architecture_of(trial, self)
        store = ctx.store if isinstance(ctx.store, ExperimentStore) else None
        weights = inherit = None
        if trial.parent is not None and store is not None:
            if trial.inherits:
                inherit = store.load_weights(trial.parent)
            else:
                weights = store.load_weights(trial.parent)
        evaluation = self.evaluate(
            arch,
            trial.budget,
            devices=ctx.devices,
            weights=weights,
            inherit=inherit,
            morphism=_planned_morphism(self, trial.info),
            trained_epochs=trial.parent_budget if weights is not None else 0,
            on_epoch=lambda point: _reported(ctx, point),
        )
        ctx.inherited_fraction = evaluation.inherited_fraction
        objective = evaluation.metrics.get(self.objective, math.nan)
        if store is not None and evaluation.weights is not None and math.isfinite(objective):
            store.save_weights(
                trial.id,
                trial.rung,
                evaluation.weights,
                num_classes=self.dataset.num_classes,
                in_channels=self.dataset.input_shape[0],
                reductions=self.model_reductions(),
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
        devices: Sequence[str] | None = None,
        on_epoch: EpochHook | None = None,
        inherit: Mapping[str, torch.Tensor] | None = None,
        morphism: Mapping[str, Any] | None = None,
    ) -> Evaluation:
        """`BaseTask.evaluate`; ``devices``, when given, replaces ``device``: several GPUs
        train data-parallel. ``on_epoch`` is given each point of the curve as it is made and
        stops the training early by returning True (a pruned trial). ``inherit`` is the
        state of a parent of another architecture to start from, transformed exactly when
        ``morphism`` (`Morphism.to_dict`) says how the architecture changed."""
        _check_budget(budget, trained_epochs, self.max_epochs)
        from morphml_dask.models import count_flops, count_parameters

        started = time.perf_counter()
        devices = tuple(devices) if devices else (device,)
        check_precision(self.precision, devices[0])
        data = self.dataset
        model = self.build(arch)
        inherited = _start_from(model, weights, inherit, morphism)
        proxied = _measured(self, model.to(devices[0]), weights, inherit)
        feed = feed_for(
            data,
            devices[0],
            device_data_mb=self.device_data_mb,
            loader_workers=self.loader_workers,
        )
        loop = TrainingLoop(self.wrap(model, devices), feed, self.precision)
        peak = self.inherit_learning_rate if inherit is not None else None
        curve = self._train(loop, range(trained_epochs, budget), on_epoch, peak)
        test_loss, test_acc = loop.score("test")
        wall = time.perf_counter() - started
        metrics = {
            **{k: v for k, v in curve[-1].items() if k != "epoch"},
            "test_loss": test_loss,
            "test_accuracy": test_acc,
            "params": float(count_parameters(model)),
            "flops": float(count_flops(model, (1, *data.input_shape))),
            "epochs": curve[-1]["epoch"],
            "wall_time": wall,
            "cost_seconds": wall,
            **proxied,
        }
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return Evaluation(metrics=metrics, curve=curve, weights=state, inherited_fraction=inherited)

    def _train(
        self,
        loop: TrainingLoop,
        epochs: range,
        on_epoch: EpochHook | None,
        peak: float | None = None,
    ) -> Curve:
        """Train through ``epochs`` (0-based), scoring the model after each: the curve,
        cut short when ``on_epoch`` says stop. With a ``peak`` learning rate (an inheriting
        child) the schedule restarts from it over these epochs alone."""
        opt = make_optimizer(self, loop.model)
        horizon = epochs.stop if peak is not None else self.max_epochs or epochs.stop
        curve = []
        for epoch in epochs:
            for group in opt.param_groups:
                group["lr"] = learning_rate(
                    self.schedule, peak or self.learning_rate, epoch, horizon
                )
            train_loss = loop.train_epoch(opt, self.batch_size, self.seed, epoch)
            val_loss, val_acc = loop.score("val")
            curve.append(
                {
                    "epoch": float(epoch + 1),
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_accuracy": val_acc,
                }
            )
            if on_epoch is not None and on_epoch(curve[-1]):
                break
        return curve


def _planned_morphism(task: TrainingTask, info: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The morphism of a child's ``info`` when it was planned for this task's network
    input (the optimizer plans for 8x8 images); None, to inherit by name and shape."""
    from morphml_dask.models import STEM_WIDTH

    planned = info.get("morph_input_width", STEM_WIDTH)
    if "morphism" not in info or planned != STEM_WIDTH << task.model_reductions():
        return None
    morphism: Mapping[str, Any] = info["morphism"]
    return morphism


def _measured(
    task: TrainingTask,
    model: nn.Module,
    weights: Mapping[str, torch.Tensor] | None,
    inherit: Mapping[str, torch.Tensor] | None,
) -> dict[str, float]:
    """The task's proxies and limited measurements of ``model``, on its device, each
    measured once, as ``proxy_<name>`` metrics; `CandidateRejected` above a limit.

    The proxies score an initialisation: none for a promotion (``weights``) or an
    inheriting child (``inherit``), whose model starts from trained weights. The limits
    hold for any new architecture: not checked again for a promotion, whose architecture
    passed when its parent trained.
    """
    from morphml_dask.tasks._proxy import proxy_scores

    fresh = weights is None and inherit is None
    limits = {} if weights is not None else task.limits
    # Every limit is measured, one on a proxy too: an inheriting child reports no proxies.
    names = list(dict.fromkeys([*(task.proxies if fresh else ()), *limits]))
    if not names:
        return {}
    scores = proxy_scores(model, names, task.dataset, batch_size=task.batch_size, seed=task.seed)
    metrics = {f"proxy_{name}": value for name, value in scores.items()}
    within_limits(scores, limits, metrics)
    return metrics


def _check_reductions(reductions: object) -> int | None:
    if reductions is None:
        return None
    return check_int(
        "reductions",
        reductions,
        low=0,
        error=TaskError,
        fix="leave reductions out (None) to pick them from the image size",
    )


def _check_dataset(dataset: object, seed: int) -> ImageDataset:
    if isinstance(dataset, str) and dataset == "digits":  # == on an array is elementwise
        dataset = load_digits(seed)
    if not isinstance(dataset, ImageDataset):
        raise TaskError(
            "unknown dataset",
            expected="'digits' or an ImageDataset (make_dataset / open_xarray_dataset)",
            received=repr(dataset)[:200],
            fix="build your data with morphml_dask.tasks.make_dataset(images, labels)",
        )
    return dataset


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


def _start_from(
    model: nn.Module,
    weights: Mapping[str, torch.Tensor] | None,
    inherit: Mapping[str, torch.Tensor] | None,
    morphism: Mapping[str, Any] | None,
) -> float | None:
    """Load a promotion's ``weights`` whole, or what fits of a parent's (``inherit``); the
    fraction of the model's parameters that came from the parent."""
    from morphml_dask.models import DagNetwork, copy_matching, inherit_weights
    from morphml_dask.space import Morphism

    if weights is not None:
        model.load_state_dict(weights)
        return 1.0
    if inherit is None:
        return None
    if isinstance(model, DagNetwork):
        change = None if morphism is None else Morphism.from_dict(morphism)
        return inherit_weights(model, dict(inherit), change).fraction
    return copy_matching(model, dict(inherit)).fraction


def _reported(ctx: TrialContext, point: dict[str, float]) -> bool:
    """Report a point of the curve live; whether the pruner said stop."""
    ctx.report(int(point["epoch"]), **{k: v for k, v in point.items() if k != "epoch"})
    return ctx.should_stop()
