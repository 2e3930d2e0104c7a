"""`RegularizedEvolution`: aging evolution (Real et al., AAAI 2019), asynchronous."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim._base import BaseOptimizer
from morphml_dask.optim._pareto import MultiObjective, dominates, nsga2_order
from morphml_dask.space import ArchGraph, BaseSearchSpace
from morphml_dask.trial import Trial, TrialResult

__all__ = ["RegularizedEvolution"]


class RegularizedEvolution(BaseOptimizer):
    """Regularized (aging) evolution, steady-state and asynchronous.

    Until the population holds ``population_size`` completed trials, every ask samples the
    space. After that, each ask samples ``sample_size`` members uniformly, mutates the best
    of them, and every told result joins the population while the oldest member leaves.
    With one worker this is exactly Algorithm 1 of Real et al., "Regularized Evolution for
    Image Classifier Architecture Search" (AAAI 2019); with many, workers draw parents from
    whatever population exists when they ask, as in the paper's distributed setup.

    Parameters
    ----------
    space, objective, direction, max_trials, seed
        As for `BaseOptimizer`.
    population_size
        P, the number of members kept (the paper's NAS-Bench-201 setting is 10).
    sample_size
        S, the tournament size (3 for NAS-Bench-201).
    budget
        The budget every trial is trained for.
    constraints
        Upper bounds on metrics, e.g. ``{"params": 1e6}``: a result above a bound counts as
        infeasible, like a failure, and never joins the population.
    objectives
        Several ``(metric, direction)`` pairs, e.g.
        ``[("val_accuracy", "maximize"), ("params", "minimize")]``, for a multi-objective
        search: tournaments rank members by non-dominated front, then crowding distance
        (NSGA-II, Deb et al., IEEE TEVC 2002), and `pareto_front` returns the trade-offs.

    Notes
    -----
    Failed and infeasible trials do not join the population; while it is not full, more
    architectures are sampled at random.
    """

    name = "regularized-evolution"

    def __init__(
        self,
        space: BaseSearchSpace,
        *,
        population_size: int = 10,
        sample_size: int = 3,
        budget: int = 12,
        constraints: Mapping[str, float] | None = None,
        objectives: Sequence[Sequence[str]] | None = None,
        objective: str = "val_accuracy",
        direction: str = "maximize",
        max_trials: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            space, objective=objective, direction=direction, max_trials=max_trials, seed=seed
        )
        if not (isinstance(population_size, int) and population_size >= 2):
            raise OptimizerError(
                "invalid population_size",
                expected="an integer of at least 2",
                received=repr(population_size),
                fix="set population_size to e.g. 10 (the NAS-Bench-201 setting)",
            )
        if not (isinstance(sample_size, int) and 1 <= sample_size <= population_size):
            raise OptimizerError(
                "invalid sample_size",
                expected=f"an integer from 1 to population_size ({population_size})",
                received=repr(sample_size),
                fix="set sample_size to e.g. 3, at most the population size",
            )
        self.population_size = population_size
        self.sample_size = sample_size
        self.budget = budget
        self.constraints = dict(constraints or {})
        self.objectives = None if objectives is None else MultiObjective(objectives)
        # (scores, trial) of completed, feasible members, oldest first; one score per
        # objective (a single one without `objectives`), larger is better.
        self._population: deque[tuple[list[float], Trial]] = deque()
        self._front: list[tuple[list[float], Trial]] = []

    def _suggest(self, n: int) -> list[Trial]:
        trials = []
        for _ in range(n):
            if len(self._population) < self.population_size:
                arch = self.space.sample(self.rng)
            else:
                arch = self.space.mutate(self._tournament(), self.rng)
            trials.append(self._new_trial(arch, self.budget))
        return trials

    def _tournament(self) -> ArchGraph:
        picks = self.rng.choice(len(self._population), size=self.sample_size, replace=False)
        if self.objectives is None:
            # The best score wins; ties go to the older member.
            best = max(sorted(int(i) for i in picks), key=lambda i: self._population[i][0])
        else:
            order = nsga2_order(np.array([scores for scores, _ in self._population]))
            rank = {member: position for position, member in enumerate(order)}
            best = min((int(i) for i in picks), key=lambda i: rank[i])
        return self._population[best][1].arch

    def _observe(self, trial: Trial, result: TrialResult, score: float) -> None:
        if self.objectives is None:
            scores = [score]
        else:
            scores = [float(v) for v in self.objectives.score(result)]
        if -math.inf in scores or not self._feasible(result):
            return
        self._population.append((scores, trial))
        if len(self._population) > self.population_size:
            self._population.popleft()
        if not any(dominates(kept, scores) for kept, _ in self._front):
            self._front = [m for m in self._front if not dominates(scores, m[0])]
            self._front.append((scores, trial))

    def pareto_front(self) -> list[Trial]:
        """The completed, feasible trials no other one dominates, in the order they were told.

        With a single objective: the trials that share the best score.
        """
        return [trial for _, trial in self._front]

    def _feasible(self, result: TrialResult) -> bool:
        return all(result.value(k) <= limit for k, limit in self.constraints.items())

    def _state(self) -> dict[str, Any]:
        return {
            "population": [[scores, trial.to_dict()] for scores, trial in self._population],
            "front": [[scores, trial.to_dict()] for scores, trial in self._front],
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self._population = deque(
            ([float(s) for s in scores], Trial.from_dict(trial))
            for scores, trial in state["population"]
        )
        self._front = [
            ([float(s) for s in scores], Trial.from_dict(trial)) for scores, trial in state["front"]
        ]
