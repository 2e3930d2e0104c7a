"""What runs on a Dask worker: lend the trial its devices, run it with its task and a
`TrialContext`, report the outcome.

A trial that raises or diverges is a failed trial (data returned to the driver), never a
crashed task: only a lost worker makes Dask retry.
"""

from __future__ import annotations

import math
import os
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import WorkerPlugin

from morphml_dask.driver._events import Outcome
from morphml_dask.exceptions import TrainingDivergedError
from morphml_dask.tasks import BaseTask, Evaluation, TrialContext
from morphml_dask.trial import Trial, TrialResult

if TYPE_CHECKING:
    from morphml_dask.storage import BaseStore

__all__ = ["GPUPlugin", "TaskPlugin", "run_trial", "run_trials"]


class GPUPlugin(WorkerPlugin):
    """A worker plugin that finds the worker's GPUs and lends one to each running trial.

    Register it with ``client.register_plugin(GPUPlugin())``. On a machine without CUDA the
    pool is empty and trials run on the CPU.
    """

    name = "morphml-gpus"

    def setup(self, worker: Any) -> None:
        # Finding the GPUs imports torch (about a second): only when a trial first wants one,
        # so that registering the plugin costs nothing and CPU searches never pay for it.
        worker.morphml_devices = DevicePool(None)


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
        self, task: BaseTask, name: str, storage_options: dict[str, Any] | None = None
    ) -> None:
        self.task = task
        self.name = name
        self.storage_options = storage_options

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


class DevicePool:
    """Devices of one worker process; each concurrently running trial borrows its own.

    Parameters
    ----------
    devices
        The worker's devices, or None to find its GPUs when a trial first asks for one.
    """

    def __init__(self, devices: list[str] | None) -> None:
        self._devices = None if devices is None else tuple(devices)
        self._free = [] if devices is None else list(devices)
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._discovered())

    def _discovered(self) -> tuple[str, ...]:
        """The devices, found now if not yet (call with the lock held)."""
        if self._devices is None:
            self._devices = tuple(_visible_gpus())
            self._free = list(self._devices)
        return self._devices

    @contextmanager
    def borrow(self, count: int) -> Iterator[tuple[str, ...]]:
        """``count`` devices, or ``("cpu",)`` when ``count`` is 0 or the worker has no GPU."""
        if count == 0:
            yield ("cpu",)
            return
        with self._lock:
            size = len(self._discovered())
            if size and len(self._free) < count:
                raise RuntimeError(
                    f"trial asked for {count} GPU(s) but only {len(self._free)} of this "
                    f"worker's {size} are free; start workers with --resources GPU={size}"
                )
            taken = [self._free.pop(0) for _ in range(count)] if size else []
        if not taken:
            yield ("cpu",)
            return
        try:
            yield tuple(taken)
        finally:
            with self._lock:
                self._free.extend(taken)


def _visible_gpus() -> list[str]:
    try:
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    except Exception:  # a broken CUDA install means no GPU, not a dead worker
        return []


def _device_pool() -> DevicePool:
    try:
        from distributed import get_worker

        worker = get_worker()
    except ValueError:  # not on a Dask worker (tests, local runs)
        return _LOCAL_POOL
    pool = getattr(worker, "morphml_devices", None)
    if pool is None:
        pool = DevicePool(None)
        setattr(worker, "morphml_devices", pool)  # noqa: B010 (a plugin-owned attribute)
    return pool


_LOCAL_POOL = DevicePool([])


def run_trial(
    trial: Trial,
    task: BaseTask | str,
    store_url: str | None = None,
    storage_options: dict[str, Any] | None = None,
    gpus: int = 0,
) -> dict[str, Any]:
    """Evaluate ``trial`` with ``task`` (or the task a `TaskPlugin` of that name gave this
    worker, with its storage options) and describe the outcome.

    Returns an `Outcome` as a JSON-ready dict (`Outcome.to_dict`): ``result``
    (`TrialResult.to_dict`), ``curve``, ``worker``, ``device``, ``job_id`` (the batch job the
    worker runs in: ``SLURM_JOB_ID``, else None), ``start_time`` and ``end_time``.

    The task runs the trial with a `TrialContext` over the store (`BaseTask.run`): a
    function task reports its curve there and saves its state by trial id; a
    `TrainingTask` saves weights under the trial id and rung, so that a promotion (a trial
    with a ``parent``) continues from them. A failed trial keeps the curve it reported.
    """
    start = time.time()
    worker = _worker_address()
    if isinstance(task, str):
        plugin = _task_named(task)
        task = plugin.task
        if storage_options is None:
            storage_options = plugin.storage_options
    with _device_pool().borrow(gpus) as devices:
        ctx: TrialContext | None = None
        try:
            ctx = TrialContext(
                trial,
                seed=_task_seed(task),
                devices=devices,
                store=_open_store(store_url, storage_options),
            )
            result, curve = _evaluate(trial, task, ctx)
        except Exception as error:  # the trial failed; the search goes on
            kind = _failure_kind(error)
            text = "".join(traceback.format_exception_only(type(error), error)).strip()
            curve = [] if ctx is None else ctx.reports
            result = TrialResult.failed(trial.id, text, kind=kind)
    outcome = Outcome(
        result,
        tuple(curve),
        worker=worker,
        device=devices[0],
        job_id=os.environ.get("SLURM_JOB_ID"),
        start_time=start,
        end_time=time.time(),
    )
    return outcome.to_dict()


def run_trials(
    trials: list[Trial],
    task: BaseTask | str,
    store_url: str | None = None,
    storage_options: dict[str, Any] | None = None,
    gpus: int = 0,
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
    evaluation = task.run(trial, ctx)
    if not isinstance(evaluation, Evaluation):
        raise TypeError(
            f"{type(task).__name__}.run returned {type(evaluation).__name__}, not an Evaluation"
        )
    objective = evaluation.metrics.get(task.objective, math.nan)
    if not math.isfinite(objective):
        raise TrainingDivergedError(f"the objective {task.objective} came out {objective}")
    return TrialResult.complete(trial.id, evaluation.metrics), list(evaluation.curve)


def _failure_kind(error: BaseException) -> str:
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
