"""`SearchSession`: the I/O shell around the search state machine, for one run of a search.

It is the only code that holds futures. It registers the worker plugins, hands the state
machine what happened (tasks that came back, the workers there are, the store writer
lagging, a stop asked for, the time) and carries out what the state machine decides: one
``Client.submit(run_trial, trial, key=..., pure=False, resources=..., priority=...,
retries=...)`` per trial (or `run_trials` for a pack), ``as_completed`` for whichever finishes
first, results handed to the store writer, futures released once persisted.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from distributed.comm.core import CommClosedError

from morphml_dask.config import config_value
from morphml_dask.driver._cluster import WorkerWatch, register_plugin, slots_of
from morphml_dask.driver._devices import GPUPlugin
from morphml_dask.driver._events import (
    Cancel,
    Event,
    Fail,
    Finish,
    Instruction,
    Log,
    Outcome,
    PauseTrials,
    Persist,
    Release,
    Reported,
    Retire,
    SchedulerRestarted,
    StopRequested,
    StopTrials,
    StoreCongested,
    StoreRead,
    Submit,
    TaskFinished,
    TaskLost,
)
from morphml_dask.driver._live import LiveInbox
from morphml_dask.driver._shared import (
    check_shared_store,
    local_folder,
    this_process,
    worker_processes,
)
from morphml_dask.driver._state import SearchState
from morphml_dask.driver._worker import TaskPlugin, run_trial, run_trials
from morphml_dask.driver._writer import StoreWriter
from morphml_dask.exceptions import SchedulerUnreachableError
from morphml_dask.gpus import gpu_request
from morphml_dask.storage import Checkpoint

if TYPE_CHECKING:
    from distributed import Client, Future

    from morphml_dask.driver._monitor import ProgressPublisher
    from morphml_dask.driver._search import Search

__all__ = ["SearchSession"]

logger = logging.getLogger("morphml_dask.driver")


class SearchSession:
    """One run of ``search`` on ``client``: `run` returns when the search finished or
    stopped, and raises when it cannot go on.

    Parameters
    ----------
    search
        The search: its optimizer, task, store, settings and stop flag.
    client
        A connected client.
    """

    def __init__(self, search: Search, client: Client) -> None:
        from distributed import as_completed

        self.search = search
        self.client = client
        self.state = SearchState(search.optimizer, search.policy, search.pruner)
        self.task_name = f"{search.name}-{uuid.uuid4().hex[:8]}"
        self.futures: dict[str, Future[Any]] = {}
        self.completed = as_completed(loop=client.loop)
        self.workers = WorkerWatch(client, search.policy.gpus_per_trial)
        self.writer: StoreWriter | None = None
        self.publisher: ProgressPublisher | None = None
        self._congested = False
        self._registered = False
        self.inbox: LiveInbox | None = None
        # Trials whose futures the client cancelled when it lost its scheduler.
        self._interrupted: set[str] = set()
        self._scheduler_lost = False

    def run(self) -> None:
        """Drive the search to its end."""
        try:
            self._begin()
            while not self.state.over:
                if self._interrupted or self.client.status != "running":
                    self._await_scheduler()
                try:
                    self._step()
                except (SchedulerUnreachableError, CommClosedError):  # lost mid-step
                    self._await_scheduler()
        except BaseException:
            self._abort()
            raise
        finally:
            self._close()

    # -- the loop --------------------------------------------------------------------------

    def _begin(self) -> None:
        search, gpus = self.search, self.search.policy.gpus_per_trial
        register_plugin(self.client, GPUPlugin())
        # Raises at once when workers exist but none can run the trials (GPUs wanted).
        slots_of(self.client, gpus, wait=search.worker_wait, none_ok=True)
        # Workers write to the store themselves: refuse one they cannot share.
        url = search.store.url
        workers = worker_processes(self.client, local_folder(url))
        check_shared_store(url, this_process(), workers)
        options = search.store.location.storage_options
        # Following the reports before any trial is submitted: none is missed.
        self.inbox = LiveInbox(self.client, self.task_name, self._wake)
        if search.pruner is not None:  # trials wait for verdicts: there are none yet
            self.inbox.publish_verdicts({})
        register_plugin(self.client, self._task_plugin(options))
        self._registered = True
        stored = StoreRead(tuple(search.store.records()))
        self.writer = StoreWriter(search.store, outage_timeout=search.store_outage_timeout)
        if config_value("dashboard"):
            self.publisher = _publisher(self.client, self.task_name, search)
        now = time.monotonic()
        self._execute(self.state.handle([stored, self.workers.look(now)], now))

    def _step(self) -> None:
        """Wait for completions a moment, then hand the state machine what happened."""
        assert self.writer is not None
        self.writer.check()
        events: list[Event] = []
        if self.writer.congested != self._congested:
            self._congested = self.writer.congested
            events.append(StoreCongested(self._congested))
        finished = _next_completions(
            self.completed, self.state.wait_budget(time.monotonic()), self._has_reports
        )
        assert self.inbox is not None
        reports = self.inbox.take()
        if reports:
            events.append(Reported(tuple(reports)))
        events.extend(self._collect(finished))
        now = time.monotonic()
        if self.workers.due(now):
            events.append(self.workers.look(now))
        if self.search.stop_requested:
            events.append(StopRequested(self.search.pause_for))
        self._execute(self.state.handle(events, now))
        if reports and self.search.pruner is not None:
            self.inbox.publish_verdicts(self.state.pruning.live.verdicts())

    def _collect(self, futures: list[Future[Any]]) -> list[Event]:
        """The tasks that came back, as events. One gather for the whole batch: a fetch per
        trial would cost the driver, the scheduler and the workers a round trip each.
        Futures cancelled or released since (nobody waits for them) are skipped."""
        ours = [f for f in futures if self.futures.get(str(f.key)) is f]
        # The session drops the futures it cancels: a cancelled one of ours was cancelled by
        # the client, which lost its scheduler.
        self._interrupted.update(str(f.key) for f in ours if f.status == "cancelled")
        ours = [f for f in ours if str(f.key) not in self._interrupted]
        finished = [f for f in ours if f.status == "finished"]
        try:
            gathered = self.client.sync(_gather, self.client, finished) if finished else []
        except Exception as error:
            # A closed connection can come before the client notices it lost its scheduler.
            if self.client.status == "running" and not isinstance(error, OSError):
                raise
            self._interrupted.update(str(f.key) for f in ours)  # lost mid-gather
            return []
        results = dict(zip(finished, gathered, strict=True))
        events: list[Event] = []
        for future in ours:
            key = str(future.key)
            if future in results:
                outcome = results[future]
                found = tuple(
                    map(Outcome.from_dict, outcome if isinstance(outcome, list) else [outcome])
                )
                events.append(self._finished_here(key, found))
            else:
                events.append(TaskLost(key, repr(_failure_of(future))))
        return events

    def _finished_here(self, key: str, outcomes: tuple[Outcome, ...]) -> Event:
        """The task that came back; lost if another store's search answered under its key
        (Dask hands a task the result of a cancelled one of its key still running)."""
        url = self.search.store.url
        if any(o.store_url is not None and o.store_url != url for o in outcomes):
            return TaskLost(key, f"{key} came back from another search's store")
        return TaskFinished(key, outcomes)

    def _await_scheduler(self) -> None:
        """The client lost its scheduler: wait up to ``morphml.scheduler-timeout`` seconds
        for one to answer again, then stop with a `SchedulerUnreachableError`."""
        address = getattr(self.client.scheduler, "address", None)
        timeout = float(config_value("scheduler-timeout"))
        logger.warning(
            "lost the Dask scheduler at %s; waiting up to %g s for it to answer again",
            address,
            timeout,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.client.status in ("running", "connecting"):
            # "running" can still be the lost connection, before the client notices.
            if self.client.status == "running" and _answers(self.client, timeout=1.0):
                try:
                    self._reconnected(address)
                    return
                except OSError:  # lost again while registering
                    pass
            time.sleep(0.2)
        self._scheduler_lost = True
        raise _scheduler_lost(address, timeout, self.client.status, self.search.store.url)

    def _reconnected(self, address: str | None) -> None:
        """A scheduler answers again at the same address, knowing nothing of the search:
        register the plugins and follow the reports again, then submit every task in flight
        again under its key (the client cancelled them all)."""
        search = self.search
        register_plugin(self.client, GPUPlugin())
        options = search.store.location.storage_options
        register_plugin(self.client, self._task_plugin(options))
        assert self.inbox is not None
        events: list[Event] = [Reported(tuple(r)) for r in [self.inbox.take()] if r]
        self.inbox = LiveInbox(self.client, self.task_name, self._wake)
        if search.pruner is not None:
            self.inbox.publish_verdicts(self.state.pruning.live.verdicts())
        self.futures = {k: f for k, f in self.futures.items() if f.status != "cancelled"}
        self._interrupted.clear()
        logger.warning("the scheduler at %s answers again; resubmitting the trials", address)
        now = time.monotonic()
        self._execute(self.state.handle([*events, SchedulerRestarted()], now))
        for trial_id in self.state.pruning.live.stopped:  # the stop flags died with it
            self.inbox.stop(trial_id)

    # -- carrying out ----------------------------------------------------------------------

    def _execute(self, instructions: list[Instruction]) -> None:
        for instruction in instructions:
            if isinstance(instruction, Submit):
                self._submit(instruction)
            elif isinstance(instruction, Persist):
                self._persist(instruction)
            elif isinstance(instruction, Cancel | Release):
                self._drop(instruction)
            elif isinstance(instruction, Retire):
                # Retiring waits for the worker to hand over its data: not on the loop.
                threading.Thread(
                    target=_retire, args=(self.client, instruction.worker), daemon=True
                ).start()
            elif isinstance(instruction, PauseTrials):
                assert self.inbox is not None
                self.inbox.pause()
            elif isinstance(instruction, StopTrials):
                assert self.inbox is not None
                for trial_id in instruction.trial_ids:
                    self.inbox.stop(trial_id)
            elif isinstance(instruction, Log):
                logger.log(logging.getLevelName(instruction.level.upper()), instruction.message)
            elif isinstance(instruction, Finish):
                assert self.writer is not None
                self.writer.close()
            elif isinstance(instruction, Fail):
                raise instruction.error

    def _submit(self, submit: Submit) -> None:
        search = self.search
        single = len(submit.trials) == 1
        future = self.client.submit(
            run_trial if single else run_trials,
            submit.trials[0] if single else list(submit.trials),
            self.task_name,
            search.store.url,
            None,  # the TaskPlugin holds the storage options: arguments show up in logs
            submit.gpus,
            key=submit.key,
            pure=False,
            workers=None if submit.workers is None else list(submit.workers),
            # otherwise a preference: the workers named may have died by the time it runs
            allow_other_workers=submit.workers is not None and not submit.strict,
            # A share of a GPU asks for 1/k of one, as Dask adds it up exactly (gpu_request).
            resources={"GPU": gpu_request(submit.gpus)} if submit.gpus else None,
            priority=submit.priority,
            retries=search.policy.max_retries,
        )
        self.futures[submit.key] = future
        self.completed.add(future)

    def _persist(self, persist: Persist) -> None:
        """Hand records and a checkpoint of this moment to the writer, which persists them in
        order: a checkpoint never claims more than the store holds."""
        assert self.writer is not None
        checkpoint = Checkpoint(
            persist.optimizer_state, self.search.config, persist.pending, persist.pruner_state
        )
        release = [self.futures.pop(key) for key in persist.release if key in self.futures]
        self.writer.submit(persist.records, persist.curves, checkpoint, release)
        if self.publisher is not None:
            self.publisher.add(persist.records)

    def _drop(self, instruction: Cancel | Release) -> None:
        for key in instruction.keys:
            future = self.futures.pop(key, None)
            if future is None:
                continue
            if isinstance(instruction, Cancel):
                future.cancel()
            else:
                future.release()

    def _task_plugin(self, storage_options: dict[str, Any]) -> TaskPlugin:
        prunes = self.search.pruner is not None
        return TaskPlugin(self.search.task, self.task_name, storage_options, prunes=prunes)

    def _wake(self) -> None:
        """Reports came in: wake the loop waiting for completions (on the client's loop)."""
        with self.completed.thread_condition:
            self.completed.thread_condition.notify_all()

    def _has_reports(self) -> bool:
        return self.inbox is not None and self.inbox.pending

    # -- the end ---------------------------------------------------------------------------

    def _abort(self) -> None:
        """On an error: keep the results that came back (the writer's own error wins)."""
        if self.writer is None or self.state.over:
            return
        with contextlib.suppress(Exception):
            self._execute([i for i in self.state.abort() if isinstance(i, Persist)])

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.stop()
        if self.publisher is not None:
            if self._scheduler_lost:
                self.publisher.enabled = False  # nothing would get through
            self.publisher.close(timeout=1.0 if self._scheduler_lost else 10.0)
        if self._scheduler_lost:  # nothing to tell a scheduler that is gone
            self.futures.clear()
            return
        if self.inbox is not None:
            with contextlib.suppress(Exception):  # a closed client follows nothing
                self.inbox.close(self.state.pruning.decisions)
        for future in self.futures.values():
            future.cancel()
        self.futures.clear()
        if self._registered:
            with contextlib.suppress(Exception):  # a closed client has nothing to free
                self.client.unregister_worker_plugin(self.task_name)


def _retire(client: Client, worker: str) -> None:
    with contextlib.suppress(Exception):  # it may have died or left already
        client.retire_workers(workers=[worker], close_workers=True)


def _publisher(client: Client, run: str, search: Search) -> ProgressPublisher:
    from morphml_dask.driver._monitor import ProgressPublisher
    from morphml_dask.optim import MultiObjective, pareto_axis

    task, live = search.task, search.live_curves
    objectives = getattr(search.optimizer, "objectives", None)
    listed = objectives.to_dict() if isinstance(objectives, MultiObjective) else None
    return ProgressPublisher(
        client,
        run,
        search.name,
        task.objective,
        task.direction,
        search.status,
        live=live,
        cost=pareto_axis(listed, task.objective),
    )


def _next_completions(
    completed: Any, timeout: float, reported: Callable[[], bool]
) -> list[Future[Any]]:
    """The tasks finished so far, waiting up to ``timeout`` seconds for the first, or for
    reports of running trials."""
    deadline = time.monotonic() + timeout
    while not completed.has_ready():
        left = deadline - time.monotonic()
        if left <= 0 or reported():
            return []
        # Notified by as_completed after every completion, and by the inbox after reports.
        with completed.thread_condition:
            if not completed.has_ready() and not reported():
                completed.thread_condition.wait(left)
    batch: list[Future[Any]] = completed.next_batch(block=False)
    return batch


async def _gather(client: Client, futures: list[Future[Any]]) -> list[Any]:
    """The results of ``futures``; raises at once when the client loses its scheduler (a
    plain gather would wait for the client to give up reconnecting)."""
    import asyncio

    gathering = asyncio.ensure_future(client.gather(futures, asynchronous=True))
    while not gathering.done():
        await asyncio.wait([gathering], timeout=0.2)
        if not gathering.done() and client.status != "running":
            gathering.cancel()
            raise ConnectionError("the client lost its scheduler while gathering results")
    return list(gathering.result())


def _answers(client: Client, timeout: float) -> bool:
    """Whether the client's scheduler answers within ``timeout`` seconds."""
    import asyncio

    scheduler = client.scheduler
    if scheduler is None:
        return False

    async def identity() -> object:
        return await asyncio.wait_for(scheduler.identity(), timeout)

    try:
        client.sync(identity)
    except OSError:  # TimeoutError included
        return False
    return True


def _scheduler_lost(
    address: str | None, timeout: float, status: str, store_url: str
) -> SchedulerUnreachableError:
    return SchedulerUnreachableError(
        f"lost the Dask scheduler at {address}; the search stopped",
        expected=f"a scheduler answering at {address} within {timeout:g} s "
        "(morphml.scheduler-timeout)",
        received=f"no answer (the client is {status})",
        fix="start the scheduler and its workers again, then continue the search: "
        f"morphml resume {store_url}",
    )


def _failure_of(future: Future[Any]) -> BaseException:
    try:
        error = future.exception()
    except BaseException as cancelled:  # CancelledError: nothing to fetch
        return cancelled
    return error if isinstance(error, BaseException) else RuntimeError(f"{future.key} failed")
