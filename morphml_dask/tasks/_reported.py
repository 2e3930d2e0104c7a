"""The metrics a built-in task reports, so that an experiment naming another one (a
constraint, an objective) is refused when it is read rather than failing every trial."""

from __future__ import annotations

from morphml_dask.tasks._base import BaseTask

__all__ = ["reported_metrics"]

_TRAINING = (
    "train_loss",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "params",
    "flops",
    "epochs",
    "wall_time",
    "cost_seconds",
)
_NB201 = (
    "val_accuracy",
    "test_accuracy",
    "val_accuracy_200",
    "train_time_200",
    "params",
    "latency",
    "cost_seconds",
    "wall_time",
    "index",
)


def reported_metrics(task: BaseTask) -> frozenset[str] | None:
    """The metric names ``task`` reports; None when it cannot be known beforehand (a
    function task reports what the user's code returns)."""
    from morphml_dask.tasks._nb201 import NB201TabularTask
    from morphml_dask.tasks._proxy import ProxyTask
    from morphml_dask.tasks._train import TrainingTask

    if isinstance(task, TrainingTask):
        measured = {*task.proxies, *task.limits}
        return frozenset((*_TRAINING, *(f"proxy_{name}" for name in measured)))
    if isinstance(task, ProxyTask):
        return frozenset((*task.proxies, "wall_time", "cost_seconds"))
    if isinstance(task, NB201TabularTask):
        return frozenset(_NB201)
    return None
