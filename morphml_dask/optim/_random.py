"""`RandomSearch`: architectures drawn uniformly from the space."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from morphml_dask.optim._base import BaseOptimizer, check_budget
from morphml_dask.registry import Schema, register_kind
from morphml_dask.space import BaseSearchSpace
from morphml_dask.trial import Trial, TrialResult

__all__ = ["RandomSearch"]


class RandomSearch(BaseOptimizer):
    """Sample every trial independently from the space.

    Parameters
    ----------
    space, objective, direction, max_trials, seed
        As for `BaseOptimizer`.
    budget
        The budget (e.g. epochs) every trial is trained for.
    warmup, warmup_proxy, warmup_keep
        A zero-cost warm-up (`ZeroCostWarmup`; ``warmup=0``, the default, for none): the
        best ``warmup_keep`` (default: all) of ``warmup`` random candidates scored by
        ``warmup_proxy`` train first, best first; later samples are random.
    """

    name = "random-search"

    def __init__(
        self,
        space: BaseSearchSpace,
        *,
        budget: int = 12,
        warmup: int = 0,
        warmup_proxy: str = "synflow",
        warmup_keep: int | None = None,
        objective: str = "val_accuracy",
        direction: str = "maximize",
        max_trials: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            space, objective=objective, direction=direction, max_trials=max_trials, seed=seed
        )
        self.budget = check_budget(budget)
        self._use_warmup(warmup, warmup_proxy, warmup_keep, default_keep=warmup)

    def _suggest(self, n: int) -> list[Trial]:
        return [self._new_trial(self._sample(), self.budget) for _ in range(n)]

    def _observe(self, trial: Trial, result: TrialResult, score: float) -> None:
        pass

    def _state(self) -> dict[str, Any]:
        return {"budget": self.budget}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.budget = int(state["budget"])


register_kind("optimizer", RandomSearch.name, RandomSearch, Schema(from_task={"budget": "epochs"}))
