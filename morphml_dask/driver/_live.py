"""Live reports: what running trials report reaches the driver while they run, and the
driver's stop decisions reach the trials.

Reports travel as Dask *events* (``Worker.log_event`` on a topic of the search, which the
driver's client follows with ``Client.subscribe_topic``): they ride the worker's batched
stream to the scheduler, which forwards them to the subscribed client, with no task, no
future and no key per report. Each worker process batches its trials' reports further,
sending what gathered every `LiveSender` interval (0.2 s by default) as one event, so that
thousands of reporting trials cost the scheduler a few messages per second per worker.

Stop decisions go the other way as one Dask ``Event`` per stopped trial, named after the
search's run and the trial: the driver sets it, and ``ctx.should_stop()`` on the worker
reads it (a scheduler round trip, at most every `StopSignal` interval). Pub/sub
(``distributed.Pub``/``Sub``) was the alternative for reports, but it needs the publisher and
subscriber to find each other through the scheduler and drops messages sent before they
have; a ``Queue`` would cost a scheduler round trip per report.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["LiveInbox", "LiveLink", "LiveSender", "live_link", "live_topic", "stop_event_name"]

# How long a worker gathers reports before sending them, and how often a trial asks whether
# it was stopped: decisions reach trials within about the sum of the two.
SEND_INTERVAL_S = 0.2
STOP_CHECK_INTERVAL_S = 0.2
# Under a pruner a trial waits this long, at most, for the verdict on the step it reported
# last (`LiveLink.stop_requested`), polling every VERDICT_POLL_S.
VERDICT_WAIT_S = 2.0
VERDICT_POLL_S = 0.005

# One report: trial id, step, metrics.
Report = tuple[str, int, dict[str, float]]


def live_topic(run: str) -> str:
    """The event topic the reports of the search run ``run`` go to."""
    return f"morphml-live/{run}"


def stop_event_name(run: str, trial_id: str) -> str:
    """The Dask ``Event`` the driver sets to stop ``trial_id`` of the search run ``run``."""
    return f"morphml-stop/{run}/{trial_id}"


def verdicts_name(run: str) -> str:
    """The Dask ``Variable`` where the driver keeps, for each running trial of the run
    ``run``, the last step its pruner judged and whether it said stop."""
    return f"morphml-verdicts/{run}"


def pause_event_name(run: str) -> str:
    """The Dask ``Event`` the driver sets to pause every running trial of the run ``run``."""
    return f"morphml-pause/{run}"


# -- on the worker -----------------------------------------------------------------------------


class LiveSender:
    """The reports of one worker process's trials, sent in batches on the worker's event
    loop."""

    def __init__(self, worker: Any, interval: float = SEND_INTERVAL_S) -> None:
        self._worker = worker
        self._interval = interval
        self._lock = threading.Lock()
        self._batches: dict[str, list[list[Any]]] = {}
        self._scheduled = False

    def add(self, topic: str, report: Report) -> None:
        trial_id, step, metrics = report
        with self._lock:
            self._batches.setdefault(topic, []).append([trial_id, step, dict(metrics)])
            if self._scheduled:
                return
            self._scheduled = True
        self._worker.loop.add_callback(self._schedule)

    def flush(self) -> None:
        """Send what gathered now (a trial's end: its last reports go before its outcome; a
        trial that waits for its verdict)."""
        self._worker.loop.add_callback(self._send)

    def _schedule(self) -> None:
        self._worker.loop.call_later(self._interval, self._send)

    def _send(self) -> None:
        with self._lock:
            batches, self._batches = self._batches, {}
            self._scheduled = False
        for topic, reports in batches.items():
            self._worker.log_event(topic, {"reports": reports})


_SENDERS_LOCK = threading.Lock()


def _sender_of(worker: Any) -> LiveSender:
    with _SENDERS_LOCK:
        sender: LiveSender | None = getattr(worker, "morphml_live", None)
        if sender is None:
            sender = LiveSender(worker)
            setattr(worker, "morphml_live", sender)  # noqa: B010 (a morphml-owned attribute)
        return sender


class LiveLink:
    """One running trial's line to the driver: `report` sends a point of its curve, and
    `stop_requested` says whether the driver decided to stop it. What `TrialContext` is
    given on a worker of a search."""

    def __init__(
        self, worker: Any, run: str, trial_id: str, *, wait_for_verdicts: bool = False
    ) -> None:
        self._sender = _sender_of(worker)
        self._verdicts = verdicts_name(run) if wait_for_verdicts else None
        self._last_step = -1
        self._judged = -1
        self._topic = live_topic(run)
        self._trial_id = trial_id
        self._event_name = stop_event_name(run, trial_id)
        self._pause_name = pause_event_name(run)
        self._stopped = False
        self._checked_at = -float("inf")
        self._reported = False
        self.paused = False

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        self._sender.add(self._topic, (self._trial_id, int(step), dict(metrics)))
        self._reported = True
        self._last_step = max(self._last_step, int(step))
        if self._verdicts is not None:
            self._sender.flush()  # the trial waits for the verdict: no batching delay

    def stop_requested(self) -> bool:
        if self._stopped:
            return True
        if self._verdicts is not None and self._last_step > self._judged:
            self._await_verdict()
            if self._stopped:
                return True
        now = time.monotonic()
        if now - self._checked_at < STOP_CHECK_INTERVAL_S:
            return False
        self._checked_at = now
        from distributed import Event, get_client

        client = get_client()
        self.paused = bool(Event(self._pause_name, client=client).is_set())
        self._stopped = self.paused or bool(Event(self._event_name, client=client).is_set())
        return self._stopped

    def _await_verdict(self) -> None:
        """Wait (at most `VERDICT_WAIT_S`) until the driver judged the last step reported,
        as Optuna's ``should_prune`` does: a losing trial stops at the step it lost at."""
        from distributed import Variable, get_client

        variable = Variable(self._verdicts, client=get_client())
        deadline = time.monotonic() + VERDICT_WAIT_S
        while time.monotonic() < deadline:
            try:
                verdicts = variable.get(timeout=VERDICT_POLL_S)
            except TimeoutError:  # none published yet
                verdicts = {}
            step, stopped = verdicts.get(self._trial_id, (-1, False))
            if step >= self._last_step:
                self._judged, self._stopped = int(step), bool(stopped)
                return
            time.sleep(VERDICT_POLL_S)
        self._judged = self._last_step  # judged late: the stop flag still reaches the trial

    def close(self) -> None:
        """The trial ended: send its last reports now (a trial that reported nothing, e.g. a
        table look-up, costs the worker's loop nothing)."""
        if self._reported:
            self._sender.flush()


def live_link(run: str, trial_id: str, *, wait_for_verdicts: bool = False) -> LiveLink | None:
    """The trial's live link when it runs on a Dask worker, else None."""
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:
        return None
    return LiveLink(worker, run, trial_id, wait_for_verdicts=wait_for_verdicts)


# -- in the driver -----------------------------------------------------------------------------


class LiveInbox:
    """The reports that came in for one search run, until the driver's loop takes them.

    ``notify`` is called (on the client's event loop) after reports came in, to wake the
    loop waiting for completions.
    """

    def __init__(self, client: Client, run: str, notify: Callable[[], None]) -> None:
        self._client = client
        self._run = run
        self._topic = live_topic(run)
        self._notify = notify
        self._reports: deque[Report] = deque()
        client.subscribe_topic(self._topic, self._received)

    def _received(self, event: tuple[float, Any]) -> None:
        _, message = event
        for trial_id, step, metrics in message.get("reports", ()):
            self._reports.append((str(trial_id), int(step), dict(metrics)))
        self._notify()

    @property
    def pending(self) -> bool:
        """Whether reports wait to be taken."""
        return bool(self._reports)

    def take(self) -> list[Report]:
        """The reports received since the last call, in arrival order."""
        taken = []
        while self._reports:
            taken.append(self._reports.popleft())
        return taken

    def stop(self, trial_id: str) -> None:
        """Tell ``trial_id`` to stop (it learns of it at its next ``ctx.should_stop()``)."""
        from distributed import Event

        Event(stop_event_name(self._run, trial_id), client=self._client).set()

    def publish_verdicts(self, verdicts: Mapping[str, tuple[int, bool]]) -> None:
        """Publish, for each running trial, the last step judged and whether to stop: the
        trials waiting for their verdict read it (`LiveLink.stop_requested`)."""
        from distributed import Variable

        Variable(verdicts_name(self._run), client=self._client).set(
            {trial_id: [step, stop] for trial_id, (step, stop) in verdicts.items()}
        )

    def pause(self) -> None:
        """Tell every running trial of the run to save its state and return."""
        from distributed import Event

        Event(pause_event_name(self._run), client=self._client).set()

    def close(self, stopped: Iterable[tuple[str, int]] = ()) -> None:
        """Stop following the reports, and drop the verdicts, the stop flags of the
        ``stopped`` trials and the pause flag from the scheduler: their run is over."""
        from distributed import Event, Variable

        self._client.unsubscribe_topic(self._topic)
        Variable(verdicts_name(self._run), client=self._client).delete()
        names = [stop_event_name(self._run, trial_id) for trial_id, _ in stopped]
        for name in [*names, pause_event_name(self._run)]:
            Event(name, client=self._client).clear()
