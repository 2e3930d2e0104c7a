"""`FunctionTask`: a trial runs the user's own train function, ``fn(config, ctx)``."""

from __future__ import annotations

import inspect
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import ExperimentError, TaskError
from morphml_dask.registry import Schema, import_path_of, register_kind, resolve
from morphml_dask.space import ArchGraph, Config
from morphml_dask.tasks._base import DEFAULT_EPOCHS, BaseTask, Evaluation, check_epochs
from morphml_dask.tasks._context import TrialContext
from morphml_dask.trial import Trial
from morphml_dask.validation import check_choice, check_int, check_string, describe, invalid

if TYPE_CHECKING:
    import torch

__all__ = ["FunctionTask", "TrainFunction"]

TrainFunction = Callable[[Any, TrialContext], "Mapping[str, float] | None"]
DIRECTIONS = ("maximize", "minimize")
# Seeds are stored as signed 64-bit integers.
MAX_SEED = 2**63 - 1
_WHERE_FIX = (
    "install the module on every worker, keep it next to the experiment file (a local "
    "cluster), or send it to a remote cluster with morphml run --upload FILE"
)


class FunctionTask(BaseTask):
    """A trial calls your train function: ``fn(config, ctx)`` builds, trains and scores
    any model.

    Parameters
    ----------
    fn
        The train function, or its import path ``"package.module:name"``. It takes the
        trial's configuration (what the space function returned, with `ArchGraph` values
        inside; the `ArchGraph` itself for an architecture space) and a `TrialContext`, and
        returns the final metrics (a dict of numbers) or None to use the last value of each
        metric it reported with ``ctx.report``.
    objective
        The metric the search optimises: returned or reported by ``fn``.
    direction
        ``"maximize"`` or ``"minimize"``.
    seed
        The task's seed; each trial gets its own, ``ctx.seed``, from it and the trial id.

    Raises
    ------
    TaskError
        When ``fn`` cannot be called with two positional arguments, an import path does not
        resolve to such a function, or a setting is invalid.

    Notes
    -----
    The task travels to the workers as the import path of ``fn``, never as a copy of the
    function, and each worker imports it: define ``fn`` at module level, in a module the
    workers can import (an installed package, a file next to the experiment for a local
    cluster, or one sent with ``morphml run --upload``). A trial that raises is a failed
    trial with its error; a NaN or infinite objective is a ``diverged`` one; a trial that
    neither reports nor returns the objective fails and says so.

    Examples
    --------
    >>> def fit(config, ctx):
    ...     for epoch in range(ctx.trained_epochs + 1, ctx.budget + 1):
    ...         ctx.report(epoch, val_loss=1.0 / (epoch * config["width"]))
    >>> task = FunctionTask(fit, objective="val_loss", direction="minimize")
    >>> task.evaluate({"width": 4}, budget=2).metrics["val_loss"]
    0.125
    """

    name = "function"

    def __init__(
        self,
        fn: TrainFunction | str,
        objective: str,
        direction: str = "maximize",
        *,
        seed: int = 0,
    ) -> None:
        self.objective = _check_metric_name(objective)
        self.direction = check_choice("direction", direction, DIRECTIONS, error=TaskError)
        self.seed = check_int(
            "seed", seed, low=0, high=MAX_SEED, error=TaskError, fix="set seed to e.g. 0"
        )
        self._path = fn if isinstance(fn, str) else None
        self._fn: TrainFunction | None = _train_function(fn)

    @classmethod
    def _imported_later(cls, path: str, objective: str, direction: str, seed: int) -> FunctionTask:
        """The task as a worker unpickles it: the module is imported when the first trial
        runs, so that a worker that cannot import it fails that trial and says why, rather
        than losing the task."""
        task = cls.__new__(cls)
        task.objective, task.direction, task.seed = objective, direction, seed
        task._path, task._fn = path, None
        return task

    @property
    def function(self) -> str:
        """The import path of the train function, ``"module:name"``.

        Raises
        ------
        TaskError
            For a function without one (a lambda, a function defined inside another).
        """
        if self._path is None:
            self._path = import_path_of(
                self._fn, error=TaskError, what="the train function", key="function"
            )
        return self._path

    @property
    def fn(self) -> TrainFunction:
        """The train function, imported from its path on first use."""
        if self._fn is None:
            try:
                self._fn = _train_function(self.function)
            except TaskError as error:
                raise TaskError(
                    f"cannot use the train function {self.function!r} on this worker",
                    expected=error.expected,
                    received=error.received,
                    fix=_WHERE_FIX,
                    key="function",
                ) from error
        return self._fn

    def __reduce__(self) -> tuple[Any, ...]:
        # By import path, never by value: the workers import the user's module.
        return (_unpickled, (self.function, self.objective, self.direction, self.seed))

    def __repr__(self) -> str:
        shown = self._path or getattr(self._fn, "__qualname__", repr(self._fn))
        return (
            f"FunctionTask({shown!r}, objective={self.objective!r}, "
            f"direction={self.direction!r}, seed={self.seed})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "function": self.function,
            "objective": self.objective,
            "direction": self.direction,
            "seed": self.seed,
        }

    def run(self, trial: Trial, ctx: TrialContext) -> Evaluation:
        """Call the train function with the trial's configuration and ``ctx``; the final
        metrics are those it returns, over the last value of each metric it reported."""
        started = time.perf_counter()
        arch = trial.arch
        config = arch if isinstance(arch, ArchGraph) else arch.value
        returned = self.fn(config, ctx)
        wall = time.perf_counter() - started
        metrics = _final_metrics(returned, ctx.reports, self.objective)
        return Evaluation({"wall_time": wall, "cost_seconds": wall, **metrics}, ctx.reports)

    def evaluate(
        self,
        arch: Any,
        budget: int,
        *,
        device: str = "cpu",
        weights: dict[str, torch.Tensor] | None = None,
        trained_epochs: int = 0,
    ) -> Evaluation:
        """Run the train function once, outside a search, e.g. to try it.

        ``arch`` is a candidate of the space (its configuration is passed on) or a
        configuration itself. No store is involved: ``ctx.save`` checks the state and keeps
        nothing, ``ctx.restore`` gives None, and ``weights`` and ``trained_epochs`` are
        ignored.
        """
        del weights, trained_epochs  # a function task restores its own state
        trial = Trial("evaluate", _as_candidate(arch), budget)
        return self.run(trial, TrialContext(trial, seed=self.seed, devices=(device,)))


def _unpickled(path: str, objective: str, direction: str, seed: int) -> FunctionTask:
    return FunctionTask._imported_later(path, objective, direction, seed)


def _as_candidate(value: Any) -> ArchGraph | Config:
    """A configuration given to `FunctionTask.evaluate` as a candidate whose ``value`` it is."""
    return value if isinstance(value, ArchGraph | Config) else Config((), value)


def resolve_user_code(path: str, what: str, *, key: str, fix: str | None = None) -> object:
    """What the import path ``path`` names (``module:name``), for a task's setting ``key``.

    Raises
    ------
    TaskError
        When it cannot be imported, saying so of ``what`` (with ``fix``, by default the
        import error's own).
    """
    try:
        return resolve(path)
    except ExperimentError as error:
        raise TaskError(
            f"{what} {path!r} cannot be imported",
            expected=error.expected,
            received=error.received,
            fix=error.fix if fix is None else fix,
            key=key,
        ) from error


def _train_function(fn: object) -> TrainFunction:
    """``fn``, or the function its import path names, if it takes ``(config, ctx)``."""
    if isinstance(fn, str):
        fn = resolve_user_code(fn, "the train function", key="function")
    if not callable(fn):
        raise invalid(
            TaskError,
            "function",
            fn,
            expected="a function fn(config, ctx), or its import path 'module:name'",
            fix="pass the train function itself, or the path of one",
            problem="the train function is not callable",
        )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: call it and see
        return fn
    try:
        signature.bind(None, None)
    except TypeError:
        raise TaskError(
            "the train function does not take (config, ctx)",
            expected="a function called as fn(config, ctx): two positional parameters",
            received=f"{getattr(fn, '__qualname__', repr(fn))}{signature}"[:200],
            fix="define it as def fit(config, ctx): ...",
            key="function",
        ) from None
    return fn


def _check_metric_name(objective: object) -> str:
    name = check_string(
        "objective", objective, error=TaskError, fix="set objective to e.g. val_loss"
    )
    if name in ("epoch", "trial") or "/" in name or name.startswith("."):
        raise invalid(
            TaskError,
            "objective",
            objective,
            expected="a metric name other than 'epoch' and 'trial', without '/', not starting "
            "with '.'",
            fix="set objective to the name of a metric the function reports, e.g. val_loss",
        )
    return name


def _final_metrics(
    returned: object, reports: Sequence[Mapping[str, float]], objective: str
) -> dict[str, float]:
    """What the train function returned, over the last reported value of each metric."""
    if returned is not None and not isinstance(returned, Mapping):
        raise TaskError(
            "the train function returned neither a dict of metrics nor None",
            expected="a dict such as {'val_loss': 0.41}, or None to use the last report",
            received=describe(returned),
            fix=f"return {{{objective!r}: value, ...}}, or return nothing after ctx.report",
        )
    metrics: dict[str, float] = {}
    for point in reports:
        metrics.update({k: v for k, v in point.items() if k != "epoch"})
    for name, value in (returned or {}).items():
        if not isinstance(name, str) or isinstance(value, bool):
            raise _not_a_metric(name, value)
        if not isinstance(value, numbers.Real):
            raise _not_a_metric(name, value)
        metrics[name] = float(value)
    if objective not in metrics:
        reported = sorted({k for point in reports for k in point if k != "epoch"})
        raise TaskError(
            f"the train function neither reported nor returned the objective {objective!r}",
            expected=f"{objective!r} in a ctx.report(step, ...) call or in the returned dict",
            received=f"reported metrics {reported}, returned {describe(returned)}"[:300],
            fix=f"call ctx.report(epoch, {objective}=...) or return {{{objective!r}: ...}}; "
            "or set the task's objective to a metric it reports",
        )
    return metrics


def _not_a_metric(name: object, value: object) -> TaskError:
    return TaskError(
        f"the train function returned {name!r}, which is not a numeric metric",
        expected="a dict of metric names (strings) to numbers",
        received=f"{name!r}: {describe(value)}"[:200],
        fix=f"return plain numbers, e.g. {{{name!r}: float(value)}}, or leave it out",
    )


# -- the experiment document's task section --------------------------------------------------


def function_task(
    function: str, objective: str, direction: str = "maximize", *, seed: int = 0
) -> FunctionTask:
    """The task of an experiment's ``task: {function: "module:name", objective: ...}``."""
    if not isinstance(function, str):
        raise invalid(
            TaskError,
            "function",
            function,
            expected="an import path 'package.module:name'",
            fix="set function to the import path of your train function, e.g. mypkg.train:fit",
        )
    return FunctionTask(function, objective, direction, seed=seed)


register_kind(
    "task",
    FunctionTask.name,
    function_task,
    Schema(
        document_only={"epochs": check_epochs},
        defaults={"epochs": DEFAULT_EPOCHS},
        required=("function", "objective"),
    ),
)
