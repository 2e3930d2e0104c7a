"""The worker's side of an optimizer's zero-cost warm-up (`morphml_dask.optim.ZeroCostWarmup`):
score one candidate's untrained network by the warm-up's proxy, training nothing."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import TaskError
from morphml_dask.optim._warmup import is_warmup, warmup_metric
from morphml_dask.tasks._base import BaseTask, Evaluation, architecture_of
from morphml_dask.tasks._nb201 import NB201TabularTask
from morphml_dask.tasks._proxy import ProxyTask, proxy_scores
from morphml_dask.tasks._train import TrainingTask

if TYPE_CHECKING:
    from torch import nn

    from morphml_dask.tasks._context import TrialContext
    from morphml_dask.trial import Trial

__all__ = ["DATA_FREE_WARMUP", "check_warmup_task", "is_warmup", "score_for_warmup"]

# The benchmark's networks: CIFAR shapes, and ImageNet16-120's 16x16 images.
_NB201_SHAPES = {"cifar10": (10, 32), "cifar100": (100, 32), "imagenet": (120, 16)}
_TASKS = "TrainingTask, ProxyTask or NB201TabularTask"
# The warm-up proxies (`WARMUP_PROXIES`) that need no images: all a tabular task can score.
DATA_FREE_WARMUP = ("synflow", "params", "flops")


def score_for_warmup(task: BaseTask, trial: Trial, ctx: TrialContext) -> Evaluation:
    """The warm-up's proxy of the trial's candidate, freshly initialised from the trial's
    seed on ``ctx.device``: the metric ``proxy_<name>``, and ``cost_seconds`` for building
    and scoring it."""
    import torch

    from morphml_dask.models import DATA_FREE_PROXIES, build_model, score

    proxy = str(trial.info["warmup"])
    _check_task(task, proxy)
    started = time.perf_counter()
    torch.manual_seed(ctx.seed)
    if isinstance(task, NB201TabularTask):
        classes, side = _NB201_SHAPES[task.dataset]
        model: nn.Module = build_model(architecture_of(trial, task), classes, in_channels=3)
        value = score(model.to(ctx.device), [proxy], input_shape=(1, 3, side, side))[proxy]
    elif isinstance(task, TrainingTask | ProxyTask):
        # A ProxyTask builds a function space's configurations too, with its model builder.
        if isinstance(task, ProxyTask):
            model = task.build(trial.arch)
        else:
            model = task.build(architecture_of(trial, task))
        batch = task.batch_size if proxy not in DATA_FREE_PROXIES else 1
        value = proxy_scores(
            model.to(ctx.device), [proxy], task.dataset, batch_size=batch, seed=ctx.seed
        )[proxy]
    wall = time.perf_counter() - started
    return Evaluation(
        metrics={warmup_metric(proxy): value, "cost_seconds": wall, "wall_time": wall}, curve=[]
    )


def check_warmup_task(optimizer: Mapping[str, Any], task: BaseTask) -> None:
    """Refuse an optimizer's ``warmup`` that ``task`` cannot score (before the search
    starts, rather than as a failure of every warm-up trial)."""
    if optimizer.get("warmup"):
        _check_task(task, str(optimizer.get("warmup_proxy", "synflow")))


def _check_task(task: BaseTask, proxy: str) -> None:
    if isinstance(task, TrainingTask | ProxyTask):
        return
    if not isinstance(task, NB201TabularTask):
        raise TaskError(
            "a zero-cost warm-up needs a task that builds the candidate's network",
            expected=f"a {_TASKS}",
            received=f"warmup with a {type(task).__name__}",
            fix="drop warmup from the optimizer's settings, or search with a task that "
            "builds networks (e.g. task: {name: training})",
        )
    if proxy not in DATA_FREE_WARMUP:
        raise TaskError(
            "a tabular benchmark has no images for a data-dependent proxy",
            expected=f"warmup_proxy one of {sorted(DATA_FREE_WARMUP)} with {type(task).__name__}",
            received=repr(proxy),
            fix="set warmup_proxy: synflow (Abdelfattah et al.'s warm-up proxy)",
        )
