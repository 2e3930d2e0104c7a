"""`SearchState`: the driver's decisions, as a pure state machine.

Events go in (`handle`): what the store held at the start, the workers there are, tasks that
finished or were lost, the store lagging or recovering, a stop asked for, time passed.
Instructions come out: submit, cancel, release, persist, retire a worker, log, finish or
fail. The state machine asks the optimizer for trials and tells it results (the optimizer
is pure too) but never touches Dask, the store or the clock: the I/O shell (`Search`) does,
and hands in the time with every call. So every path of the driver (packing, placement,
retries, quarantine, deduplication, resume, the worker timeout, a stop during a store
outage) is tested with scripted events, and replaying the same events on a fresh state
machine gives the same instructions. Modelled on distributed's ``WorkerState``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from morphml_dask.driver._compact import EventLog
from morphml_dask.driver._dispatch import Dispatcher
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
    WorkersSeen,
)
from morphml_dask.driver._flight import InFlight, Submission
from morphml_dask.driver._health import (
    INFRASTRUCTURE_FAILURES,
    WorkerAbsence,
    WorkerHealth,
    failed_everywhere,
)
from morphml_dask.driver._placement import ExpectedSeconds
from morphml_dask.driver._pruning import Pruning
from morphml_dask.driver._repeats import Repeats
from morphml_dask.driver._results import Curve, ResultBook
from morphml_dask.exceptions import SearchStalledError, UnschedulableError
from morphml_dask.trial import Trial, TrialRecord, TrialResult, TrialState

if TYPE_CHECKING:
    from morphml_dask.optim import BaseOptimizer
    from morphml_dask.prune import BasePruner

__all__ = ["Counts", "Policy", "SearchState"]

# The longest the shell waits for completions before handing in the time again: a stop is
# seen within it.
POLL_S = 0.25
REPEATS_LIMIT = 1000
"""Trials in a row answered from earlier results after which a search without
``max_trials`` stops: its optimizer proposes nothing new."""


@dataclass(frozen=True)
class Policy:
    """The settings the state machine decides by (see `Search` for each)."""

    name: str = "search"
    gpus_per_trial: float = 0
    max_retries: int = 2
    quarantine_after: int = 3
    lookahead: int | None = None
    persist_interval: float = 1.0
    worker_timeout: float | None = 600.0
    max_pack: int = 32
    expected_seconds: ExpectedSeconds | None = None


@dataclass
class Counts:
    """Trials by what happened to them so far."""

    done: int = 0
    failed: int = 0
    reused: int = 0
    retried: int = 0
    submitted: int = 0
    kept_off: int = 0
    pruned: int = 0

    def add(self, record: TrialRecord) -> None:
        """Count a trial's final record."""
        self.done += 1
        self.failed += record.result.state is TrialState.FAIL
        self.pruned += record.result.state is TrialState.PRUNED
        self.reused += record.reused


class SearchState:
    """The state of one search, advanced by `handle`.

    Parameters
    ----------
    optimizer
        The ask/tell algorithm; its pending trials (after a resume) are submitted again
        unless the store holds their results.
    policy
        The settings.
    """

    def __init__(
        self,
        optimizer: BaseOptimizer,
        policy: Policy | None = None,
        pruner: BasePruner | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.policy = policy = policy or Policy()
        self.counts = Counts()
        self.dispatch = Dispatcher(policy, self.counts)
        self.flight = self.dispatch.flight
        self.book = ResultBook()
        self.repeats = Repeats(self.book)
        self.health = WorkerHealth(policy.max_retries, policy.quarantine_after)
        self.pruning = Pruning(pruner, optimizer.objective)
        # The optimizer's inputs in order, ("ask", n, ids) and ("tell", id), a few bytes each:
        # replaying them on a fresh optimizer reproduces the search's decisions exactly.
        self.log = EventLog()
        self.capacity = self.dispatch.capacity(0)
        self.congested = False
        self.over = False
        self._stop_at: float | None = None  # when a stop (or a pause's wait) ends
        self._started = False
        self._now = 0.0
        self._persisted_at = 0.0
        self.absence = WorkerAbsence(policy.worker_timeout)
        self._out: list[Instruction] = []

    # -- the interface ---------------------------------------------------------------------

    def handle(self, events: Sequence[Event], now: float) -> list[Instruction]:
        """Take in ``events`` at time ``now`` (seconds on any steady clock) and return what
        the shell must do, in order."""
        self._now = now
        for event in events:
            if not self.over:
                self._take(event)
        if not self._started and not self.over:
            self._start()
        if not self.over:
            self._advance()
        out, self._out = self._out, []
        return out

    def abort(self) -> list[Instruction]:
        """The shell cannot go on (the store writer gave up, the client broke): persist the
        results that came back, cancel the rest, and stop."""
        if self.over:
            return []
        self._end(None)
        out, self._out = self._out, []
        return out

    def wait_budget(self, now: float) -> float:
        """Seconds the shell may wait for completions before calling `handle` again: until
        the next persist is due while results are buffered, at most `POLL_S`."""
        if not self.book.records or self.congested:
            return POLL_S
        due = self._persisted_at + self.policy.persist_interval - now
        return min(max(due, 0.0), POLL_S)

    @property
    def running(self) -> int:
        """Trials submitted and not finished."""
        return len(self.flight)

    @property
    def waiting(self) -> int:
        """Trials held back for want of a worker that stays long enough."""
        return len(self.flight.waiting)

    # -- events ----------------------------------------------------------------------------

    def _take(self, event: Event) -> None:
        if isinstance(event, TaskFinished):
            self._finished(event)
        elif isinstance(event, TaskLost):
            self._lost(event)
        elif isinstance(event, WorkersSeen):
            self._workers_seen(event)
        elif isinstance(event, StoreCongested):
            self.congested = event.congested
        elif isinstance(event, StopRequested) and self._stop_at is None:
            self._stop_at = self._now + event.pause_for
            if event.pause_for > 0 and self.flight:
                self._out.append(PauseTrials())
        elif isinstance(event, StoreRead):
            self.book.remember_stored(event.records)
        elif isinstance(event, Reported):
            self._reported(event)
        elif isinstance(event, SchedulerRestarted):
            self._out.extend(_resubmissions(self.flight, self.policy.gpus_per_trial))

    def _start(self) -> None:
        """Tell the stored results of the trials a resumed optimizer waits for, submit the
        others again under their ids, and checkpoint at once, so that a driver killed before
        the first results were stored can still be resumed."""
        self._started = True
        for trial in self._fresh(self.optimizer.pending):
            self._submit(trial)
        self._persist()

    def _finished(self, event: TaskFinished) -> None:
        submission = self.flight.take(event.key)
        if submission is None:  # cancelled or resubmitted since: nobody waits for it
            return
        if len(event.outcomes) != len(submission.trials):
            self._lost(TaskLost(event.key, f"{len(event.outcomes)} outcomes came back"), submission)
            return
        outcomes = zip(submission.trials, submission.attempts, event.outcomes, strict=True)
        kept = any([self._outcome(*outcome) for outcome in outcomes])  # every one recorded
        self._release_later(event.key, kept)

    def _outcome(self, trial: Trial, attempt: int, outcome: Outcome) -> bool:
        """Record one trial's outcome or retry it; whether it was recorded."""
        result, worker = outcome.result, outcome.worker
        if outcome.paused:  # saved and returned: pending, it continues when resumed
            if self._stop_at is None:  # a run before this one paused it: continue it now
                self._submit(trial)
            return False
        self.dispatch.observe(trial, outcome)
        if not result.ok and result.error_kind in INFRASTRUCTURE_FAILURES:
            tried = [*self.health.tried_on(trial.id), str(worker)]
            if self._retried(trial, worker, str(result.error_kind)):
                return False
            result = failed_everywhere(result, tried)
        else:
            for quarantine in self.health.completed(trial.id, worker, self._now):
                self._out += [Log("warning", quarantine.message), Retire(quarantine.worker)]
        self._record(outcome.record(trial, result, attempt), outcome.curve)
        return True

    def _lost(self, event: TaskLost, submission: Submission | None = None) -> None:
        """Dask gave the task up: every trial it carried runs again or fails as lost."""
        submission = submission or self.flight.take(event.key)
        if submission is None:
            return
        kept = False
        for trial, attempt in zip(submission.trials, submission.attempts, strict=True):
            if not self._retried(trial, None, "lost"):
                failed = TrialResult.failed(trial.id, event.error, kind="lost")
                self._record(TrialRecord(trial, failed, attempt=attempt))
                kept = True
        self._release_later(event.key, kept)

    def _workers_seen(self, event: WorkersSeen) -> None:
        """Size the queue to the workers there are, resubmit trials whose workers all left,
        and fail once trials waited ``worker_timeout`` seconds with no worker to run them."""
        self.dispatch.see_workers(event.retire_in, self._now)
        self.capacity = self.dispatch.capacity(event.slots)
        for stranded in self.dispatch.stranded():
            self._out.append(Cancel((stranded.key,)))
            for trial in stranded.trials:
                self.counts.retried += 1
                self._submit(trial)
        self._watch_slots(event.slots)

    def _watch_slots(self, slots: int) -> None:
        seen = self.absence.see(slots, self.flight.idle, self._now)
        waiting = self.running + self.waiting
        if seen == "warn":
            self._out.append(Log("warning", f"no worker can run trials; {waiting} trials wait"))
        elif seen == "give up":
            self._end(Fail(_no_workers(self.absence.timeout or 0.0, waiting)))

    def _reported(self, event: Reported) -> None:
        stop = self.pruning.reports(event.reports, self.flight.active)
        if stop:
            self._out.append(StopTrials(stop))

    # -- deciding --------------------------------------------------------------------------

    def _advance(self) -> None:
        if self._stop_at is not None:
            if not self.flight or self._now >= self._stop_at:
                self._end(Finish())
            return
        if not self.congested:  # while the store fails, hold new trials back
            self._fill()
            if self.over:
                return
            if self.flight.idle:
                self._end(Finish() if self.optimizer.finished else Fail(_stalled(self.optimizer)))
                return
        due = self._now - self._persisted_at >= self.policy.persist_interval
        if self.book.records and not self.congested and (not self.flight or due):
            self._persist()

    def _fill(self) -> None:
        """Ask for trials until ``capacity`` tasks' worth run or wait, or the optimizer has
        none; trials answered from the store, and twins waiting for a trial of the same
        architecture and budget in training, leave their place free for the next ask (up to
        ``capacity`` tasks' worth of twins: a space of few architectures asks no more)."""
        waiting, self.flight.waiting = self.flight.waiting, []
        for trial, avoid in waiting:
            self._submit(trial, avoid)
        pack = self.dispatch.pack_size()
        stopped = self.pruning.live.stopped  # told to stop: their successors queue at once
        slots = self.capacity * pack
        while (want := slots - self.running + len(stopped) - self.waiting) > 0:
            if len(self.repeats.twins) >= slots:
                return
            asked = self.optimizer.ask(want)
            if not asked:
                return
            self.log.ask(want, [t.id for t in asked])
            fresh = self._fresh(asked)
            repeats = self.repeats.in_a_row
            if repeats >= REPEATS_LIMIT and self.optimizer.max_trials is None:
                self._end(Fail(_repeating(self.optimizer, repeats)))
                return
            for start in range(0, len(fresh), pack):
                self._submit_pack(tuple(fresh[start : start + pack]))

    def _submit(self, trial: Trial, avoid: Sequence[str] = ()) -> None:
        submit = self.dispatch.submit(self.book.from_trained(trial), self._now, avoid)
        if submit is not None:
            self._out.append(submit)

    def _submit_pack(self, trials: tuple[Trial, ...]) -> None:
        submit = self.dispatch.submit_pack(tuple(map(self.book.from_trained, trials)), self._now)
        if submit is not None:
            self._out.append(submit)

    def _fresh(self, asked: Sequence[Trial]) -> list[Trial]:
        """The trials of ``asked`` to train; the others are answered now (a result stored
        before a crash lost the checkpoint after it, or an architecture and budget
        evaluated before) or wait for their twin in training."""
        fresh, told, reused = self.repeats.sort(asked)
        for result in told:
            self._tell(result)
        for record in reused:
            self._record(record)
        return fresh

    def _retried(self, trial: Trial, worker: str | None, kind: str) -> bool:
        """Submit ``trial`` again, away from the workers it failed on, if it has retries
        left; the failed attempt leaves no record."""
        if not self.health.failed(trial.id, worker, kind):
            return False
        self.counts.retried += 1
        avoid = [*self.health.tried_on(trial.id), *self.health.quarantined_workers]
        self._submit(trial, avoid)
        return True

    # -- bookkeeping -----------------------------------------------------------------------

    def _record(self, record: TrialRecord, curve: Curve = ()) -> None:
        self.book.add(record, curve)
        self.flight.settled(record.trial)
        self.pruning.finished(record.trial_id, curve)
        self._tell(record.result)
        self.counts.add(record)
        reused, train = self.repeats.settled(record)
        for twin in reused:
            self._record(twin)
        if train is not None:
            self._submit(train)

    def _tell(self, result: TrialResult) -> None:
        self.optimizer.tell(result)
        self.log.tell(result.trial_id)

    def _release_later(self, key: str, kept: bool) -> None:
        """Release a task's results once its records are persisted, or now if it has none."""
        if kept:
            self.book.release.append(key)
        else:
            self._out.append(Release((key,)))

    def _persist(self) -> None:
        records, curves, release = self.book.take()
        state, pending = self.optimizer.state_dict(), tuple(self.optimizer.pending)
        pruner = self.pruning.state_dict()
        self._out.append(Persist(records, curves, state, pending, release, pruner))
        self._persisted_at = self._now

    def _end(self, final: Finish | Fail | None) -> None:
        """Persist what came back (always a last checkpoint when finishing), cancel what
        still runs, and stop (None: the shell gave up)."""
        if isinstance(final, Finish) or self.book.records or self.book.release:
            self._persist()
        if self.flight.keys():
            self._out.append(Cancel(self.flight.keys()))
        if final is not None:
            self._out.append(final)
        self.over = True


def _resubmissions(flight: InFlight, gpus: float) -> list[Submit]:
    """Every task in flight again, under its key (its trials keep their ids and attempts),
    restricted to the workers it was restricted to."""
    return [
        Submit(
            s.key,
            s.trials,
            max(trial.rung for trial in s.trials),
            gpus,
            None if s.allowed is None else tuple(sorted(s.allowed)),
            s.allowed is not None,
        )
        for s in flight
    ]


def _stalled(optimizer: BaseOptimizer) -> SearchStalledError:
    return SearchStalledError(
        f"{type(optimizer).__name__} stalled",
        expected="an optimizer that asks for trials until it is finished",
        received="nothing running, nothing asked, not finished",
        fix="check the optimizer's settings (max_trials, population, rungs)",
    )


def _repeating(optimizer: BaseOptimizer, repeats: int) -> SearchStalledError:
    return SearchStalledError(
        f"{type(optimizer).__name__} proposes nothing new",
        expected="an optimizer that asks for architectures not evaluated yet, or max_trials",
        received=f"{repeats} trials in a row of architectures and budgets evaluated before, "
        "and no max_trials",
        fix="set max_trials, or widen the search space; the results so far are stored",
    )


def _no_workers(timeout: float, waiting: int) -> UnschedulableError:
    return UnschedulableError(
        f"no worker able to run trials for {timeout:g} s",
        expected="workers connected to the scheduler",
        received=f"none, with {waiting} trials waiting",
        fix=(
            "start workers (or check why they died), then continue with "
            "`morphml resume URL`; raise morphml.worker-timeout, or set it to null, "
            "to wait longer"
        ),
    )
