"""What the search state machine does with the reports of running trials: keep their live
curves, and ask the search's pruner which to stop."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import PrunerError

if TYPE_CHECKING:
    from morphml_dask.optim import Objective
    from morphml_dask.prune import BasePruner

__all__ = ["LiveCurves", "Pruning"]

# Points of each running trial's curve kept for the dashboard page.
LIVE_POINTS = 200
# Reports kept in `Pruning.inputs` (and the decisions among them): a prefix that replays
# exactly, bounded so that a long search's driver memory stays bounded too.
LOGGED_REPORTS = 200_000


class LiveCurves:
    """The curves of the trials running now, as reported so far, and the trials stopped."""

    def __init__(self) -> None:
        self.curves: dict[str, list[dict[str, float]]] = {}
        self.stopped: set[str] = set()

    def add(self, trial_id: str, step: int, metrics: Mapping[str, float]) -> None:
        curve = self.curves.setdefault(trial_id, [])
        if curve and curve[-1]["epoch"] >= step:
            return  # a retried trial reporting its first steps again
        curve.append({"epoch": float(step), **metrics})
        del curve[:-LIVE_POINTS]

    def verdicts(self) -> dict[str, tuple[int, bool]]:
        """For each running trial, the last step judged and whether it was told to stop."""
        return {
            trial_id: (int(curve[-1]["epoch"]), trial_id in self.stopped)
            for trial_id, curve in self.curves.items()
            if curve
        }

    def ended(self, trial_id: str) -> None:
        self.curves.pop(trial_id, None)
        self.stopped.discard(trial_id)


class Pruning:
    """The search's pruner, fed with reports in the order they reach the state machine.

    ``inputs`` lists what the pruner was given, ``(trial_id, step, score)``, and ``decisions``
    the stops it decided, ``(trial_id, step)``: replaying ``inputs`` on a fresh pruner gives
    the same ``decisions``. Both keep the first `LOGGED_REPORTS` reports only.

    Parameters
    ----------
    pruner
        The pruner, or None: reports then only feed the live curves.
    objective
        The optimizer's objective: the metric the pruner judges and its direction.
    """

    def __init__(self, pruner: BasePruner | None, objective: Objective) -> None:
        self.pruner = pruner
        self.objective = objective
        self.live = LiveCurves()
        self.inputs: list[tuple[str, int, float]] = []
        self.decisions: list[tuple[str, int]] = []
        self._metric_seen = False
        self._missing = 0

    def reports(
        self,
        reports: Iterable[tuple[str, int, Mapping[str, float]]],
        running: Callable[[str], bool],
    ) -> tuple[str, ...]:
        """Take reports in arrival order; the ``running`` trials among them to stop now."""
        return tuple(
            trial_id
            for trial_id, step, metrics in reports
            if running(trial_id) and self.report(trial_id, step, metrics)
        )

    def report(self, trial_id: str, step: int, metrics: Mapping[str, float]) -> bool:
        """Take one report of a running trial; whether to stop it now.

        Raises
        ------
        PrunerError
            When trials report metrics but never the objective the pruner judges by.
        """
        self.live.add(trial_id, step, metrics)
        return self.judge(trial_id, step, metrics)

    def judge(self, trial_id: str, step: int, metrics: Mapping[str, float]) -> bool:
        """Hand one report to the pruner (a report that arrived, or a point of a finished
        trial's curve that did not arrive live); whether it says stop."""
        if self.pruner is None:
            return False
        score = self._score(metrics)
        if score is None:
            return False
        logged = len(self.inputs) < LOGGED_REPORTS
        if logged:
            self.inputs.append((trial_id, step, score))
        stop = self.pruner.report(trial_id, step, score)
        if stop:
            if logged:
                self.decisions.append((trial_id, step))
            self.live.stopped.add(trial_id)
        return stop

    def finished(self, trial_id: str, curve: Iterable[Mapping[str, float]]) -> None:
        """A trial ended: its curve's points that never arrived live count for the rule
        (a trial that reports every step informs every rung), and its live curve goes."""
        for point in curve:
            step = point.get("epoch")
            if step is not None:
                metrics = {k: v for k, v in point.items() if k != "epoch"}
                self.judge(trial_id, int(step), metrics)
        self.live.ended(trial_id)

    def state_dict(self) -> dict[str, Any] | None:
        return None if self.pruner is None else self.pruner.state_dict()

    def _score(self, metrics: Mapping[str, float]) -> float | None:
        """The objective as a larger-is-better score; None for a report without it (a trial
        may report other metrics at some steps), until no trial ever reported it."""
        metric = self.objective.metric
        value = metrics.get(metric)
        if value is None:
            if not self._metric_seen and metrics:
                self._missing += 1
                if self._missing >= _MISSING_LIMIT:
                    raise _objective_never_reported(metric, metrics)
            return None
        self._metric_seen = True
        number = float(value)
        if math.isnan(number):
            return number
        return number if self.objective.direction == "maximize" else -number


# Reports without the objective, before any with it, that make it a mistake of the setup.
_MISSING_LIMIT = 3


def _objective_never_reported(metric: str, metrics: Mapping[str, float]) -> PrunerError:
    reported = sorted(metrics)
    return PrunerError(
        f"the pruner judges trials by {metric!r}, which the trials do not report",
        expected=f"reports with {metric!r}, e.g. ctx.report(epoch, {metric}=...)",
        received=f"reports of {reported}",
        fix=f"report {metric} from the task, or set the optimizer's objective to one of {reported}",
        key="objective",
    )
