"""`BasePruner`: decides, from the live reports of running trials, which ones to stop.

A pruner is apart from the optimizer, as in Optuna and Ray Tune: any optimizer runs with any
pruner. Like an optimizer it is a pure state machine, fed by the driver's state machine in
the order the reports arrive; it never touches Dask, files or the clock, so that replaying
the same reports gives the same decisions.
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar

from morphml_dask.exceptions import PrunerError
from morphml_dask.validation import is_int

__all__ = ["BasePruner", "PrunerTrial"]

STATE_FORMAT = "morphml.pruner"
STATE_VERSION = 1


class PrunerTrial:
    """What a pruner knows of one trial: its last step, its best score and whether it was
    stopped."""

    __slots__ = ("best", "step", "stopped")

    def __init__(self, step: int = -1, best: float = -math.inf, stopped: bool = False) -> None:
        self.step = step
        self.best = best
        self.stopped = stopped

    def to_list(self) -> list[Any]:
        return [self.step, _encode(self.best), self.stopped]

    @classmethod
    def from_list(cls, data: list[Any]) -> PrunerTrial:
        return cls(int(data[0]), float(data[1]), bool(data[2]))


class BasePruner(abc.ABC):
    """A pure rule that stops losing trials while they run.

    The driver calls `report` with each step a trial reports, its objective turned into a
    *score* that is larger for better trials (the optimizer's objective and direction: a
    loss is negated), and tells the trial to stop when it returns True.

    Every pruner keeps, per trial, its last step and its best score so far, and ignores:

    - a step at or below the trial's last one (a trial retried after its worker died
      reports its steps again: they were decided on already);
    - the reports of a trial it stopped (the trial learns of it a little later and may
      report meanwhile).

    Subclasses implement `_decide`, and `_rule_state` / `_load_rule_state` for what they
    keep besides the trials.
    """

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._trials: dict[str, PrunerTrial] = {}

    # -- the one entry point -----------------------------------------------------------------

    def report(self, trial_id: str, step: int, score: float) -> bool:
        """Take one report; True when the trial should stop now.

        Parameters
        ----------
        trial_id
            The reporting trial.
        step
            The step (epoch) reported, an integer >= 0.
        score
            The objective at that step, larger is better; NaN (a diverged or missing
            value) counts as the worst score.

        Raises
        ------
        PrunerError
            When ``step`` is not an integer >= 0 or ``score`` not a number.
        """
        if not is_int(step) or step < 0:
            raise PrunerError(
                f"{type(self).__name__}.report: invalid step {step!r}",
                expected="an integer >= 0: the step (epoch) the score is of",
                received=repr(step),
                fix="report steps as integers, e.g. ctx.report(epoch, val_loss=...)",
                key="step",
            )
        if isinstance(score, bool) or not isinstance(score, numbers.Real):
            raise PrunerError(
                f"{type(self).__name__}.report: invalid score {score!r}",
                expected="a number, larger for better trials",
                received=repr(score),
                fix="pass the objective's value as a float",
                key="score",
            )
        trial = self._trials.setdefault(trial_id, PrunerTrial())
        if trial.stopped or step <= trial.step:
            return False
        value = float(score)
        trial.step = int(step)
        trial.best = max(trial.best, -math.inf if math.isnan(value) else value)
        trial.stopped = self._decide(trial_id, trial)
        return trial.stopped

    @abc.abstractmethod
    def _decide(self, trial_id: str, trial: PrunerTrial) -> bool:
        """Whether ``trial``, which has just reported ``trial.step``, stops; record what the
        rule needs of the report."""

    # -- what it knows -------------------------------------------------------------------------

    def stopped(self, trial_id: str) -> bool:
        """Whether the pruner stopped ``trial_id``."""
        trial = self._trials.get(trial_id)
        return trial is not None and trial.stopped

    @property
    def n_stopped(self) -> int:
        """How many trials the pruner stopped."""
        return sum(trial.stopped for trial in self._trials.values())

    @abc.abstractmethod
    def settings(self) -> dict[str, Any]:
        """The constructor's arguments, JSON-ready: ``type(self)(**settings())`` is the same
        pruner, fresh."""

    def to_dict(self) -> dict[str, Any]:
        """The pruner's kind and settings, as an experiment document names it."""
        return {"name": self.name, **self.settings()}

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.settings().items())
        return f"{type(self).__name__}({arguments})"

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to go on deciding exactly as this pruner would, JSON-ready."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "pruner": self.to_dict(),
            "trials": {key: trial.to_list() for key, trial in self._trials.items()},
            "rule": self._rule_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict`; the pruner must have been built with the same settings.

        Raises
        ------
        PrunerError
            When the state is not a pruner's, is of a newer version or of other settings.
        """
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise PrunerError(
                "not a pruner state this version can read",
                expected=f"format {STATE_FORMAT!r}, version {STATE_VERSION}",
                received=f"format {state.get('format')!r}, version {state.get('version')!r}",
                fix="resume with the morphml_dask version that wrote the checkpoint",
            )
        if state.get("pruner") != self.to_dict():
            raise PrunerError(
                "the checkpoint's pruner differs from this search's",
                expected=repr(self.to_dict()),
                received=repr(state.get("pruner")),
                fix="resume with the pruner settings the search started with",
            )
        trials = state["trials"]
        self._trials = {str(key): PrunerTrial.from_list(value) for key, value in trials.items()}
        self._load_rule_state(state["rule"])

    @abc.abstractmethod
    def _rule_state(self) -> Any:
        """What the rule keeps besides the trials, JSON-ready."""

    @abc.abstractmethod
    def _load_rule_state(self, state: Any) -> None:
        """Restore `_rule_state`."""


def _encode(value: float) -> float | str:
    """A JSON-safe float: infinities as the strings ``float`` reads back."""
    return value if math.isfinite(value) else repr(value)


def encode_scores(values: list[float]) -> list[float | str]:
    return [_encode(value) for value in values]


def decode_scores(values: list[Any]) -> list[float]:
    return [float(value) for value in values]
