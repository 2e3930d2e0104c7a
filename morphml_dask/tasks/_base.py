"""`BaseTask`: what a trial does with its candidate, and the `Evaluation` it returns."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import TaskError
from morphml_dask.space import ArchGraph
from morphml_dask.validation import check_int

if TYPE_CHECKING:
    import torch

    from morphml_dask.tasks._context import TrialContext
    from morphml_dask.trial import Trial

__all__ = ["BaseTask", "Evaluation"]

# The epochs of an experiment's task section that gives none: the budget optimizers default to.
DEFAULT_EPOCHS = 12


@dataclass(frozen=True)
class Evaluation:
    """The outcome of evaluating one architecture for one budget.

    Attributes
    ----------
    metrics
        Final scalar metrics. Always holds the task's objective, ``cost_seconds`` (the compute
        the evaluation costs, real or simulated) and ``wall_time`` (seconds actually spent).
    curve
        One dict of metrics per epoch trained (``epoch`` counts from 1 across continuations).
    weights
        The model's state dict after training, to continue to a larger budget; None for tasks
        without a model (tabular benchmarks).
    inherited_fraction
        The fraction of the model's parameters that started from a parent's weights; None
        when it started from nothing.
    """

    metrics: dict[str, float]
    curve: list[dict[str, float]] = field(default_factory=list)
    weights: dict[str, torch.Tensor] | None = None
    inherited_fraction: float | None = None


class BaseTask(abc.ABC):
    """A training task: dataset, recipe and objective.

    Attributes
    ----------
    objective
        The metric in `Evaluation.metrics` that search algorithms optimise.
    direction
        ``"maximize"`` or ``"minimize"``.
    """

    objective: str = "val_accuracy"
    direction: str = "maximize"

    @abc.abstractmethod
    def evaluate(
        self,
        arch: ArchGraph,
        budget: int,
        *,
        device: str = "cpu",
        weights: dict[str, torch.Tensor] | None = None,
        trained_epochs: int = 0,
    ) -> Evaluation:
        """Train (or look up) ``arch`` up to ``budget`` epochs.

        Parameters
        ----------
        arch
            The architecture.
        budget
            Total epochs the model should have been trained for when this returns.
        device
            Torch device string, e.g. ``"cpu"`` or ``"cuda:0"``.
        weights
            State dict of the same architecture trained for ``trained_epochs`` epochs, to
            continue from instead of starting over (ASHA promotions).
        trained_epochs
            Epochs already behind ``weights``; training runs ``budget - trained_epochs`` more.
        """

    def run(self, trial: Trial, ctx: TrialContext) -> Evaluation:
        """Run one trial on a worker: what `morphml_dask.driver.run_trial` calls.

        By default, `evaluate` the trial's architecture for its budget on ``ctx.device``.
        Override it to use the context: report a curve as training goes, save and restore
        state (`FunctionTask` does).

        Raises
        ------
        TaskError
            When the trial's candidate is not an `ArchGraph` (a `FunctionSpace`
            configuration): `evaluate` trains architectures.
        """
        return self.evaluate(architecture_of(trial, self), trial.budget, device=ctx.device)

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The task's settings as JSON."""


def architecture_of(trial: Trial, task: BaseTask) -> ArchGraph:
    """The trial's `ArchGraph`, for a task that evaluates architectures."""
    arch: object = trial.arch
    if not isinstance(arch, ArchGraph):
        raise TaskError(
            f"the {type(task).__name__} task evaluates architectures, not configurations",
            expected="a trial of an architecture space (CellSpace, DagSpace): an ArchGraph",
            received=f"trial {trial.id} of a {type(arch).__name__}",
            fix="run a FunctionSpace's configurations with a FunctionTask (task: {function: "
            "mypkg.train:fit, objective: ...}), or search an architecture space",
        )
    return arch


def check_epochs(epochs: object) -> int:
    """An experiment's ``task.epochs``: the budget every trial trains for by default."""
    return check_int("epochs", epochs, low=1, error=TaskError)
