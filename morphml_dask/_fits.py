"""Checks of an experiment's optimizer against its task, made when the experiment is read:
what the optimizer names or asks for must be something the task does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import ExperimentError, TaskError

if TYPE_CHECKING:
    from morphml_dask.tasks import BaseTask

__all__ = ["check_optimizer_fits_task"]


def check_optimizer_fits_task(optimizer: Mapping[str, Any], task: BaseTask) -> None:
    """Refuse, as an `ExperimentError`, an optimizer section (a normalised document's) whose
    metrics the task never reports or whose warm-up the task cannot score."""
    _check_metrics_reported(optimizer, task)
    _check_warmup(optimizer, task)


def _check_metrics_reported(optimizer: Mapping[str, Any], task: BaseTask) -> None:
    """Refuse an objective or constraint on a metric the task never reports: every trial
    would score -inf (or be infeasible), and the search would say so only at the end."""
    from morphml_dask.tasks import reported_metrics

    reported = reported_metrics(task)
    if reported is None:
        return
    named = [("objective", optimizer.get("objective"))]
    named += [
        (f"objectives[{i}]", pair[0]) for i, pair in enumerate(optimizer.get("objectives") or [])
    ]
    named += [(f"constraints.{metric}", metric) for metric in optimizer.get("constraints") or {}]
    for key, metric in named:
        if isinstance(metric, str) and metric not in reported:
            raise ExperimentError(
                f"optimizer.{key} names a metric the task does not report",
                expected=f"one of {sorted(reported)}",
                received=repr(metric),
                fix="name a metric of the task; to limit or optimise a cost, add it to the "
                "task's proxies (e.g. proxies: [latency_ms], then proxy_latency_ms)",
            )


def _check_warmup(optimizer: Mapping[str, Any], task: BaseTask) -> None:
    from morphml_dask.tasks import check_warmup_task

    try:
        check_warmup_task(optimizer, task)
    except TaskError as error:
        raise ExperimentError(
            f"optimizer.warmup: {error.problem}",
            expected=str(error.expected),
            received=str(error.received),
            fix=str(error.fix),
        ) from error
