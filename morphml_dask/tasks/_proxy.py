"""`ProxyTask`: score an architecture by zero-cost proxies, without training it.

Also the helpers `TrainingTask` uses to add proxies to its metrics (``proxies=``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import TaskError
from morphml_dask.registry import Schema, import_path_of, register_kind
from morphml_dask.space import ArchGraph, Config, FunctionSpace
from morphml_dask.tasks._base import BaseTask, Evaluation, check_epochs
from morphml_dask.tasks._data import ImageDataset
from morphml_dask.tasks._function import resolve_user_code
from morphml_dask.tasks._limits import check_proxies
from morphml_dask.tasks._train import (
    MAX_SEED,
    _check_dataset,
    _check_storage_options,
    _document_dataset,
)
from morphml_dask.validation import check_choice, check_int, describe, invalid

if TYPE_CHECKING:
    # torch loads when a model is scored, not when the task is imported (as for training).
    from torch import nn

    from morphml_dask.models import Batch
    from morphml_dask.tasks._context import TrialContext
    from morphml_dask.trial import Trial

__all__ = ["ModelBuilder", "ProxyTask", "proxy_scores"]

ModelBuilder = Callable[[Any], "nn.Module"]
"""The user's model builder of a function space: ``model(config) -> nn.Module``."""

DIRECTIONS = ("maximize", "minimize")
_BUILDER_FIX = (
    "define model(config) -> torch.nn.Module at module level, in a module the workers can "
    "import, and set model to its path, e.g. task: {name: proxy, model: 'mypkg.models:build'}"
)


class ProxyTask(BaseTask):
    """Score each candidate by zero-cost proxies of its untrained network; nothing trains.

    Parameters
    ----------
    proxies
        Names from `morphml_dask.models.PROXIES`; each becomes a metric of that name.
    objective
        The proxy the search optimises: one of ``proxies``.
    direction
        ``"maximize"`` or ``"minimize"`` (``"minimize"`` for ``params``, ``latency_ms``...).
    dataset
        An `ImageDataset`, or ``"digits"``: it gives the input shape and the number of
        classes, and the training batch of the data-dependent proxies.
    batch_size
        Images in that batch, drawn from the training split by ``seed``; the batch size of the
        input shape the data-free proxies (``latency_ms``, ``peak_memory_mb``) are measured on.
    seed
        Seeds the weight initialisation and the choice of the batch: the same seed scores the
        same network on the same images.
    model
        The model builder ``model(config) -> nn.Module``, or its import path
        ``"package.module:name"``: needed for a `FunctionSpace`, whose configurations are no
        architecture. When given it builds every candidate, an `ArchGraph` included. Without
        it, a `CellSpace` or `DagSpace` architecture becomes the network `TrainingTask`
        builds (`morphml_dask.models.build_model`).

    Raises
    ------
    TaskError
        For an unknown proxy, an objective that is not one of ``proxies``, or any other
        invalid setting; when scoring a configuration without a ``model`` builder.

    Notes
    -----
    The budget is ignored: a proxy is computed once, whatever a trial's budget, and a
    promotion scores the same network again. The metrics are the proxies, ``wall_time`` and
    ``cost_seconds`` (the seconds the scoring took, model building included), on the trial's
    device (`TrialContext.device`). Like `FunctionTask`'s function, a model builder travels to
    the workers as its import path, and they import it.

    Examples
    --------
    >>> from morphml_dask.space import DagSpace
    >>> import numpy as np
    >>> task = ProxyTask(["params", "flops"], objective="params", direction="minimize")
    >>> arch = DagSpace(max_nodes=2, widths=(8,)).sample(np.random.default_rng(0))
    >>> sorted(task.evaluate(arch, budget=1).metrics)
    ['cost_seconds', 'flops', 'params', 'wall_time']
    """

    name = "proxy"

    def __init__(
        self,
        proxies: Sequence[str] = ("synflow", "params"),
        objective: str = "synflow",
        direction: str = "maximize",
        dataset: ImageDataset | str = "digits",
        batch_size: int = 64,
        seed: int = 0,
        model: ModelBuilder | str | None = None,
    ) -> None:
        self.proxies = check_proxies(proxies, allow_empty=False)
        self.objective = _check_objective(objective, self.proxies)
        self.direction = check_choice("direction", direction, DIRECTIONS, error=TaskError)
        self.batch_size = check_int(
            "batch_size", batch_size, low=1, error=TaskError, fix="set batch_size to e.g. 64"
        )
        self.seed = check_int(
            "seed", seed, low=0, high=MAX_SEED, error=TaskError, fix="set seed to e.g. 0"
        )
        self.dataset = _check_dataset(dataset, self.seed)
        self._model_path = model if isinstance(model, str) else None
        self._model = None if model is None else _model_builder(model)

    @property
    def model(self) -> ModelBuilder | None:
        """The model builder, imported from its path on first use; None without one.

        Raises
        ------
        TaskError
            When its path does not import here (on a worker without the user's module).
        """
        if self._model is None and self._model_path is not None:
            self._model = _model_builder(self._model_path)
        return self._model

    @property
    def model_path(self) -> str | None:
        """The import path of the model builder, ``"module:name"``; None without one."""
        if self._model_path is None and self._model is not None:
            self._model_path = import_path_of(
                self._model, error=TaskError, what="the model builder", key="model"
            )
        return self._model_path

    def __getstate__(self) -> dict[str, Any]:
        # By import path, never by value: the workers import the user's module, and one that
        # cannot fails its trials with a TaskError rather than losing the task.
        state = dict(self.__dict__)
        state["_model_path"], state["_model"] = self.model_path, None
        return state

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "proxies": list(self.proxies),
            "objective": self.objective,
            "direction": self.direction,
            "dataset": self.dataset.name,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "model": self.model_path,
        }

    def build(self, candidate: Any) -> nn.Module:
        """The untrained network of ``candidate``, initialised from the seed.

        ``candidate`` is an `ArchGraph`, a `Config` of a function space or the value of one.

        Raises
        ------
        TaskError
            For a configuration without a model builder, or a builder that returns no
            ``nn.Module``.
        """
        import torch

        builder = self.model
        torch.manual_seed(self.seed)
        if builder is None:
            if not isinstance(candidate, ArchGraph):
                raise _no_builder(f"a candidate {describe(candidate)}")
            return _architecture_model(candidate, self.dataset)
        built = builder(candidate.value if isinstance(candidate, Config) else candidate)
        if not isinstance(built, torch.nn.Module):
            raise TaskError(
                "the model builder returned no torch.nn.Module",
                expected="model(config) returning a torch.nn.Module",
                received=describe(built),
                fix="return the network itself, e.g. return nn.Sequential(...)",
                key="model",
            )
        return built

    def run(self, trial: Trial, ctx: TrialContext) -> Evaluation:
        """Score the trial's candidate on ``ctx.device``; its budget is ignored."""
        return self.evaluate(trial.arch, trial.budget, device=ctx.device)

    def evaluate(
        self,
        arch: Any,
        budget: int,
        *,
        device: str = "cpu",
        weights: dict[str, Any] | None = None,
        trained_epochs: int = 0,
    ) -> Evaluation:
        """Score ``arch`` (an `ArchGraph`, a `Config` or a configuration) on ``device``.

        ``budget``, ``weights`` and ``trained_epochs`` are ignored: the proxies score the
        network as initialised.
        """
        del budget, weights, trained_epochs  # proxies score an untrained network
        started = time.perf_counter()
        model = self.build(arch).to(device)
        metrics = proxy_scores(
            model, self.proxies, self.dataset, batch_size=self.batch_size, seed=self.seed
        )
        wall = time.perf_counter() - started
        return Evaluation({**metrics, "wall_time": wall, "cost_seconds": wall})


# -- scoring -----------------------------------------------------------------------------------


def proxy_scores(
    model: nn.Module,
    proxies: Sequence[str],
    dataset: ImageDataset,
    *,
    batch_size: int,
    seed: int,
) -> dict[str, float]:
    """`morphml_dask.models.score` of ``model`` on its device: with one training batch of
    ``dataset`` (`training_batch`) when a proxy needs data, else with its input shape."""
    from morphml_dask.models import DATA_FREE_PROXIES, score

    if all(name in DATA_FREE_PROXIES for name in proxies):
        # No batch to read: a dataset opened from a URL is not loaded for data-free proxies.
        return score(model, proxies, input_shape=(batch_size, *dataset.input_shape))
    reference = next(model.parameters(), None)
    device = "cpu" if reference is None else str(reference.device)
    return score(model, proxies, training_batch(dataset, batch_size, seed, device))


def training_batch(dataset: ImageDataset, batch_size: int, seed: int, device: str) -> Batch:
    """``batch_size`` training images and their labels, drawn without replacement by
    ``seed`` (all of them when there are fewer), on ``device``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(dataset.sizes[0], generator=generator)[:batch_size].numpy()
    images = torch.as_tensor(dataset.x_train[picked], device=device)
    labels = torch.as_tensor(dataset.y_train[picked], device=device).long()
    return images, labels


def _architecture_model(arch: ArchGraph, dataset: ImageDataset) -> nn.Module:
    """The network `TrainingTask.build` makes of ``arch`` for ``dataset`` (its default
    reductions), on the current torch seed."""
    from morphml_dask.models import build_model, reductions_for

    channels, height, width = dataset.input_shape
    return build_model(
        arch,
        dataset.num_classes,
        in_channels=channels,
        reductions=reductions_for(height, width),
    )


# -- settings ----------------------------------------------------------------------------------


def _check_objective(objective: object, proxies: tuple[str, ...]) -> str:
    if not (isinstance(objective, str) and objective in proxies):
        raise invalid(
            TaskError,
            "objective",
            objective,
            expected=f"one of the proxies the task computes, {list(proxies)}",
            fix=f"set objective to one of {list(proxies)}, or add it to proxies",
            problem="the objective is not one of the proxies",
        )
    return objective


def _model_builder(model: object) -> ModelBuilder:
    """``model``, or the function its import path names, if it takes one argument."""
    if isinstance(model, str):
        model = resolve_user_code(model, "the model builder", key="model", fix=_BUILDER_FIX)
    if not callable(model):
        raise invalid(
            TaskError,
            "model",
            model,
            expected="a function model(config) -> torch.nn.Module, or its import path",
            fix=_BUILDER_FIX,
            problem="the model builder is not callable",
        )
    try:
        inspect.signature(model).bind(None)
    except TypeError:
        raise invalid(
            TaskError,
            "model",
            model,
            expected="a function called as model(config): one positional parameter",
            fix="define it as def build(config): return nn.Sequential(...)",
            problem="the model builder does not take (config)",
        ) from None
    except ValueError:  # a builtin without a signature: call it and see
        pass
    return model


def _no_builder(received: str) -> TaskError:
    return TaskError(
        "the proxy task needs a model builder to score a function space's configurations",
        expected="model: a function model(config) -> torch.nn.Module, or its import path",
        received=f"model=None, for {received}"[:300],
        fix=_BUILDER_FIX,
        key="model",
    )


# -- the experiment document's task section --------------------------------------------------


def _check_space(section: dict[str, Any], optimizer: object) -> None:
    """Refuse a function space without a model builder when the experiment loads, rather
    than in every trial."""
    space = getattr(optimizer, "space", None)
    if isinstance(space, FunctionSpace) and section.get("model") is None:
        raise _no_builder("the configurations of a FunctionSpace")


register_kind(
    "task",
    ProxyTask.name,
    ProxyTask,
    Schema(
        document_only={"epochs": check_epochs, "storage_options": _check_storage_options},
        # The budget is ignored: a trial's recorded budget of 1 says it was scored once.
        defaults={"epochs": 1},
        prepare=_document_dataset,
        fit=_check_space,
    ),
)
