"""What runs on a Dask worker: lend the trial its devices (whole GPUs, or a share of one),
run it with its task and a `TrialContext`, report the outcome.

A trial that raises or diverges is a failed trial (data returned to the driver), never a
crashed task: only a lost worker makes Dask retry.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import WorkerPlugin

from morphml_dask.driver._devices import device_pool
from morphml_dask.driver._events import Outcome
from morphml_dask.driver._live import LiveLink, live_link
from morphml_dask.exceptions import CandidateRejected, TrainingDivergedError, TrialPruned
from morphml_dask.optim._warmup import warmup_metric
from morphml_dask.tasks import BaseTask, Evaluation, TrialContext, is_warmup, score_for_warmup
from morphml_dask.trial import Trial, TrialResult, TrialState

if TYPE_CHECKING:
    from morphml_dask.storage import BaseStore

__all__ = ["TaskPlugin", "run_trial", "run_trials"]


class TaskPlugin(WorkerPlugin):
    """A worker plugin that hands a search's task, and its store's options, to every worker,
    present and future.

    Trials then name the task instead of depending on a scattered copy of it: a dependency
    per trial would cost the scheduler and the workers about a fifth of their time per trial,
    and workers that join later (restarts, scaling) get the plugin from the scheduler. The
    storage options travel here rather than in each trial's arguments, which Dask logs when a
    task fails: they may hold credentials.
    """

    def __init__(
        self,
        task: BaseTask,
        name: str,
        storage_options: dict[str, Any] | None = None,
        prunes: bool = False,
    ) -> None:
        self.task = task
        self.name = name
        self.storage_options = storage_options
        self.prunes = prunes  # the search has a pruner: trials wait for their verdicts

    def setup(self, worker: Any) -> None:
        _worker_tasks(worker)[self.name] = self

    def teardown(self, worker: Any) -> None:
        _worker_tasks(worker).pop(self.name, None)


def _worker_tasks(worker: Any) -> dict[str, TaskPlugin]:
    tasks: dict[str, TaskPlugin] | None = getattr(worker, "morphml_tasks", None)
    if tasks is None:
        tasks = {}
        setattr(worker, "morphml_tasks", tasks)  # noqa: B010 (a plugin-owned attribute)
    return tasks


def _task_named(name: str) -> TaskPlugin:
    from distributed import get_worker

    try:
        return _worker_tasks(get_worker())[name]
    except (ValueError, KeyError):
        raise LookupError(
            f"no task {name!r} on this worker: register TaskPlugin(task, {name!r}) with "
            "client.register_plugin before submitting its trials"
        ) from None


def run_trial(
    trial: Trial,
    task: BaseTask | str,
    store_url: str | None = None,
    storage_options: dict[str, Any] | None = None,
    gpus: float = 0,
) -> dict[str, Any]:
    """Evaluate ``trial`` with ``task`` (or the task a `TaskPlugin` of that name gave this
    worker, with its storage options) on ``gpus`` GPUs, and describe the outcome.

    Returns an `Outcome` as a JSON-ready dict (`Outcome.to_dict`): ``result``
    (`TrialResult.to_dict`), ``curve``, ``worker``, ``device`` (the devices the trial was
    lent, comma-separated: ``"cuda:0"``, ``"cuda:0,cuda:1"``, ``"cpu"``), ``job_id`` (the
    batch job the worker runs in: ``SLURM_JOB_ID``, else None), ``start_time`` and
    ``end_time``.

    The trial borrows its devices from the worker's `DevicePool`: ``n >= 1`` whole GPUs, or
    a share of one for a fraction, run on a CUDA stream of its own (`TrialContext.activate`).
    The task runs the trial with a `TrialContext` over the store (`BaseTask.run`): a
    function task reports its curve there and saves its state by trial id; a
    `TrainingTask` saves weights under the trial id and rung, so that a promotion (a trial
    with a ``parent``) continues from them. A failed trial keeps the curve it reported.
    """
    start = time.time()
    worker = _worker_address()
    live = None
    if isinstance(task, str):
        plugin = _task_named(task)
        live = live_link(task, trial.id, wait_for_verdicts=plugin.prunes)
        task = plugin.task
        if storage_options is None:
            storage_options = plugin.storage_options
    inherited = None
    with device_pool().borrow(gpus) as devices:
        try:
            store = _open_store(store_url, storage_options)
            result, curve, inherited = _run(trial, task, devices, store, 0 < gpus < 1, live)
        except Exception as error:  # the store would not open: the trial failed
            result, curve = _failed(trial, error), []
        finally:
            if live is not None:
                live.close()
    # A trial paused (`Search.pause`) that returned early saved its state: not a result.
    paused = live is not None and live.paused and result.state is TrialState.PRUNED
    outcome = Outcome(
        result,
        tuple(curve),
        worker=worker,
        device=",".join(devices),
        job_id=os.environ.get("SLURM_JOB_ID"),
        start_time=start,
        end_time=time.time(),
        paused=paused,
        store_url=store_url,
        inherited_fraction=inherited,
    )
    return outcome.to_dict()


def _run(
    trial: Trial,
    task: BaseTask,
    devices: tuple[str, ...],
    store: BaseStore | None,
    share: bool,
    live: LiveLink | None,
) -> tuple[TrialResult, list[dict[str, float]], float | None]:
    """The trial's result, curve and the fraction of its model inherited from its parent:
    run by its task in a `TrialContext` on ``devices``."""
    ctx = TrialContext(
        trial,
        seed=_task_seed(task),
        devices=devices,
        store=store,
        shared=share and devices != ("cpu",),
        live=live,
    )
    try:
        with ctx.activate():
            result, curve = _evaluate(trial, task, ctx)
    except TrialPruned:
        result, curve = _pruned(trial, ctx.reports), ctx.reports
    except Exception as error:  # the trial failed; the search goes on
        result, curve = _failed(trial, error), ctx.reports
    return result, curve, ctx.inherited_fraction


def _failed(trial: Trial, error: Exception) -> TrialResult:
    text = "".join(traceback.format_exception_only(type(error), error)).strip()
    if isinstance(error, CandidateRejected):  # measured, not broken: keep what was measured
        return TrialResult(trial.id, TrialState.FAIL, error.metrics, text, "constraint")
    return TrialResult.failed(trial.id, text, kind=_failure_kind(error))


def run_trials(
    trials: list[Trial],
    task: BaseTask | str,
    store_url: str | None = None,
    storage_options: dict[str, Any] | None = None,
    gpus: float = 0,
) -> list[dict[str, Any]]:
    """`run_trial` for each of ``trials`` in turn, in one Dask task: the driver packs trials
    far shorter than a task's overhead (`PackSize`). Each gets its own outcome, in order, and
    one that fails is that trial's failure alone."""
    return [run_trial(trial, task, store_url, storage_options, gpus) for trial in trials]


def _open_store(url: str | None, storage_options: dict[str, Any] | None) -> BaseStore | None:
    if url is None:
        return None
    from morphml_dask.storage import open_store

    return open_store(url, storage_options)


def _task_seed(task: BaseTask) -> int:
    seed = getattr(task, "seed", 0)
    return seed if isinstance(seed, int) else 0


def _evaluate(
    trial: Trial, task: BaseTask, ctx: TrialContext
) -> tuple[TrialResult, list[dict[str, float]]]:
    if is_warmup(trial):  # score the untrained network for the optimizer's warm-up
        evaluation = score_for_warmup(task, trial, ctx)
        metric = warmup_metric(trial.info["warmup"])
    else:
        evaluation = task.run(trial, ctx)
        metric = task.objective
    if not isinstance(evaluation, Evaluation):
        raise TypeError(
            f"{type(task).__name__}.run returned {type(evaluation).__name__}, not an Evaluation"
        )
    objective = evaluation.metrics.get(metric, math.nan)
    if not math.isfinite(objective):
        raise TrainingDivergedError(f"the objective {metric} came out {objective}")
    curve = list(evaluation.curve)
    reached = max((point.get("epoch", 0) for point in curve), default=trial.budget)
    if ctx.told_to_stop and reached < trial.budget:
        return TrialResult.pruned(trial.id, evaluation.metrics), curve
    return TrialResult.complete(trial.id, evaluation.metrics), curve


def _pruned(trial: Trial, curve: list[dict[str, float]]) -> TrialResult:
    """The result of a trial that raised `TrialPruned`: the metrics of its last report."""
    if not curve:
        return TrialResult.failed(
            trial.id, "TrialPruned raised before the trial reported anything", kind="error"
        )
    last = {name: value for name, value in curve[-1].items() if name != "epoch"}
    return TrialResult.pruned(trial.id, last)


def _failure_kind(error: BaseException) -> str:
    from morphml_dask.storage import StoreOutageError

    if any(isinstance(cause, StoreOutageError) for cause in _causes(error)):
        return "store"  # weights or state the store would not take: run it elsewhere
    text = str(error).lower()
    if isinstance(error, TrainingDivergedError):
        return "diverged"
    if isinstance(error, MemoryError) or "out of memory" in text:
        return "oom"
    if "cuda" in text:
        return "cuda"
    if any(isinstance(cause, ImportError) for cause in _causes(error)):
        return "import"  # e.g. a train function whose module this worker cannot import
    return "error"


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the errors it was raised from, bounded against cycles."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return
        yield seen
        seen = seen.__cause__


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:
        return "local"
