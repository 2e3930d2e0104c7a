"""`Search`: the only code that holds futures.

One trial is one ``Client.submit(run_trial, trial, key=..., pure=False, resources=...,
priority=trial.rung, retries=...)``; ``as_completed`` hands back whichever trial finishes
first, its result is persisted and told to the optimizer, and the next trial is submitted at
once, so no worker waits for a straggler. Trials wait queued ahead of the free slots (about
a quarter of the slots) so that a slot never waits for the driver either, and results reach
the store on a cadence rather than one append per trial, so that the driver's own work stays
small next to the trials'.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from morphml_dask.config import config_value
from morphml_dask.credentials import without_credentials
from morphml_dask.driver._cluster import (
    default_client,
    keep_restarting_workers,
    running_slots,
    slots_of,
)
from morphml_dask.driver._health import INFRASTRUCTURE_FAILURES, Quarantine, WorkerHealth
from morphml_dask.driver._monitor import ProgressPublisher
from morphml_dask.driver._packing import PackSize
from morphml_dask.driver._placement import DurationEstimate, Lifetimes
from morphml_dask.driver._worker import GPUPlugin, TaskPlugin, run_trial, run_trials
from morphml_dask.driver._writer import StoreWriter
from morphml_dask.exceptions import SearchStalledError, UnschedulableError
from morphml_dask.storage import Checkpoint, ExperimentStore, open_store, trial_row
from morphml_dask.trial import Trial, TrialResult

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr
    from distributed import Client, Future
    from matplotlib.figure import Figure

    from morphml_dask.optim import BaseOptimizer
    from morphml_dask.tasks import BaseTask

__all__ = ["Search"]

logger = logging.getLogger(__name__)

_STOP_POLL_S = 0.25
# Without completions for this long, the loop asks the scheduler whether any worker is left.
_WORKER_CHECK_S = 5.0


def _next_completions(completed: Any, timeout: float) -> list[Future[Any]]:
    """The trials finished so far, waiting up to ``timeout`` seconds for the first."""
    deadline = time.monotonic() + timeout
    while not completed.has_ready():
        left = deadline - time.monotonic()
        if left <= 0:
            return []
        with completed.thread_condition:  # notified by as_completed after every completion
            if not completed.has_ready():
                completed.thread_condition.wait(left)
    batch: list[Future[Any]] = completed.next_batch(block=False)
    return batch


def _outcomes(client: Client, futures: list[Future[Any]]) -> list[tuple[Future[Any], Any]]:
    """Each finished future with its result, or with its exception when the task failed
    (its retries used up) or was cancelled. One gather for the whole batch: a fetch per
    trial would cost the driver, the scheduler and the workers a round trip each."""
    finished = [f for f in futures if f.status == "finished"]
    results = dict(zip(finished, client.gather(finished), strict=True)) if finished else {}
    return [(f, results[f] if f in results else _failure_of(f)) for f in futures]


def _register(client: Client, plugin: Any, attempts: int = 5) -> None:
    """Register a worker plugin; the scheduler fails the call when a worker dies while the
    plugin is handed out (it keeps the plugin for the workers that come), so try again."""
    for attempt in range(attempts):
        try:
            client.register_plugin(plugin)
            return
        except OSError:  # CommClosedError: a worker went away mid-broadcast
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def _failure_of(future: Future[Any]) -> BaseException:
    try:
        error = future.exception()
    except BaseException as cancelled:  # CancelledError: nothing to fetch
        return cancelled
    return error if isinstance(error, BaseException) else RuntimeError(f"{future.key} failed")


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
        GPUs each trial needs; above 0 the trials ask Dask for that many ``GPU`` resources
        (config ``morphml.gpus-per-trial``, 0).
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
    """

    def __init__(
        self,
        optimizer: BaseOptimizer,
        task: BaseTask,
        *,
        store: ExperimentStore | str | None = None,
        storage_options: dict[str, Any] | None = None,
        client: Client | None = None,
        gpus_per_trial: int | None = None,
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
    ) -> None:
        if not isinstance(store, ExperimentStore):
            store = open_store(config_value("store", store), storage_options)
        self.optimizer = optimizer
        self.task = task
        self.store = store
        self.client = client
        self.gpus_per_trial = int(config_value("gpus-per-trial", gpus_per_trial))
        self.max_retries = int(config_value("max-retries", max_retries))
        self.health = WorkerHealth(
            self.max_retries, int(config_value("quarantine-after", quarantine_after))
        )
        configured_lookahead = config_value("lookahead", lookahead)
        self.lookahead = None if configured_lookahead is None else int(configured_lookahead)
        self.persist_interval = float(config_value("persist-interval", persist_interval))
        self.store_outage_timeout = float(
            config_value("store-outage-timeout", store_outage_timeout)
        )
        configured_worker_timeout = config_value("worker-timeout", worker_timeout)
        self.worker_timeout = (
            None if configured_worker_timeout is None else float(configured_worker_timeout)
        )
        self.name = name
        # Saved in every checkpoint, so never with the secrets of its storage options.
        self.config: dict[str, Any] = without_credentials(dict(config or {}))
        self.worker_wait = worker_wait
        self._packing = PackSize(max_pack)
        self._packs: dict[str, list[str]] = {}  # a packed task's key -> its trials' keys
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._in_flight: dict[str, tuple[Trial, Future[Any]]] = {}
        # Trials no worker stays long enough for (walltime-aware placement), with the
        # workers to avoid; submitted once one does.
        self._waiting: list[tuple[Trial, list[str] | None]] = []
        self._lifetimes = Lifetimes()
        self._restricted: dict[str, set[str]] = {}  # key -> the only workers it may use
        self._submissions: dict[str, int] = {}
        self._checked_at = time.monotonic()
        self._capacity = 0
        self._durations = DurationEstimate()
        self._rows: list[dict[str, Any]] = []
        self._curves: dict[str, list[dict[str, float]]] = {}
        self._collected: list[Future[Any]] = []
        self._evaluated: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
        self._stored: dict[str, TrialResult] = {}
        self._writer: StoreWriter | None = None
        self._publisher: ProgressPublisher | None = None
        self._flushed_at = 0.0
        self._workers_gone_since: float | None = None
        self.counts = {"done": 0, "failed": 0, "reused": 0, "retried": 0, "submitted": 0}
        self._client: Client | None = None
        self._task_name = ""
        self._completed: Any = None
        # The optimizer's inputs in order: ("ask", n, ids) and ("tell", id). Replaying them on
        # a fresh optimizer reproduces the search exactly (what the tests check).
        self.events: list[tuple[Any, ...]] = []
        self.started_at: float | None = None
        self.finished_at: float | None = None

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

    def _run_in_thread(self) -> None:
        try:
            self._loop()
        except BaseException as error:  # re-raised by wait()
            self._error = error

    @property
    def running(self) -> bool:
        """Whether a search started with `start` is still going."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop submitting; running trials are cancelled and stay in the checkpoint."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> pd.DataFrame:
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        return self.store.trials()

    def status(self) -> dict[str, Any]:
        best = self.optimizer.best_trial
        return {
            **self.counts,
            "running": len(self._in_flight),
            "waiting_for_a_worker": len(self._waiting),
            "kept_off_retiring_workers": self._lifetimes.kept_off,
            "waiting_for_store": self._writer is not None and self._writer.congested,
            "store_retries": 0 if self._writer is None else self._writer.retries,
            "store_longest_write_s": 0.0 if self._writer is None else self._writer.longest_write_s,
            "store_last_write_s": 0.0 if self._writer is None else self._writer.last_write_s,
            "store_backlog_batches": 0 if self._writer is None else self._writer.backlog_batches,
            "quarantined": self._quarantined(),
            "best_trial": None if best is None else best.id,
            "elapsed": 0.0
            if self.started_at is None
            else (self.finished_at or time.time()) - self.started_at,
            "finished": self.optimizer.finished,
        }

    # -- the loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        from distributed import as_completed

        self.started_at = time.time()
        self.finished_at = None
        # The objects alive now (torch, xarray, a local scheduler's state) would make every
        # full garbage collection during the search scan them: a 0.2 s pause of the loop and
        # of a local scheduler, long enough to leave dozens of slots idle.
        gc.freeze()
        client, owned = (
            (self.client, None) if self.client is not None else default_client(self.gpus_per_trial)
        )
        task = None
        cleanup = contextlib.ExitStack()
        if owned is not None:
            cleanup.enter_context(keep_restarting_workers())
        try:
            _register(client, GPUPlugin())
            self._size_queue(
                slots_of(client, self.gpus_per_trial, wait=self.worker_wait, none_ok=True)
            )
            task = f"{self.name}-{uuid.uuid4().hex[:8]}"
            _register(client, TaskPlugin(self.task, task, self.store.location.storage_options))
            self._remember_stored_results()
            self._writer = StoreWriter(self.store, outage_timeout=self.store_outage_timeout)
            self._client, self._task_name = client, task
            if config_value("dashboard"):
                self._publisher = ProgressPublisher(
                    client,
                    task,
                    self.name,
                    self.task.objective,
                    self.task.direction,
                    self.status,
                )
            self._completed = as_completed(loop=client.loop)
            for trial in self._resume_pending():
                self._submit(trial)
            # A checkpoint at once, so that a driver killed before the first results were
            # stored can still be resumed (it holds the experiment).
            self._flush()
            self._flushed_at = self._checked_at = time.monotonic()
            while not self._stop.is_set():
                self._writer.check()
                # While the store fails, hold new trials back: running ones finish and their
                # results wait in memory, so nothing is dropped and the buffer stays bounded.
                holding = self._writer.congested
                if not holding:
                    self._fill(self._capacity)
                if not self._in_flight and not self._waiting and not holding:
                    if self.optimizer.finished:
                        break
                    raise SearchStalledError(
                        f"{type(self.optimizer).__name__} stalled",
                        expected="an optimizer that asks for trials until it is finished",
                        received="nothing running, nothing asked, not finished",
                        fix="check the optimizer's settings (max_trials, population, rungs)",
                    )
                finished = _next_completions(self._completed, self._wait_budget())
                for future, outcome in _outcomes(client, finished):
                    self._collect(future, outcome)
                self._watch_workers(client)
                if (
                    self._rows
                    and not self._writer.congested
                    and (not self._in_flight or self._flush_due() or self._stop.is_set())
                ):
                    self._flush()
            self._flush()
            self._writer.close()
        finally:
            if self._writer is not None:
                if self._rows:  # on errors too: results that came back are kept
                    with contextlib.suppress(Exception):  # the writer's own error wins
                        self._flush()
                self._writer.stop()
            if self._publisher is not None:
                self._publisher.close()
            for _, future in self._in_flight.values():
                future.cancel()
            self._in_flight.clear()
            if task is not None and owned is None:
                with contextlib.suppress(Exception):  # a closed client has nothing to free
                    client.unregister_worker_plugin(task)
            if owned is not None:
                client.close()
                owned.close()
            cleanup.close()
            gc.unfreeze()
            self.finished_at = time.time()

    def _fill(self, capacity: int) -> None:
        """Ask for trials until ``capacity`` tasks' worth run or wait queued, or the optimizer
        has none; trials answered from the store leave their place free for the next ask."""
        waiting, self._waiting = self._waiting, []
        for trial, avoid in waiting:
            self._submit(trial, avoid)
        pack = self._pack_size()
        while (want := capacity * pack - len(self._in_flight) - len(self._waiting)) > 0:
            asked = self.optimizer.ask(want)
            if not asked:
                return
            self.events.append(("ask", want, [t.id for t in asked]))
            fresh = [trial for trial in asked if not self._reuse(trial)]
            for start in range(0, len(fresh), pack):
                self._submit_pack(fresh[start : start + pack])

    def _pack_size(self) -> int:
        """Trials per task now: one while placement restricts trials to some workers, since
        a pack goes where its longest trial may."""
        if self._client is None or self._lifetimes.any_retiring(self._client):
            return 1
        return self._packing.size()

    def _submit_pack(self, trials: list[Trial]) -> None:
        """Submit ``trials`` in one task (`run_trials`) under the key
        ``<name>/<first id>+<more>``; each trial stays in flight under its own key."""
        assert self._client is not None and self._completed is not None
        if len(trials) == 1:
            self._submit(trials[0])
            return
        key = f"{self.name}/{trials[0].id}+{len(trials) - 1}"
        future = self._client.submit(
            run_trials,
            trials,
            self._task_name,
            self.store.url,
            None,
            self.gpus_per_trial,
            key=key,
            pure=False,
            resources={"GPU": self.gpus_per_trial} if self.gpus_per_trial else None,
            priority=max(trial.rung for trial in trials),
            retries=self.max_retries,
        )
        self._packs[key] = []
        for trial in trials:
            submissions = self._submissions[trial.id] = self._submissions.get(trial.id, 0) + 1
            suffix = f"/{submissions - 1}" if submissions > 1 else ""
            self._packs[key].append(f"{self.name}/{trial.id}{suffix}")
            self._in_flight[self._packs[key][-1]] = (trial, future)
        self._completed.add(future)
        self.counts["submitted"] += len(trials)

    def _watch_workers(self, client: Client) -> None:
        """Every few seconds: size the queue to the workers there are now (an adaptive
        cluster grows as trials wait), resubmit trials whose workers all left, and raise
        when trials have waited ``worker_timeout`` seconds with no worker able to run them,
        which would otherwise keep the search waiting forever."""
        now = time.monotonic()
        if now - self._checked_at < _WORKER_CHECK_S:
            return
        self._checked_at = now
        self._rescue_stranded(client)
        slots = running_slots(client, self.gpus_per_trial)
        self._size_queue(slots)
        if slots > 0 or not (self._in_flight or self._waiting):
            self._workers_gone_since = None
            return
        if self._workers_gone_since is None:
            self._workers_gone_since = now
            logger.warning(
                "no worker can run trials; %d trials wait",
                len(self._in_flight) + len(self._waiting),
            )
        elif (
            self.worker_timeout is not None and now - self._workers_gone_since > self.worker_timeout
        ):
            raise UnschedulableError(
                f"no worker able to run trials for {self.worker_timeout:g} s",
                expected="workers connected to the scheduler",
                received=f"none, with {len(self._in_flight)} trials waiting",
                fix=(
                    "start workers (or check why they died), then continue with "
                    "`morphml resume URL`; raise morphml.worker-timeout, or set it to null, "
                    "to wait longer"
                ),
            )

    def _size_queue(self, slots: int) -> None:
        """Trials kept submitted: the slots plus the lookahead; with no worker yet, one
        slot's worth, so that an adaptive cluster sees work and starts workers."""
        slots = max(slots, 1)
        lookahead = max(2, slots // 4) if self.lookahead is None else self.lookahead
        self._capacity = slots + lookahead

    def _rescue_stranded(self, client: Client) -> None:
        """Submit again the trials restricted to workers that have all left since."""
        if not self._restricted:
            return
        present = set(client.scheduler_info(n_workers=-1)["workers"])
        for key, allowed in list(self._restricted.items()):
            if allowed & present:
                continue
            del self._restricted[key]
            trial, future = self._in_flight.pop(key)
            future.release()
            self._submit(trial)

    def _flush_due(self) -> bool:
        return time.monotonic() - self._flushed_at >= self.persist_interval

    def _wait_budget(self) -> float:
        """Seconds the loop may wait for completions: until the next append is due when
        results are buffered, else a short slice so that `stop` is seen soon."""
        if not self._rows or (self._writer is not None and self._writer.congested):
            return _STOP_POLL_S
        due = self._flushed_at + self.persist_interval - time.monotonic()
        return min(max(due, 0.0), _STOP_POLL_S)

    def _submit(self, trial: Trial, avoid: list[str] | None = None) -> None:
        """Submit ``trial`` to the workers that stay long enough for it, preferring those it
        has not failed on (``avoid``); it waits in the driver while no worker stays long
        enough. A retry gets its own key (``<name>/<id>/<attempt>``)."""
        assert self._client is not None and self._completed is not None
        elsewhere = None
        if self._lifetimes.any_retiring(self._client):
            seconds = self._durations.seconds(self.task, trial)
            elsewhere = self._lifetimes.workers_for(self._client, seconds)
            if elsewhere == []:
                self._waiting.append((trial, avoid))
                return
        # Kept off retiring workers: a strict restriction, since work stealing moves loosely
        # restricted trials to any idle worker; `_rescue_stranded` resubmits the trial if
        # every worker it may use is gone.
        strict = elsewhere is not None
        if avoid:
            pool = elsewhere or list(self._client.scheduler_info(n_workers=-1)["workers"])
            elsewhere = [w for w in pool if w not in avoid] or elsewhere
        submissions = self._submissions[trial.id] = self._submissions.get(trial.id, 0) + 1
        key = f"{self.name}/{trial.id}" + (f"/{submissions - 1}" if submissions > 1 else "")
        if strict and elsewhere:
            self._restricted[key] = set(elsewhere)
        future = self._client.submit(
            run_trial,
            trial,
            self._task_name,
            self.store.url,
            None,  # the TaskPlugin holds the storage options: arguments show up in logs
            self.gpus_per_trial,
            key=key,
            pure=False,
            workers=elsewhere,
            # otherwise a preference: the workers named may have died by the time it runs
            allow_other_workers=elsewhere is not None and not strict,
            resources={"GPU": self.gpus_per_trial} if self.gpus_per_trial else None,
            priority=trial.rung,
            retries=self.max_retries,
        )
        self._in_flight[key] = (trial, future)
        self._completed.add(future)
        self.counts["submitted"] += 1

    def _collect(self, future: Future[Any], outcome: Any) -> None:
        """Take in a finished task: one trial's outcome, or a list of them for a pack (an
        exception, when Dask gave the pack up, is every one of its trials' outcome)."""
        keys = self._packs.pop(str(future.key), None)
        if keys is None:
            self._collect_trial(str(future.key), future, outcome)
            return
        outcomes = outcome if isinstance(outcome, list) else [outcome] * len(keys)
        for key, each in zip(keys, outcomes, strict=True):
            self._collect_trial(key, future, each)

    def _collect_trial(self, key: str, future: Future[Any], outcome: Any) -> None:
        trial, _ = self._in_flight.pop(key)
        self._restricted.pop(key, None)
        attempt = 1 + self.health.attempts(trial.id)
        if not isinstance(outcome, BaseException):
            self._packing.observe(outcome.get("start_time"), outcome.get("end_time"))
        if isinstance(outcome, BaseException):  # Dask gave up: its workers kept dying
            if self._retried(trial, None, "lost", future):
                return
            outcome = {"result": TrialResult.failed(trial.id, repr(outcome), kind="lost").to_dict()}
        result = TrialResult.from_dict(outcome["result"])
        worker = outcome.get("worker")
        if not result.ok and result.error_kind in INFRASTRUCTURE_FAILURES:
            tried = [*self.health.tried_on(trial.id), str(worker)]
            if self._retried(trial, worker, str(result.error_kind), future):
                return
            result = TrialResult.failed(
                trial.id,
                f"{result.error} (the same on every attempt, on {', '.join(tried)})",
                result.error_kind,
            )
        else:
            for quarantine in self.health.completed(trial.id, worker, time.time()):
                self._quarantine(quarantine)
            if result.ok:
                budget = trial.budget - trial.parent_budget
                self._durations.observe(budget, outcome.get("start_time"), outcome.get("end_time"))
        self._collected.append(future)  # released by the writer once the result is stored
        self._record(trial, result, outcome, attempt=attempt)

    def _retried(self, trial: Trial, worker: str | None, kind: str, future: Future[Any]) -> bool:
        """Submit ``trial`` again, away from the workers it failed on, if it has retries
        left; the failed attempt leaves no row."""
        if not self.health.failed(trial.id, worker, kind):
            return False
        future.release()
        self.counts["retried"] += 1
        self._submit(trial, avoid=self.health.tried_on(trial.id) + self._quarantined())
        return True

    def _quarantine(self, quarantine: Quarantine) -> None:
        """Retire a worker that failed trials which then completed elsewhere (so another
        worker is left)."""
        logger.warning(
            "quarantined worker %s: %d trials in a row failed there with %s and completed "
            "on other workers",
            quarantine.worker,
            len(quarantine.kinds),
            "/".join(sorted(set(quarantine.kinds))),
        )
        threading.Thread(  # retiring waits for the worker to hand over its data
            target=self._retire, args=(quarantine.worker,), daemon=True
        ).start()

    def _retire(self, worker: str) -> None:
        with contextlib.suppress(Exception):  # it may have died or left already
            assert self._client is not None
            self._client.retire_workers(workers=[worker], close_workers=True)

    def _quarantined(self) -> list[str]:
        return [q.worker for q in self.health.quarantined]

    def _record(
        self,
        trial: Trial,
        result: TrialResult,
        outcome: Mapping[str, Any],
        reused: bool = False,
        attempt: int = 1,
    ) -> None:
        self._rows.append(
            trial_row(
                trial,
                result,
                worker=outcome.get("worker"),
                device=outcome.get("device"),
                job_id=outcome.get("job_id"),
                start_time=outcome.get("start_time"),
                end_time=outcome.get("end_time"),
                attempt=attempt,
                reused=reused,
            )
        )
        if outcome.get("curve"):
            self._curves[trial.id] = list(outcome["curve"])
        self._tell(result)
        self.counts["done"] += 1
        self.counts["failed"] += not result.ok
        self.counts["reused"] += reused
        if result.ok:  # the first result of an architecture is the one reused
            key = (trial.arch.fingerprint, trial.budget)
            self._evaluated.setdefault(key, (trial.id, dict(result.metrics)))

    def _tell(self, result: TrialResult) -> None:
        self.optimizer.tell(result)
        self.events.append(("tell", result.trial_id))

    def _flush(self) -> None:
        """Hand buffered results and a checkpoint of this moment to the writer, which
        persists them in order: a checkpoint never claims more than the store holds."""
        checkpoint = Checkpoint(self.optimizer.state_dict(), self.config, self.optimizer.pending)
        assert self._writer is not None
        self._writer.submit(self._rows, self._curves, checkpoint, self._collected)
        if self._publisher is not None:
            self._publisher.add(self._rows)
        self._rows, self._curves, self._collected = [], {}, []
        self._flushed_at = time.monotonic()

    def _reuse(self, trial: Trial) -> bool:
        """Tell a stored result instead of training an architecture evaluated before."""
        if trial.id in self._stored:
            # Persisted before a crash that lost the checkpoint after it: tell, don't re-run.
            self._tell(self._stored.pop(trial.id))
            return True
        stored = self._evaluated.get((trial.arch.fingerprint, trial.budget))
        if stored is None:
            return False
        _, metrics = stored
        self._record(
            trial,
            TrialResult.complete(trial.id, metrics),
            {"worker": None, "device": None},
            reused=True,
        )
        return True

    def _remember_stored_results(self) -> None:
        """Index what the store already holds: results by id, and by architecture and budget
        for deduplication."""
        from morphml_dask.storage._trials import decode_metrics

        table = self.store.trials()
        for row in table.itertuples(index=False):
            trial_id = str(row.trial_id)
            if row.state == "complete":
                result = TrialResult.complete(trial_id, decode_metrics(str(row.metrics)))
                key = (str(row.fingerprint), int(str(row.budget)))
                self._evaluated.setdefault(key, (trial_id, dict(result.metrics)))
            else:
                result = TrialResult.failed(trial_id, str(row.error), kind=str(row.error_kind))
            self._stored[trial_id] = result

    def _resume_pending(self) -> list[Trial]:
        """Trials the optimizer was waiting for (after `resume`): stored ones are told from
        the store, the others are submitted again under the same ids."""
        again = []
        for trial in self.optimizer.pending:
            stored = self._stored.pop(trial.id, None)
            if stored is not None:
                self._tell(stored)
            else:
                again.append(trial)
        return again

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
        client = self._client or self.client
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
