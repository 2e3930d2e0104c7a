"""What goes into the search state machine (events) and what comes out (instructions).

`SearchState.handle(events, now)` takes events from the I/O shell and returns instructions
for it, the way distributed's ``WorkerState.handle_stimulus`` does: the state machine never
touches Dask, the store or the clock, so that a scripted sequence of events tests every path
of the driver in microseconds, and replaying the same events gives the same instructions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from morphml_dask.exceptions import MorphMLError
from morphml_dask.trial import Trial, TrialRecord, TrialResult

__all__ = [
    "Cancel",
    "Event",
    "Fail",
    "Finish",
    "Instruction",
    "Log",
    "Outcome",
    "PauseTrials",
    "Persist",
    "Release",
    "Reported",
    "Retire",
    "SchedulerRestarted",
    "StopRequested",
    "StopTrials",
    "StoreCongested",
    "StoreRead",
    "Submit",
    "TaskFinished",
    "TaskLost",
    "WorkersSeen",
]

Curve = tuple[Mapping[str, float], ...]


@dataclass(frozen=True)
class Outcome:
    """What a worker reports for one trial (`run_trial`): its result, its learning curve,
    where it ran and when (unix seconds on the worker)."""

    result: TrialResult
    curve: Curve = ()
    worker: str | None = None
    device: str | None = None
    job_id: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    paused: bool = False
    store_url: str | None = None
    inherited_fraction: float | None = None

    def record(self, trial: Trial, result: TrialResult, attempt: int) -> TrialRecord:
        """The trials-table row of ``trial`` with ``result`` (this outcome's, or the one the
        driver made of it), where and when it ran."""
        return TrialRecord(
            trial,
            result,
            worker=self.worker,
            device=self.device,
            job_id=self.job_id,
            start_time=self.start_time,
            end_time=self.end_time,
            attempt=attempt,
            inherited_fraction=self.inherited_fraction,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as `run_trial` returns it across the process boundary."""
        return {
            "result": self.result.to_dict(),
            "curve": [dict(point) for point in self.curve],
            "worker": self.worker,
            "device": self.device,
            "job_id": self.job_id,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "paused": self.paused,
            "store_url": self.store_url,
            "inherited_fraction": self.inherited_fraction,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        return cls(
            result=TrialResult.from_dict(data["result"]),
            curve=tuple(data.get("curve") or ()),
            worker=data.get("worker"),
            device=data.get("device"),
            job_id=data.get("job_id"),
            start_time=data.get("start_time"),
            end_time=data.get("end_time"),
            paused=bool(data.get("paused", False)),
            store_url=data.get("store_url"),
            inherited_fraction=data.get("inherited_fraction"),
        )


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreRead:
    """What the store already held when the search started (a resumed search)."""

    records: tuple[TrialRecord, ...] = ()


@dataclass(frozen=True)
class WorkersSeen:
    """The workers connected now: the trials they can run at once, and for each address the
    seconds until it retires (None: it never does)."""

    slots: int
    retire_in: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskFinished:
    """A Dask task came back: one outcome per trial it carried, in order."""

    key: str
    outcomes: tuple[Outcome, ...]


@dataclass(frozen=True)
class TaskLost:
    """Dask gave a task up (its workers kept dying) or it was cancelled."""

    key: str
    error: str


@dataclass(frozen=True)
class StoreCongested:
    """The store writer started (True) or stopped (False) lagging or failing."""

    congested: bool


@dataclass(frozen=True)
class StopRequested:
    """The user asked the search to stop: at once, or, with ``pause_for`` seconds, once the
    running trials saved their state and returned (`Search.pause`)."""

    pause_for: float = 0.0


@dataclass(frozen=True)
class Reported:
    """Running trials reported points of their curves: ``(trial_id, step, metrics)`` each,
    in the order they arrived."""

    reports: tuple[tuple[str, int, Mapping[str, float]], ...]


@dataclass(frozen=True)
class SchedulerRestarted:
    """The client reconnected to a scheduler that knows none of the search's tasks (it was
    restarted at the same address): every task in flight must be submitted again."""


Event = (
    StoreRead
    | WorkersSeen
    | TaskFinished
    | TaskLost
    | StoreCongested
    | StopRequested
    | Reported
    | SchedulerRestarted
)


# -- instructions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submit:
    """Run ``trials`` in one Dask task under ``key``.

    ``workers`` restricts the task to those workers: strictly when ``strict`` (kept off
    workers that retire too soon), else as a preference (away from workers it failed on).
    """

    key: str
    trials: tuple[Trial, ...]
    priority: int
    gpus: float
    workers: tuple[str, ...] | None = None
    strict: bool = False


@dataclass(frozen=True)
class Cancel:
    """Cancel these tasks: nobody waits for them any more."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class StopTrials:
    """Tell these running trials to stop (the pruner decided so): they learn it at their
    next ``ctx.should_stop()``."""

    trial_ids: tuple[str, ...]


@dataclass(frozen=True)
class PauseTrials:
    """Tell every running trial of the search to save its state and return: it continues
    from there when the search is resumed."""


@dataclass(frozen=True)
class Release:
    """Drop these finished tasks' results from the cluster now."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class Persist:
    """Write ``records`` and ``curves``, then a checkpoint of the optimizer's state with its
    ``pending`` trials (and the pruner's state), in that order; release ``release`` once
    written."""

    records: tuple[TrialRecord, ...]
    curves: Mapping[str, Curve]
    optimizer_state: Mapping[str, Any]
    pending: tuple[Trial, ...]
    release: tuple[str, ...] = ()
    pruner_state: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Retire:
    """Take ``worker`` out of the cluster (quarantine)."""

    worker: str


@dataclass(frozen=True)
class Log:
    """Something the user should hear about, at logging ``level``."""

    level: str
    message: str


@dataclass(frozen=True)
class Finish:
    """The search is over: write what was handed over, then close."""


@dataclass(frozen=True)
class Fail:
    """The search cannot go on; raise ``error`` once what was handed over is written."""

    error: MorphMLError


Instruction = (
    Submit | Cancel | Release | Persist | Retire | Log | Finish | Fail | StopTrials | PauseTrials
)


def submitted_trials(instructions: Sequence[Instruction]) -> list[Trial]:
    """The trials of every `Submit` in ``instructions``, in order."""
    return [trial for i in instructions if isinstance(i, Submit) for trial in i.trials]
