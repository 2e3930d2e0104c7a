"""The records that cross between optimizer, driver, workers and storage.

`Trial` is what an optimizer asks to be evaluated; `TrialResult` is what comes back;
`TrialRecord` is a finished trial as the store keeps it (the two, plus where and when it ran).
All are frozen and have versioned, JSON-ready `to_dict` / `from_dict`, because they travel to
Dask workers, to the scheduler's dashboard and into the store.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from morphml_dask.exceptions import InputError
from morphml_dask.space import Candidate, candidate_from_dict

__all__ = ["Trial", "TrialRecord", "TrialResult", "TrialState", "numbered_id", "trial_number"]

_TRIAL_FORMAT = "morphml.trial"
_RESULT_FORMAT = "morphml.result"
_RECORD_FORMAT = "morphml.record"
_VERSION = 1


def numbered_id(number: int) -> str:
    """The id an optimizer gives its ``number``-th trial: ``t000001``, ``t000002``, ..."""
    return f"t{number:06d}"


def trial_number(trial_id: str) -> int | None:
    """The number of an id `numbered_id` wrote, or None for any other id."""
    digits = trial_id[1:]
    if trial_id[:1] != "t" or not (digits.isascii() and digits.isdigit()):
        return None
    number = int(digits)
    return number if trial_id == numbered_id(number) else None


class TrialState(str, enum.Enum):
    """Where a trial stands. Results are `COMPLETE`, `FAIL` or `PRUNED` (stopped early by
    the search's pruner, with the metrics it reported until then)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"
    FAIL = "fail"
    PRUNED = "pruned"


@dataclass(frozen=True)
class Trial:
    """One evaluation an optimizer asks for.

    Attributes
    ----------
    id
        Unique within a search; the driver uses it as the Dask key.
    arch
        The candidate to evaluate: an `ArchGraph` of an architecture space, or the
        `Config` of a `FunctionSpace`.
    budget
        Fidelity to train to, e.g. epochs.
    rung
        Multi-fidelity level (ASHA), 0 for single-fidelity optimizers.
    parent
        Id of the trial whose saved weights this one starts from, or None.
    parent_budget
        The budget ``parent`` was trained to (0 without a parent). A promotion (same
        architecture) trains ``budget - parent_budget`` more epochs.
    inherits
        True for a child of another architecture (a mutation or crossover of ``parent``):
        it starts from the tensors of the parent's weights that fit it (exactly transformed
        when ``info["morphism"]`` says how the architecture changed) and trains ``budget``
        epochs on top (Lamarckian evolution).
    info
        Optimizer-specific JSON values, e.g. the Hyperband bracket, the ``mutation`` label
        and the ``morphism`` of an inheriting child.
    """

    id: str
    arch: Candidate
    budget: int
    rung: int = 0
    parent: str | None = None
    parent_budget: int = 0
    info: Mapping[str, Any] = field(default_factory=dict)
    inherits: bool = False

    @property
    def epochs_trained(self) -> int:
        """The epochs this trial trains itself: ``budget``, less what a promotion continues
        from."""
        if self.parent is None or self.inherits:
            return self.budget
        return max(self.budget - self.parent_budget, 0)

    @property
    def mutation(self) -> str | None:
        """How an inheriting child's architecture came from its parent's, for lineages."""
        if not self.inherits:
            return None
        return str(self.info.get("mutation", "inherit"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _TRIAL_FORMAT,
            "version": _VERSION,
            "id": self.id,
            "arch": self.arch.to_dict(),
            "budget": self.budget,
            "rung": self.rung,
            "parent": self.parent,
            "parent_budget": self.parent_budget,
            "info": dict(self.info),
            "inherits": self.inherits,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trial:
        _check_document(data, _TRIAL_FORMAT, "Trial")
        return cls(
            id=str(data["id"]),
            arch=candidate_from_dict(data["arch"]),
            budget=int(data["budget"]),
            rung=int(data.get("rung", 0)),
            parent=data.get("parent"),
            parent_budget=int(data.get("parent_budget", 0)),
            info=dict(data.get("info", {})),
            inherits=bool(data.get("inherits", False)),
        )


@dataclass(frozen=True)
class TrialResult:
    """The outcome of a trial: metrics when it completed, the error when it failed.

    Build them with `TrialResult.complete` and `TrialResult.failed`.
    """

    trial_id: str
    state: TrialState
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    error_kind: str | None = None

    @classmethod
    def complete(cls, trial_id: str, metrics: Mapping[str, float]) -> TrialResult:
        return cls(trial_id, TrialState.COMPLETE, {k: float(v) for k, v in metrics.items()})

    @classmethod
    def failed(cls, trial_id: str, error: str, kind: str = "error") -> TrialResult:
        return cls(trial_id, TrialState.FAIL, {}, error=error, error_kind=kind)

    @classmethod
    def pruned(cls, trial_id: str, metrics: Mapping[str, float]) -> TrialResult:
        """A trial the pruner stopped, with the metrics of its last report."""
        return cls(trial_id, TrialState.PRUNED, {k: float(v) for k, v in metrics.items()})

    @property
    def ok(self) -> bool:
        """Whether the trial completed its budget."""
        return self.state is TrialState.COMPLETE

    def value(self, metric: str) -> float:
        """The metric, or NaN when the trial failed or did not report it. A pruned trial's
        is the value it last reported: a result at a lower fidelity."""
        if self.state is TrialState.FAIL:
            return math.nan
        return float(self.metrics.get(metric, math.nan))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _RESULT_FORMAT,
            "version": _VERSION,
            "trial_id": self.trial_id,
            "state": self.state.value,
            "metrics": dict(self.metrics),
            "error": self.error,
            "error_kind": self.error_kind,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialResult:
        _check_document(data, _RESULT_FORMAT, "TrialResult")
        return cls(
            trial_id=str(data["trial_id"]),
            state=TrialState(data["state"]),
            metrics={k: float(v) for k, v in data.get("metrics", {}).items()},
            error=data.get("error"),
            error_kind=data.get("error_kind"),
        )


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial as the store keeps it: one row of the trials table.

    Attributes
    ----------
    trial, result
        What was asked and what came back; ``result.trial_id`` is ``trial.id``.
    worker, device
        Where it ran, e.g. the Dask worker address and ``"cuda:0"``; None when reused.
    job_id
        The batch job the worker ran in (``SLURM_JOB_ID``), if any.
    start_time, end_time
        Unix seconds on the worker.
    attempt
        1 for the first run, more when the driver ran it again (a lost worker, an
        infrastructure failure).
    reused
        True when the result was copied from an earlier trial with the same fingerprint and
        budget instead of being trained.
    inherited_fraction
        For a trial that started from its parent's weights, the fraction of its model's
        parameters (elements) that came from them; None when it started from nothing.
    """

    trial: Trial
    result: TrialResult
    worker: str | None = None
    device: str | None = None
    job_id: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    attempt: int = 1
    reused: bool = False
    inherited_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.result.trial_id != self.trial.id:
            raise InputError(
                "the result belongs to another trial",
                expected=f"a TrialResult with trial_id {self.trial.id!r}",
                received=f"trial_id {self.result.trial_id!r}",
                fix="pair each trial with its own result",
            )

    @property
    def trial_id(self) -> str:
        return self.trial.id

    @property
    def ok(self) -> bool:
        return self.result.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _RECORD_FORMAT,
            "version": _VERSION,
            "trial": self.trial.to_dict(),
            "result": self.result.to_dict(),
            "worker": self.worker,
            "device": self.device,
            "job_id": self.job_id,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "attempt": self.attempt,
            "reused": self.reused,
            "inherited_fraction": self.inherited_fraction,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        _check_document(data, _RECORD_FORMAT, "TrialRecord")
        return cls(
            trial=Trial.from_dict(data["trial"]),
            result=TrialResult.from_dict(data["result"]),
            worker=data.get("worker"),
            device=data.get("device"),
            job_id=data.get("job_id"),
            start_time=data.get("start_time"),
            end_time=data.get("end_time"),
            attempt=int(data.get("attempt", 1)),
            reused=bool(data.get("reused", False)),
            inherited_fraction=data.get("inherited_fraction"),
        )


def _check_document(data: Mapping[str, Any], fmt: str, name: str) -> None:
    if not isinstance(data, Mapping) or data.get("format") != fmt:
        received = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise InputError(
            f"not a {name} document",
            expected=f'a mapping with "format": "{fmt}"',
            received=repr(received),
            fix=f"pass the dict produced by {name}.to_dict()",
        )
    if data.get("version") != _VERSION:
        raise InputError(
            f"unsupported {name} document version",
            expected=f"version {_VERSION}",
            received=repr(data.get("version")),
            fix="upgrade morphml_dask to read documents written by a newer release",
        )
