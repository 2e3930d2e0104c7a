"""`TrialContext`: what a trial's own code is given on the worker besides its configuration.

A function task calls ``fn(config, ctx)``; ``ctx`` reports the learning curve, names the
device, says how far the trial should train and how far it already has, and saves and
restores any training state through the experiment store, by trial id.
"""

from __future__ import annotations

import contextlib
import hashlib
import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from morphml_dask.exceptions import TaskError
from morphml_dask.validation import describe, invalid, is_int

if TYPE_CHECKING:
    from torch import nn

    from morphml_dask.models import Inherited
    from morphml_dask.storage import BaseStore
    from morphml_dask.trial import Trial

__all__ = ["TrialContext", "trial_seed"]

# Seeds fit every generator a train function may seed: random, NumPy's legacy and new ones,
# torch.
_SEED_LIMIT = 2**31
_REPORT_FIX = "call ctx.report(epoch, val_loss=val_loss, val_accuracy=accuracy) once per epoch"


class LiveChannel(Protocol):
    """Where a trial's reports go while it runs, and whether it was told to stop: the
    driver's live link on a worker of a search."""

    def report(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def stop_requested(self) -> bool: ...


def trial_seed(task_seed: int, trial_id: str) -> int:
    """The seed of one trial: a stable function of the task's seed and the trial id, below
    2**31, the same on every worker and in every run."""
    digest = hashlib.sha256(f"{task_seed}/{trial_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _SEED_LIMIT


@dataclass(frozen=True)
class _Restored:
    """What `TrialContext.restore` returns, and the epochs behind it."""

    state: dict[str, Any]
    epochs: int


class TrialContext:
    """What a trial's code is given on the worker: ``fn(config, ctx)``.

    `morphml_dask.driver.run_trial` makes one per trial; build one yourself to call a train
    function outside a search (``store=None``: nothing to restore, `save` keeps nothing).

    Parameters
    ----------
    trial
        The trial being run.
    seed
        The task's seed; the trial's own `seed` derives from it and the trial id.
    devices
        The torch devices the trial was lent (GPUs); none means the CPU.
    store
        The experiment store, where `save` writes and `restore` reads; None outside a search.
    shared
        Whether the trial shares its GPU with other trials (``gpus_per_trial`` below 1): it
        then runs on a CUDA stream of its own (`activate`).
    live
        Where each report goes as it is made, and who says when to stop: the search's
        driver, on a worker; None outside a search (`should_stop` is then always False).

    Attributes
    ----------
    trial
        The trial being run.
    trial_id
        The trial's id, unique in the search.
    budget
        The epochs (or steps) the trial should have trained for when it returns.
    seed
        The trial's seed, `trial_seed` of the task's seed and the trial id: seed torch,
        NumPy and the data order with it for runs that repeat.
    inherited_fraction
        The fraction of the model's parameters that came from the parent's weights (`inherit`,
        or a promotion's `restore`), None when nothing came from a parent: the trials table
        records it.
    """

    def __init__(
        self,
        trial: Trial,
        *,
        seed: int = 0,
        devices: Sequence[str] = (),
        store: BaseStore | None = None,
        shared: bool = False,
        live: LiveChannel | None = None,
    ) -> None:
        self.trial = trial
        self.trial_id = trial.id
        self.budget = trial.budget
        self.seed = trial_seed(seed, trial.id)
        self._devices = tuple(devices) or ("cpu",)
        self._store = store
        self._shared = shared
        self._live = live
        self._told_to_stop = False
        self._stream: Any = None
        self._points: list[dict[str, float]] = []
        self._restored: _Restored | None = None
        self._looked_up = False
        self.inherited_fraction: float | None = None

    def __repr__(self) -> str:
        return (
            f"TrialContext(trial_id={self.trial_id!r}, budget={self.budget}, "
            f"device={self.device!r}, reports={len(self._points)})"
        )

    # -- where and how far -----------------------------------------------------------------

    @property
    def device(self) -> str:
        """The trial's torch device: ``"cpu"`` without GPUs, else its first GPU."""
        return self._devices[0]

    @property
    def devices(self) -> tuple[str, ...]:
        """Every device the trial was lent (``("cpu",)`` without GPUs): with
        ``gpus_per_trial`` n >= 1, n GPUs that no other trial uses, to train data-parallel
        over; with a share of a GPU, that one GPU."""
        return self._devices

    @property
    def shared(self) -> bool:
        """Whether the trial shares its GPU with other trials, each on its own stream."""
        return self._shared

    @property
    def stream(self) -> Any:
        """The trial's own ``torch.cuda.Stream`` while it runs on a shared GPU
        (`activate`), else None: the work of a trial that shares its GPU goes there, so that
        the trials on one GPU overlap."""
        return self._stream

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """Run the block on the trial's devices: its first GPU is the thread's current CUDA
        device and, when it shares that GPU, its own stream the current stream (waited for
        when the block ends). On the CPU, or where CUDA is not available (devices assumed
        by the ``morphml.cluster.gpus`` override), it does nothing.

        `morphml_dask.driver.run_trial` runs every trial in it; the current device and
        stream belong to the thread, so the trials running at once on a worker do not
        interfere.
        """
        if not self.device.startswith("cuda"):
            yield
            return
        import torch

        if not torch.cuda.is_available():
            yield
            return
        with torch.cuda.device(self.device):
            if not self._shared:
                yield
                return
            stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
            self._stream = stream
            try:
                with torch.cuda.stream(stream):
                    yield
                stream.synchronize()  # the share is given back once its work is done
            finally:
                self._stream = None

    @property
    def store(self) -> BaseStore | None:
        """The experiment store (None outside a search), for tasks that keep more than a
        state: `TrainingTask` saves weights per rung there."""
        return self._store

    @property
    def trained_epochs(self) -> int:
        """The epochs behind what `restore` returns: the step its own state was saved at, the
        parent's budget for an ASHA promotion, else 0. Train from here to `budget`."""
        restored = self._lookup()
        return 0 if restored is None else restored.epochs

    def should_stop(self) -> bool:
        """Whether the search's pruner decided to stop this trial: return now (after a
        ``ctx.save`` if the trial should be able to continue later), or ``raise
        TrialPruned()``. Check it once per epoch, after `report`.

        The decision is made by the driver from the reports of every trial and reaches the
        trial a moment later; once True it stays True. Without a pruner (and outside a
        search) always False.
        """
        if not self._told_to_stop and self._live is not None:
            self._told_to_stop = self._live.stop_requested()
        return self._told_to_stop

    @property
    def told_to_stop(self) -> bool:
        """Whether `should_stop` returned True: a trial that then returns before its budget
        is recorded as pruned."""
        return self._told_to_stop

    # -- the learning curve ----------------------------------------------------------------

    def report(self, step: int, **metrics: float) -> None:
        """Report the metrics of one step (an epoch, usually): a point of the learning curve.

        Steps never go backwards; a step reported again adds to (and overrides) the metrics
        of its point. The metrics of the last report are the trial's result when the train
        function returns None.

        Raises
        ------
        TaskError
            When ``step`` is not an integer >= 0 or is below the last step reported, when no
            metric is given, or a metric is not a number or has a name the store refuses.
        """
        last = self._points[-1]["epoch"] if self._points else None
        _check_step(step, last)
        _check_metrics(metrics)
        point = {"epoch": int(step), **{name: float(value) for name, value in metrics.items()}}
        self._keep(point)

    def _keep(self, point: dict[str, float]) -> None:
        """The one place a report goes: onto the trial's curve, which travels to the driver
        with the trial's outcome when it returns, and to the driver at once (live), where
        the search's pruner decides on it."""
        if self._points and self._points[-1]["epoch"] == point["epoch"]:
            self._points[-1].update(point)
        else:
            self._points.append(point)
        if self._live is not None:
            metrics = {name: value for name, value in point.items() if name != "epoch"}
            self._live.report(int(point["epoch"]), metrics)

    @property
    def reports(self) -> list[dict[str, float]]:
        """The learning curve so far: ``{"epoch": step, **metrics}`` per step, a copy."""
        return [dict(point) for point in self._points]

    # -- state -----------------------------------------------------------------------------

    def save(self, state: Mapping[str, Any], *, step: int | None = None) -> None:
        """Save the trial's training state to the store, whole or not at all, replacing its
        last save: what `restore` gives the trial if it runs again (a resumed search, a
        retry) and its promotions (ASHA). It does not change what `restore` gives now.

        Parameters
        ----------
        state
            A dict of what continuing needs: ``model.state_dict()``,
            ``optimizer.state_dict()``, a scheduler's, counters. Tensors, numbers, strings,
            lists and dicts: it is read back with ``torch.load(..., weights_only=True)``.
        step
            The epochs behind the state; by default the last step reported (else
            `trained_epochs`).

        Raises
        ------
        TaskError
            When ``state`` is not a dict with string keys, or ``step`` not an integer >= 0.
        StorageInputError
            When the state holds objects that would load only by running code (a module, an
            optimizer object): save their state dicts.

        Notes
        -----
        Outside a search (no store) the state is checked and dropped.
        """
        if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
            raise invalid(
                TaskError,
                "state",
                state,
                expected="a dict with string keys, e.g. {'model': model.state_dict(), "
                "'optimizer': optimizer.state_dict()}",
                fix="pass ctx.save a dict of state dicts",
                problem="ctx.save takes a dict",
            )
        if step is not None and not (is_int(step) and step >= 0):
            raise invalid(TaskError, "step", step, expected="an integer >= 0, or None")
        if self._store is None:
            return
        # What the trial continues from is looked up before its first save replaces it.
        started_from = self.trained_epochs
        if step is None:
            step = int(self._points[-1]["epoch"]) if self._points else started_from
        self._store.save_state(self.trial_id, state, step=int(step), reports=self._points)

    def restore(self) -> dict[str, Any] | None:
        """The state the trial continues from, its tensors on the CPU: the one this trial
        saved last (a resumed or retried trial), else the one its parent saved (an ASHA
        promotion), else None. `trained_epochs` says how far it got.

        Looked up once: saves during this run do not change it. A trial that continues from
        its own state keeps the curve it had reported by then.
        """
        restored = self._lookup()
        return None if restored is None else restored.state

    def inherit(self, model: nn.Module, *, key: str = "model") -> Inherited | None:
        """Start ``model`` from the weights of the parent this child was made from
        (Lamarckian evolution): every tensor of the parent's saved ``state[key]`` (or of its
        whole state, when it has no ``key``) whose name and shape match one of ``model``'s
        is copied into it; the rest keep their fresh initialisation.

        Returns what was copied and the fraction of ``model``'s parameters it makes up
        (recorded in the trials table), or None when the trial inherits nothing: it was not
        made from a parent (`Trial.inherits`), there is no store, or the parent saved no
        state. The parent's state travels worker to worker through the store.
        """
        from morphml_dask.tasks._inherit import inherit_saved_state

        if self._store is None or not self.trial.inherits or self.trial.parent is None:
            return None
        inherited = inherit_saved_state(self._store, self.trial.parent, model, key)
        if inherited is not None:
            self.inherited_fraction = inherited.fraction
        return inherited

    def _lookup(self) -> _Restored | None:
        """The state to restore, looked up in the store on first use."""
        if self._looked_up or self._store is None:
            return self._restored
        self._looked_up = True
        own = self._store.saved_state(self.trial_id)
        if own is not None:
            self._restored = _Restored(own.state, own.step)
            if not self._points:
                self._points = [dict(point) for point in own.reports]
        elif self.trial.parent is not None and not self.trial.inherits:
            parent = self._store.saved_state(self.trial.parent)
            if parent is not None:
                self._restored = _Restored(parent.state, self.trial.parent_budget)
                self.inherited_fraction = 1.0
        return self._restored


def _check_step(step: object, last: float | None) -> None:
    if not is_int(step) or step < 0:
        raise invalid(
            TaskError,
            "step",
            step,
            expected="an integer >= 0: the epoch (or step) the metrics are of",
            fix=_REPORT_FIX,
            problem="ctx.report: step is not an integer >= 0",
        )
    if last is not None and step < last:
        raise TaskError(
            f"ctx.report: step {step} goes backwards",
            expected=f"a step >= {int(last)}, the last one reported",
            received=f"step {step} after step {int(last)}",
            fix="report steps in order, e.g. ctx.report(epoch, ...) with epoch growing; "
            "after ctx.restore() continue from ctx.trained_epochs + 1",
            key="step",
        )


def _check_metrics(metrics: Mapping[str, object]) -> None:
    if not metrics:
        raise TaskError(
            "ctx.report was given no metric",
            expected="at least one metric as a keyword, e.g. ctx.report(3, val_loss=0.41)",
            received="only a step",
            fix=_REPORT_FIX,
        )
    for name, value in metrics.items():
        if name in ("epoch", "trial") or "/" in name or name.startswith("."):
            raise TaskError(
                f"ctx.report: invalid metric name {name!r}",
                expected="a name other than 'epoch' and 'trial', without '/', not starting "
                "with '.'",
                received=repr(name),
                fix="rename the metric, e.g. val_loss",
                key=name,
            )
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TaskError(
                f"ctx.report: metric {name!r} is not a number",
                expected="an int or float (a NumPy scalar will do)",
                received=describe(value),
                fix=f"report a Python number, e.g. {name}=loss.item() for a tensor",
                key=name,
            )
