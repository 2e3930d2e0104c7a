"""`RegularizedEvolution`: aging evolution (Real et al., AAAI 2019), asynchronous."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim._base import BaseOptimizer, check_budget, check_inheritance
from morphml_dask.optim._offspring import offspring
from morphml_dask.optim._pareto import MultiObjective, dominates, nsga2_order
from morphml_dask.registry import Schema, register_kind
from morphml_dask.space import BaseSearchSpace, Candidate
from morphml_dask.trial import Trial, TrialResult
from morphml_dask.validation import (
    check_bool,
    check_int,
    check_number,
    invalid,
    short_repr,
)

__all__ = ["RegularizedEvolution"]

# Draws of a child before a repeat is accepted (avoid_repeats): the one-edge neighbours of a
# NAS-Bench-201 cell number 24, so 20 draws find a new one whenever a few are left.
_REDRAWS = 20


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
    greedy_start
        The number of results during which the search climbs greedily: once one result
        is back and until ``greedy_start`` feasible results have been told, each ask mutates
        the best architecture told so far instead of sampling at random or holding a
        tournament. 0 (the default) is the paper's algorithm. For many asynchronous
        workers, about twice their number (see Notes). Single-objective only.
    avoid_repeats
        When True, a child whose architecture (by fingerprint) was already asked for, by
        this search or its checkpoint, is drawn again from the same parent (or sampled
        again), up to 20 times; the last draw is kept when every one repeats.
    inherit_weights
        When True, a child starts from its parent's trained weights (Lamarckian evolution,
        Real et al. 2017; Elsken et al., LEMONADE, ICLR 2019) and trains ``child_budget``
        epochs on top: in a `DagSpace` the child is a function-preserving morphism of its
        parent (`morph`), elsewhere a mutation that keeps what fits of the parent's tensors.
        Sampled architectures still train ``budget`` epochs from scratch.
    child_budget
        The epochs an inheriting child trains on top of its parent's weights (default:
        ``budget``). Only with ``inherit_weights``.
    warmup, warmup_proxy, warmup_keep
        A zero-cost warm-up (`ZeroCostWarmup`; ``warmup=0``, the default, for none): the
        initial population is the best ``warmup_keep`` (default ``population_size``) of
        ``warmup`` random candidates scored by ``warmup_proxy``.

    Notes
    -----
    Failed and infeasible trials do not join the population; while it is not full, more
    architectures are sampled at random.

    With ``W`` asynchronous workers the paper's algorithm spends its first ``W`` asks, and
    every ask until ``population_size`` results are back, on random architectures, and
    children of the first results are mutations of whichever finished first. When the
    budget is a few times ``W`` evaluations this is close to random search: on
    NAS-Bench-201 with 50 workers and 12,000 simulated seconds of compute (about 110
    evaluations) it reaches 90.98% where one worker reaches 91.20%.
    ``greedy_start=100, avoid_repeats=True`` wins back about half of that gap (91.10%) by
    exploiting the best result as soon as it is back, without sampling the same child
    twice (many workers asking between two results would otherwise mutate the same few
    parents into the same few neighbours); `benchmarks/rea_quality.py` measures it.
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
        greedy_start: int = 0,
        avoid_repeats: bool = False,
        inherit_weights: bool = False,
        child_budget: int | None = None,
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
        self.population_size, self.sample_size = _check_sizes(population_size, sample_size)
        self.budget = check_budget(budget)
        self.constraints = _check_constraints(constraints)
        self.objectives = None if objectives is None else MultiObjective(objectives)
        self.greedy_start = _check_greedy_start(greedy_start, self.objectives)
        self.avoid_repeats = check_bool(
            "avoid_repeats",
            avoid_repeats,
            error=OptimizerError,
            fix="pass avoid_repeats=True to draw again children already asked for",
        )
        self.inherit_weights, self.child_budget = check_inheritance(
            inherit_weights, child_budget, self.budget
        )
        self._use_warmup(warmup, warmup_proxy, warmup_keep, default_keep=self.population_size)
        # Feasible results told, and the best of them: what greedy_start climbs from.
        self._fed = 0
        self._leader: tuple[list[float], Trial] | None = None
        self._asked_fingerprints: set[str] = set()
        # (scores, trial) of completed, feasible members, oldest first; one score per
        # objective (a single one without `objectives`), larger is better.
        self._population: deque[tuple[list[float], Trial]] = deque()
        self._front: list[tuple[list[float], Trial]] = []

    def _suggest(self, n: int) -> list[Trial]:
        trials = []
        for _ in range(n):
            parent = self._parent()
            arch, info = self._child(parent)
            if self.avoid_repeats:
                for _ in range(_REDRAWS):
                    if arch.fingerprint not in self._asked_fingerprints:
                        break
                    arch, info = self._child(parent)
                self._asked_fingerprints.add(arch.fingerprint)
            trials.append(self._trial_of(arch, parent, info))
        return trials

    def _parent(self) -> Trial | None:
        """The trial whose architecture the next child mutates; None to sample one."""
        if self._leader is not None and self._fed < self.greedy_start:
            return self._leader[1]
        if len(self._population) < self.population_size:
            return None
        return self._tournament()

    def _child(self, parent: Trial | None) -> tuple[Candidate, dict[str, Any]]:
        """A child of ``parent`` (sampled without one) and how it was made."""
        if parent is None:
            return self._sample(), {}
        if self.inherit_weights:
            return offspring(self.space, parent.arch, self.rng)
        return self.space.mutate(parent.arch, self.rng), {}

    def _trial_of(self, arch: Candidate, parent: Trial | None, info: dict[str, Any]) -> Trial:
        if parent is None or not self.inherit_weights:
            return self._new_trial(arch, self.budget)
        return self._new_trial(arch, self.child_budget, parent=parent, info=info, inherits=True)

    def _tournament(self) -> Trial:
        picks = self.rng.choice(len(self._population), size=self.sample_size, replace=False)
        if self.objectives is None:
            # The best score wins; ties go to the older member.
            best = max(sorted(int(i) for i in picks), key=lambda i: self._population[i][0])
        else:
            order = nsga2_order(np.array([scores for scores, _ in self._population]))
            rank = {member: position for position, member in enumerate(order)}
            best = min((int(i) for i in picks), key=lambda i: rank[i])
        return self._population[best][1]

    def _observe(self, trial: Trial, result: TrialResult, score: float) -> None:
        if self.objectives is None:
            scores = [score]
        else:
            scores = [float(v) for v in self.objectives.score(result)]
        if -math.inf in scores or not self._feasible(result):
            return
        self._fed += 1
        # Ties keep the earlier result, as in the tournament.
        if self._leader is None or scores > self._leader[0]:
            self._leader = (scores, trial)
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
        leader = self._leader
        return {
            "population": [[scores, trial.to_dict()] for scores, trial in self._population],
            "front": [[scores, trial.to_dict()] for scores, trial in self._front],
            "fed": self._fed,
            "leader": None if leader is None else [leader[0], leader[1].to_dict()],
            "asked_fingerprints": sorted(self._asked_fingerprints),
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self._population = deque(
            ([float(s) for s in scores], Trial.from_dict(trial))
            for scores, trial in state["population"]
        )
        self._front = [
            ([float(s) for s in scores], Trial.from_dict(trial)) for scores, trial in state["front"]
        ]
        # Checkpoints written before greedy_start and avoid_repeats existed lack these keys.
        self._fed = int(state.get("fed", len(self._population)))
        leader = state.get("leader")
        self._leader = (
            None if leader is None else ([float(s) for s in leader[0]], Trial.from_dict(leader[1]))
        )
        self._asked_fingerprints = set(state.get("asked_fingerprints", []))


def _check_sizes(population_size: object, sample_size: object) -> tuple[int, int]:
    """P and S, checked: at least 2 members, tournaments of 1 to P."""
    population = check_int(
        "population_size",
        population_size,
        low=2,
        error=OptimizerError,
        fix="set population_size to e.g. 10 (the NAS-Bench-201 setting)",
    )
    sample = check_int(
        "sample_size",
        sample_size,
        low=1,
        high=population,
        error=OptimizerError,
        expected=f"an integer from 1 to population_size ({population})",
        fix="set sample_size to e.g. 3, at most the population size",
    )
    return population, sample


def _check_constraints(constraints: object) -> dict[str, float]:
    if constraints is None:
        return {}
    if not isinstance(constraints, Mapping):
        raise invalid(
            OptimizerError,
            "constraints",
            constraints,
            expected="a mapping of metric upper bounds, e.g. {params: 1000000}",
            fix='pass e.g. constraints={"params": 1e6}, or None for no constraints',
        )
    bounds = {}
    for metric, bound in constraints.items():
        if not (isinstance(metric, str) and metric):
            raise invalid(
                OptimizerError,
                f"constraints.{short_repr(metric)}",
                metric,
                expected="a metric name, a non-empty string",
            )
        bounds[metric] = check_number(f"constraints.{metric}", bound, error=OptimizerError)
    return bounds


def _check_greedy_start(greedy_start: object, objectives: MultiObjective | None) -> int:
    climbs = check_int(
        "greedy_start",
        greedy_start,
        low=0,
        error=OptimizerError,
        expected="an integer >= 0 (results climbed greedily; 0: never)",
        fix="set greedy_start=0 for the paper's algorithm, or e.g. twice the workers",
    )
    if climbs and objectives is not None:
        raise OptimizerError(
            "greedy_start needs a single objective",
            expected="greedy_start=0 with objectives, or objectives=None",
            received=f"greedy_start={climbs} with objectives={objectives.to_dict()!r}",
            fix="drop greedy_start for a multi-objective search: there is no one best "
            "architecture to climb from",
        )
    return climbs


register_kind(
    "optimizer",
    RegularizedEvolution.name,
    RegularizedEvolution,
    Schema(from_task={"budget": "epochs"}),
)
