"""`Search`: a search on a Dask cluster, for scripts, notebooks and the CLI.

One trial is one ``Client.submit(run_trial, trial, key=..., pure=False, resources=...,
priority=trial.rung, retries=...)``; ``as_completed`` hands back whichever trial finishes
first, its result is persisted and told to the optimizer, and the next trial is submitted at
once, so no worker waits for a straggler. Trials wait queued ahead of the free slots (about
a quarter of the slots) so that a slot never waits for the driver either, and results reach
the store on a cadence rather than one append per trial, so that the driver's own work stays
small next to the trials'.

The decisions are made by a pure state machine (`SearchState`); `SearchSession` is the thin
I/O shell around it that holds the futures; `Search` resolves the settings and offers the
blocking, background and notebook ways to run it.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from morphml_dask.config import config_value
from morphml_dask.credentials import without_credentials
from morphml_dask.driver._cluster import default_client, keep_restarting_workers
from morphml_dask.driver._packing import PackSize
from morphml_dask.driver._session import SearchSession
from morphml_dask.driver._state import Counts, Policy, SearchState
from morphml_dask.exceptions import ClusterError, PrunerError
from morphml_dask.gpus import check_gpus_per_trial
from morphml_dask.prune import BasePruner
from morphml_dask.status import SearchStatus
from morphml_dask.storage import ExperimentStore, open_store
from morphml_dask.validation import describe

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr
    from distributed import Client
    from matplotlib.figure import Figure

    from morphml_dask.driver._writer import StoreWriter
    from morphml_dask.optim import BaseOptimizer
    from morphml_dask.tasks import BaseTask

__all__ = ["Search"]


class Search:
    """A search on a Dask cluster: an optimizer, a task and a store.

    Parameters
    ----------
    optimizer
        The ask/tell algorithm, with a finite ``max_trials`` (or one that finishes itself).
    task
        What each trial does on a worker.
    store
        An `ExperimentStore` or its URL (config ``morphml.store``, ``./runs/search``).
    storage_options
        For the store's filesystem when ``store`` is a URL.
    client
        A `distributed.Client`; by default the current one, else a new `LocalCluster` of
        worker processes (closed again at the end; a client you pass is never closed).
    gpus_per_trial
        GPUs each trial needs (config ``morphml.gpus-per-trial``, 0: the CPU). A whole
        number ``n`` gives each trial ``n`` GPUs of its own (``ctx.devices``); a fraction
        ``f`` from 0.001 to 1 shares one GPU between ``floor(1/f)`` trials at once (0.5:
        two), each on its own CUDA stream. Trials ask Dask for ``GPU`` resources
        accordingly (`morphml_dask.gpus`); see the GPU page of the documentation.
    max_retries
        How often a trial runs again when Dask gave it up after its workers died, or when it
        failed for infrastructure reasons (CUDA, out of memory, import errors), each time on
        another worker when one is left (``morphml.max-retries``, 2).
    quarantine_after
        Trials in a row that may fail for infrastructure reasons on one worker before the
        worker is retired from the cluster (``morphml.quarantine-after``, 3).
    lookahead
        Trials queued beyond the free slots (``morphml.lookahead``; by default a quarter of
        the slots, at least 2).
    persist_interval
        Seconds between store appends, each followed by a checkpoint
        (``morphml.persist-interval``, 1.0).
    store_outage_timeout
        Seconds the store may stay unreachable, results waiting and no new trials
        submitted, before the search stops with a `StorageError`
        (``morphml.store-outage-timeout``, 600).
    worker_timeout
        Seconds the cluster may have no worker able to run the trials, while trials wait,
        before the search stops with an `UnschedulableError` (``morphml.worker-timeout``,
        600; set that to null to wait forever, since None here means the configured value).
    name
        Prefix of the Dask keys (``<name>/<trial id>``).
    config
        The experiment document, saved in checkpoints so that `resume` can rebuild it;
        the secrets of its storage options are left out (`without_credentials`).
    worker_wait
        Seconds to wait at the start for a worker that can run the trials before raising
        `UnschedulableError`.
    max_pack
        The most trials one Dask task may carry (32; 1 sends each trial in a task of its
        own). Trials far shorter than a task's overhead are packed, so that a search of
        millisecond trials is not limited by the scheduler; each keeps its own row, and the
        queue grows by the same factor, so that every slot stays busy (`PackSize`).
    pruner
        Stops losing trials while they run, from their reports
        (`morphml_dask.prune.MedianStopping`, `SuccessiveHalving`, `Hyperband`), judged by
        the optimizer's objective; None trains every trial to its budget.

    Raises
    ------
    ClusterError
        When ``gpus_per_trial`` is neither 0, a share of one GPU from 0.001 to 1, nor a
        whole number of GPUs.
    """

    def __init__(
        self,
        optimizer: BaseOptimizer,
        task: BaseTask,
        *,
        store: ExperimentStore | str | None = None,
        storage_options: dict[str, Any] | None = None,
        client: Client | None = None,
        gpus_per_trial: float | None = None,
        max_retries: int | None = None,
        quarantine_after: int | None = None,
        lookahead: int | None = None,
        persist_interval: float | None = None,
        store_outage_timeout: float | None = None,
        worker_timeout: float | None = None,
        name: str = "search",
        config: Mapping[str, Any] | None = None,
        worker_wait: float = 10.0,
        max_pack: int = 32,
        pruner: BasePruner | None = None,
    ) -> None:
        if not isinstance(store, ExperimentStore):
            store = open_store(config_value("store", store), storage_options)
        self.optimizer = optimizer
        self.task = task
        self.store = store
        self.client = client
        self.name = name
        self.policy = _policy(
            name,
            task,
            gpus_per_trial=gpus_per_trial,
            max_retries=max_retries,
            quarantine_after=quarantine_after,
            lookahead=lookahead,
            persist_interval=persist_interval,
            worker_timeout=worker_timeout,
            max_pack=max_pack,
        )
        self.store_outage_timeout = float(
            config_value("store-outage-timeout", store_outage_timeout)
        )
        # Saved in every checkpoint, so never with the secrets of its storage options.
        self.config: dict[str, Any] = without_credentials(dict(config or {}))
        self.worker_wait = worker_wait
        self.pruner = _check_pruner(pruner)
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._stop = threading.Event()
        self.pause_for = 0.0  # seconds to wait for paused trials (`pause`); 0: `stop`
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._session: SearchSession | None = None
        self._last: SearchState | None = None

    # -- running ---------------------------------------------------------------------------

    def run(self) -> pd.DataFrame:
        """Run to the end (blocking) and return the trials table."""
        self._loop()
        return self.store.trials()

    def start(self) -> Search:
        """Run in a background thread (for notebooks); see `status`, `stop`, `wait`."""
        self._thread = threading.Thread(target=self._run_in_thread, name="morphml-search")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop submitting; running trials are cancelled and stay in the checkpoint."""
        self._stop.set()

    def pause(self, grace: float = 60.0) -> None:
        """Stop submitting; tell the running trials to save their state and return. They
        stay pending in the checkpoint and continue from that state, on any worker, when the
        search is resumed (`resume`); those still running after ``grace`` seconds are
        cancelled, as by `stop`. A trial cooperates by ``ctx.save`` and a return once
        ``ctx.should_stop()``."""
        self.pause_for = max(float(grace), 1e-3)
        self._stop.set()

    def wait(self, timeout: float | None = None) -> pd.DataFrame:
        """Wait for a search started with `start`; re-raises its error."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self.store.trials()

    @property
    def running(self) -> bool:
        """Whether a search started with `start` is still going."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def gpus_per_trial(self) -> float:
        """GPUs each trial needs: whole GPUs, a share of one, or 0 for the CPU."""
        return self.policy.gpus_per_trial

    @property
    def events(self) -> list[tuple[Any, ...]]:
        """The optimizer's inputs in order, ``("ask", n, ids)`` and ``("tell", id)``:
        replaying them on a fresh optimizer reproduces the search's decisions."""
        return [] if self._last is None else list(self._last.log)

    @property
    def pruning(self) -> tuple[list[tuple[str, int, float]], list[tuple[str, int]]]:
        """The pruner's inputs, ``(trial_id, step, score)`` in order, and the stops it
        decided, ``(trial_id, step)``: replaying the first on a fresh pruner gives the
        second."""
        if self._last is None:
            return [], []
        return list(self._last.pruning.inputs), list(self._last.pruning.decisions)

    def live_curves(self) -> tuple[dict[str, list[dict[str, float]]], set[str]]:
        """The curves of the trials running now, as they reported them so far (trial id ->
        points ``{"epoch": step, **metrics}``, the latest 200 of each, in the order the
        trials first reported), and the ids of those the pruner told to stop. Copies, safe
        to read while the search runs (the dashboard page draws them)."""
        if self._last is None:
            return {}, set()
        live = self._last.pruning.live
        curves = dict(live.curves)  # one copy at once: the search's thread adds and drops
        return {trial_id: list(points) for trial_id, points in curves.items()}, set(live.stopped)

    def status(self) -> SearchStatus:
        """Where the search stands now (`SearchStatus`)."""
        elapsed = 0.0
        if self.started_at is not None:
            elapsed = (self.finished_at or time.time()) - self.started_at
        writer = None if self._session is None else self._session.writer
        return _status(self._last, writer, self.optimizer, elapsed)

    def _run_in_thread(self) -> None:
        try:
            self._loop()
        except BaseException as error:  # re-raised by wait()
            self._error = error

    def _loop(self) -> None:
        self.started_at, self.finished_at = time.time(), None
        # The objects alive now (torch, xarray, a local scheduler's state) would make every
        # full garbage collection during the search scan them: a 0.2 s pause of the loop and
        # of a local scheduler, long enough to leave dozens of slots idle.
        gc.freeze()
        client, owned = (
            (self.client, None) if self.client is not None else default_client(self.gpus_per_trial)
        )
        try:
            with keep_restarting_workers() if owned is not None else contextlib.nullcontext():
                self._session = SearchSession(self, client)
                self._last = self._session.state
                self._session.run()
        finally:
            if owned is not None:
                client.close()
                owned.close()
            gc.unfreeze()
            self.finished_at = time.time()

    # -- notebooks ---------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"not started"``, ``"running"``, ``"finished"``, ``"stopped"`` or ``"failed"``
        (a search started with `start` whose loop raised; `wait` re-raises the error)."""
        if self._error is not None:
            return "failed"
        if self.running:
            return "running"
        if self.started_at is None:
            return "not started"
        return "finished" if self.optimizer.finished else "stopped"

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's URL while the search's client is connected, else None."""
        client = self._session.client if self._session is not None else self.client
        if client is None or client.status != "running":
            return None
        with contextlib.suppress(Exception):  # a scheduler without a dashboard
            return str(client.dashboard_link)
        return None

    def results(self) -> pd.DataFrame:
        """The trials stored so far, one row per trial id (`ExperimentStore.trials`)."""
        return self.store.trials()

    def curves(self) -> xr.Dataset:
        """The learning curves stored so far, dims ``(trial, epoch)``."""
        return self.store.curves()

    def plot(self, kind: str = "best", *, top: int = 5) -> Figure:
        """A matplotlib figure of the stored trials (needs matplotlib).

        Parameters
        ----------
        kind
            ``"best"`` (best objective so far, by trial and by time), ``"pareto"`` (objective
            against parameters), ``"curves"`` (learning curves of the ``top`` trials) or
            ``"timeline"`` (trials per worker over time).
        top
            How many of the best trials ``"curves"`` shows.
        """
        from morphml_dask.notebook import plot_search

        return plot_search(self, kind, top=top)

    def _repr_html_(self) -> str:
        from morphml_dask.notebook import search_html

        return search_html(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        # While running: a widget that keeps itself up to date; Jupyter adds _repr_html_.
        from morphml_dask.notebook import search_mimebundle

        return search_mimebundle(self)


def _policy(name: str, task: BaseTask, *, max_pack: int, **settings: Any) -> Policy:
    """The state machine's settings: each keyword, or its ``morphml.`` config default."""
    configured = {
        key: config_value(key.replace("_", "-"), value) for key, value in settings.items()
    }
    expected = getattr(task, "expected_seconds", None)
    PackSize(max_pack)  # refuses a bad max_pack now rather than when the search starts
    return Policy(
        name=name,
        gpus_per_trial=check_gpus_per_trial(configured["gpus_per_trial"], error=ClusterError),
        max_retries=int(configured["max_retries"]),
        quarantine_after=int(configured["quarantine_after"]),
        lookahead=None if configured["lookahead"] is None else int(configured["lookahead"]),
        persist_interval=float(configured["persist_interval"]),
        worker_timeout=None
        if configured["worker_timeout"] is None
        else float(configured["worker_timeout"]),
        max_pack=max_pack,
        expected_seconds=expected if callable(expected) else None,
    )


def _check_pruner(pruner: object) -> BasePruner | None:
    if pruner is None or isinstance(pruner, BasePruner):
        return pruner
    raise PrunerError(
        "invalid pruner",
        expected="a pruner of morphml_dask.prune, e.g. SuccessiveHalving(min_budget=1, eta=3), "
        "or None",
        received=describe(pruner),
        fix="pass pruner=MedianStopping() or another BasePruner",
        key="pruner",
    )


def _status(
    state: SearchState | None,
    writer: StoreWriter | None,
    optimizer: BaseOptimizer,
    elapsed: float,
) -> SearchStatus:
    counts = Counts() if state is None else state.counts
    best = optimizer.best_trial
    return SearchStatus(
        done=counts.done,
        failed=counts.failed,
        pruned=counts.pruned,
        reused=counts.reused,
        retried=counts.retried,
        submitted=counts.submitted,
        running=0 if state is None or state.over else state.running,
        waiting_for_a_worker=0 if state is None else state.waiting,
        waiting_for_a_twin=0 if state is None else len(state.repeats.twins),
        kept_off_retiring_workers=counts.kept_off,
        waiting_for_store=writer is not None and writer.congested,
        store_retries=0 if writer is None else writer.retries,
        store_longest_write_s=0.0 if writer is None else writer.longest_write_s,
        store_last_write_s=0.0 if writer is None else writer.last_write_s,
        store_backlog_batches=0 if writer is None else writer.backlog_batches,
        quarantined=() if state is None else state.health.quarantined_workers,
        best_trial=None if best is None else best.id,
        elapsed=elapsed,
        finished=optimizer.finished,
    )
