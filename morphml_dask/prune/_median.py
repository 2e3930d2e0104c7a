"""`MedianStopping`: stop a trial that is worse than the median of the others at its step."""

from __future__ import annotations

import bisect
from typing import Any

from morphml_dask.exceptions import PrunerError
from morphml_dask.prune._base import BasePruner, PrunerTrial, decode_scores, encode_scores
from morphml_dask.registry import register_kind
from morphml_dask.validation import check_int

__all__ = ["MedianStopping"]


class MedianStopping(BasePruner):
    """The median stopping rule (Golovin et al., "Google Vizier", KDD 2017).

    When a trial reports step ``t``, it stops if its best score so far is worse than the
    median of the best-so-far scores the *other* trials had when they reported step ``t``.

    Parameters
    ----------
    warmup_steps
        Steps below this are never pruned: early epochs say little.
    min_trials
        The rule acts at step ``t`` only once at least this many other trials have
        reported ``t``.

    Notes
    -----
    Unlike Optuna's `MedianPruner`, which compares with completed trials only, the trials
    compared with are every trial that reached step ``t``, running ones included, in the
    order their reports arrived: a search does not wait for a trial to finish before its
    curve counts. A stopped trial's later reports count no more.
    """

    name = "median"

    def __init__(self, *, warmup_steps: int = 1, min_trials: int = 4) -> None:
        super().__init__()
        self.warmup_steps = check_int("warmup_steps", warmup_steps, low=0, error=PrunerError)
        self.min_trials = check_int("min_trials", min_trials, low=1, error=PrunerError)
        # The best-so-far scores reported at each step, sorted.
        self._at_step: dict[int, list[float]] = {}

    def _decide(self, trial_id: str, trial: PrunerTrial) -> bool:
        others = self._at_step.setdefault(trial.step, [])
        stop = (
            trial.step >= self.warmup_steps
            and len(others) >= self.min_trials
            and trial.best < _median(others)
        )
        bisect.insort(others, trial.best)
        return stop

    def settings(self) -> dict[str, Any]:
        return {"warmup_steps": self.warmup_steps, "min_trials": self.min_trials}

    def _rule_state(self) -> Any:
        return {str(step): encode_scores(values) for step, values in self._at_step.items()}

    def _load_rule_state(self, state: Any) -> None:
        self._at_step = {int(step): decode_scores(values) for step, values in state.items()}


def _median(values: list[float]) -> float:
    """The median of sorted ``values``."""
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) / 2


register_kind("pruner", MedianStopping.name, MedianStopping)
