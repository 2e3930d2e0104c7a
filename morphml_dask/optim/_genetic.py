"""`GeneticAlgorithm`: a generational GA with elitism, single- or multi-objective (NSGA-II)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim._base import BaseOptimizer, Objective, check_budget, check_inheritance
from morphml_dask.optim._offspring import offspring
from morphml_dask.optim._pareto import MultiObjective, dominates, nsga2_order
from morphml_dask.registry import Schema, register_kind
from morphml_dask.space import BaseSearchSpace, Candidate, candidate_from_dict
from morphml_dask.trial import Trial, TrialResult
from morphml_dask.validation import check_int, check_number

__all__ = ["GeneticAlgorithm"]

Score = tuple[float, ...]

# How many extra mutations a child may take to differ from its parents.
_MAX_REMUTATIONS = 32


@dataclass
class _Member:
    """An individual of the current population: its trial and its score once told."""

    trial: Trial
    score: Score | None = None


@dataclass(frozen=True)
class _Child:
    """An individual bred but not yet asked for; with inheritance, the parent whose weights
    it starts from and how it was made (`Trial.info`)."""

    arch: Candidate
    parents: tuple[str, ...] = ()
    source: Trial | None = None
    made: Mapping[str, Any] = field(default_factory=dict)


class GeneticAlgorithm(BaseOptimizer):
    """A generational genetic algorithm with elitism and tournament selection.

    Generation 0 is ``population_size`` random architectures. Once every trial of a
    generation has been told, the next one keeps the ``elitism`` best completed individuals
    (with their scores; they are not evaluated again) and fills the rest with children: two
    parents win tournaments of ``tournament_size`` individuals drawn uniformly without
    replacement, are crossed over with probability ``crossover_rate`` (otherwise the child is
    a copy of the first parent), and the child is mutated with probability
    ``mutation_rate``. A child with a parent's fingerprint is mutated again, so the search
    does not spend a trial re-evaluating its own parent.

    The algorithm is synchronous: `ask` returns ``[]`` while the last trials of a generation
    are running, however many workers are idle.

    With ``objectives``, individuals are ranked by NSGA-II's crowded comparison (Pareto
    front, then crowding distance; Deb et al., IEEE TEVC 6(2), 2002) for both elitism and
    tournaments, and `pareto_front` returns the non-dominated trials.

    Parameters
    ----------
    space, max_trials, seed
        As for `BaseOptimizer`.
    population_size
        Individuals per generation, elites included; at least 2.
    elitism
        How many of the best individuals survive unchanged into the next generation, from 0
        to ``population_size - 1``.
    tournament_size
        Individuals drawn for each tournament, from 1 (random parents) to
        ``population_size``.
    crossover_rate
        Probability that a child mixes two parents (`BaseSearchSpace.crossover`).
    mutation_rate
        Probability that a child is mutated (`BaseSearchSpace.mutate`).
    budget
        The budget (e.g. epochs) every trial is trained for.
    inherit_weights
        When True, a child starts from its first parent's trained weights and trains
        ``child_budget`` epochs on top (Lamarckian evolution, as `RegularizedEvolution`): a
        mutated copy of one parent is a function-preserving morphism of it in a `DagSpace`;
        a crossover keeps what fits of the first parent's tensors. Generation 0 trains
        ``budget`` epochs from scratch.
    child_budget
        The epochs an inheriting child trains (default: ``budget``); only with
        ``inherit_weights``.
    objectives
        ``(metric, direction)`` pairs for a multi-objective search, e.g.
        ``[("val_accuracy", "maximize"), ("params", "minimize")]``; None for one objective.
    objective, direction
        The objective of a single-objective search. With ``objectives`` they name the one
        of them that `best_trial` reports, and must be one of the pairs.
    warmup, warmup_proxy, warmup_keep
        A zero-cost warm-up (`ZeroCostWarmup`; ``warmup=0``, the default, for none):
        generation 0 is the best ``warmup_keep`` (default ``population_size``) of ``warmup``
        random candidates scored by ``warmup_proxy``, the rest of it sampled at random.

    Notes
    -----
    A failed trial scores ``-inf`` (every column, with ``objectives``), so it never wins a
    tournament against a completed one and is never an elite. Each trial's ``info`` holds
    its ``generation`` and the ids of its ``parents``; `Trial.parent` stays None because a
    child is trained from scratch, unless it inherits (``inherit_weights``).
    """

    name = "genetic-algorithm"

    def __init__(
        self,
        space: BaseSearchSpace,
        *,
        population_size: int = 20,
        elitism: int = 2,
        tournament_size: int = 3,
        crossover_rate: float = 0.5,
        mutation_rate: float = 1.0,
        budget: int = 12,
        objectives: Sequence[tuple[str, str]] | None = None,
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
        self._configure(
            {
                "population_size": population_size,
                "elitism": elitism,
                "tournament_size": tournament_size,
                "crossover_rate": crossover_rate,
                "mutation_rate": mutation_rate,
                "budget": budget,
                "objectives": objectives,
                "inherit_weights": inherit_weights,
                "child_budget": child_budget,
            }
        )
        self._use_warmup(warmup, warmup_proxy, warmup_keep, default_keep=self.population_size)
        self._generation = 0
        self._members: list[_Member] = []
        # With a warm-up, generation 0 is drawn from its best once the scores are back.
        self._queue = [] if self._warmup else self._first_generation()
        self._front: list[_Member] = []

    @property
    def generation(self) -> int:
        """The number of the generation being evaluated, from 0."""
        return self._generation

    def pareto_front(self) -> list[Trial]:
        """The non-dominated completed trials so far, in the order they were told.

        For a single-objective search, the best trial (an empty list before any completes).
        """
        if self.objectives is None:
            best = self.best_trial
            return [] if best is None else [best]
        return [member.trial for member in self._front]

    # -- ask / tell ------------------------------------------------------------------------

    def _first_generation(self) -> list[_Child]:
        return [_Child(self._sample()) for _ in range(self.population_size)]

    def _suggest(self, n: int) -> list[Trial]:
        if not self._queue and not self._members:
            self._queue = self._first_generation()
        children, self._queue = self._queue[:n], self._queue[n:]
        trials = []
        for child in children:
            info = {"generation": self._generation, "parents": list(child.parents)}
            if child.source is None:
                trial = self._new_trial(child.arch, self.budget, info=info)
            else:
                trial = self._new_trial(
                    child.arch,
                    self.child_budget,
                    parent=child.source,
                    info={**info, **child.made},
                    inherits=True,
                )
            self._members.append(_Member(trial))
            trials.append(trial)
        return trials

    def _observe(self, trial: Trial, result: TrialResult, score: float) -> None:
        member = next(m for m in self._members if m.trial.id == trial.id)
        member.score = (score,) if self.objectives is None else tuple(self.objectives.score(result))
        if self.objectives is not None:
            self._update_front(member)
        if not self._queue and all(m.score is not None for m in self._members):
            self._next_generation()

    # -- the algorithm ---------------------------------------------------------------------

    def _next_generation(self) -> None:
        pool = self._members
        order = self._ranking(pool)
        rank = np.empty(len(pool), dtype=np.intp)
        rank[order] = np.arange(len(pool))
        elites = [pool[i] for i in order[: self.elitism] if _completed(pool[i])]
        size = self.population_size - len(elites)
        self._queue = [self._breed(pool, rank) for _ in range(size)]
        self._members = elites
        self._generation += 1

    def _ranking(self, pool: list[_Member]) -> list[int]:
        """Indices of ``pool`` best first; ties by position."""
        scores = np.array([m.score for m in pool], dtype=np.float64)
        if self.objectives is not None:
            return nsga2_order(scores)
        return [int(i) for i in np.argsort(-scores[:, 0], kind="stable")]

    def _tournament(self, rank: np.ndarray[Any, np.dtype[np.intp]]) -> int:
        """The best-ranked of ``tournament_size`` individuals drawn without replacement."""
        size = min(self.tournament_size, len(rank))
        contestants = self.rng.choice(len(rank), size=size, replace=False)
        return int(contestants[np.argmin(rank[contestants])])

    def _breed(self, pool: list[_Member], rank: np.ndarray[Any, np.dtype[np.intp]]) -> _Child:
        first = pool[self._tournament(rank)].trial
        second = pool[self._tournament(rank)].trial
        parents = [first]
        arch = first.arch
        made: dict[str, Any] = {"mutation": "mutate"}
        if self.rng.random() < self.crossover_rate:
            arch = self.space.crossover(first.arch, second.arch, self.rng)
            made = {"mutation": "crossover"}
            if second.id != first.id:
                parents.append(second)
        if self.rng.random() < self.mutation_rate:
            if self.inherit_weights and len(parents) == 1:
                arch, made = offspring(self.space, arch, self.rng)
            else:
                arch = self.space.mutate(arch, self.rng)
        seen = {p.arch.fingerprint for p in parents}
        for _ in range(_MAX_REMUTATIONS):
            if arch.fingerprint not in seen:
                break
            arch = self.space.mutate(arch, self.rng)
            made = {"mutation": "mutate"}
        ids = tuple(p.id for p in parents)
        if not self.inherit_weights:
            return _Child(arch, ids)
        return _Child(arch, ids, first, made)

    def _update_front(self, member: _Member) -> None:
        score = member.score
        if score is None or not _completed(member):
            return
        if any(dominates(m.score, score) for m in self._front if m.score is not None):
            return
        kept = [m for m in self._front if m.score is not None and not dominates(score, m.score)]
        self._front = [*kept, member]

    # -- settings and state ----------------------------------------------------------------

    def _configure(self, settings: Mapping[str, Any]) -> None:
        size = check_int(
            "population_size",
            settings["population_size"],
            low=2,
            error=OptimizerError,
            fix="set population_size to e.g. 20",
        )
        self.population_size = size
        self.elitism = check_int(
            "elitism",
            settings["elitism"],
            low=0,
            high=size - 1,
            error=OptimizerError,
            fix=f"keep fewer elites than individuals, e.g. elitism={min(2, size - 1)}",
        )
        self.tournament_size = check_int(
            "tournament_size",
            settings["tournament_size"],
            low=1,
            high=size,
            error=OptimizerError,
            fix=f"draw at most population_size, e.g. tournament_size={min(3, size)}",
        )
        self.crossover_rate = _check_rate("crossover_rate", settings["crossover_rate"])
        self.mutation_rate = _check_rate("mutation_rate", settings["mutation_rate"])
        self.budget = check_budget(settings["budget"])
        self.objectives = _check_objectives(self.objective, settings["objectives"])
        self.inherit_weights, self.child_budget = check_inheritance(
            settings.get("inherit_weights", False), settings.get("child_budget"), self.budget
        )

    def _state(self) -> dict[str, Any]:
        return {
            "settings": {
                "population_size": self.population_size,
                "elitism": self.elitism,
                "tournament_size": self.tournament_size,
                "crossover_rate": self.crossover_rate,
                "mutation_rate": self.mutation_rate,
                "budget": self.budget,
                "objectives": None if self.objectives is None else self.objectives.to_dict(),
                "inherit_weights": self.inherit_weights,
                "child_budget": self.child_budget if self.inherit_weights else None,
            },
            "generation": self._generation,
            "members": [_member_to_dict(m) for m in self._members],
            "queue": [_child_to_dict(c) for c in self._queue],
            "front": [_member_to_dict(m) for m in self._front],
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self._configure(state["settings"])
        self._generation = int(state["generation"])
        self._members = [_member_from_dict(m) for m in state["members"]]
        self._queue = [_child_from_dict(c) for c in state["queue"]]
        self._front = [_member_from_dict(m) for m in state["front"]]


def _completed(member: _Member) -> bool:
    return member.score is not None and not any(math.isinf(s) and s < 0 for s in member.score)


def _check_objectives(
    objective: Objective, objectives: Sequence[Sequence[str]] | None
) -> MultiObjective | None:
    if objectives is None:
        return None
    multi = MultiObjective(objectives)
    pair = (objective.metric, objective.direction)
    if pair not in multi.objectives:
        metric, direction = multi.objectives[0]
        raise OptimizerError(
            "objective is not one of the objectives",
            expected=f"(objective, direction) among {multi.to_dict()}",
            received=f"objective={pair[0]!r}, direction={pair[1]!r}",
            fix=f"pass objective={metric!r}, direction={direction!r} "
            "(the objective best_trial reports)",
        )
    return multi


def _check_rate(name: str, value: object) -> float:
    return check_number(
        name,
        value,
        low=0,
        high=1,
        error=OptimizerError,
        expected="a probability from 0 to 1",
        fix=f"set {name} to e.g. 0.5",
    )


# JSON has no infinities: failures' -inf scores are written as the string "-inf".
def _encode(score: Score | None) -> list[float | str] | None:
    if score is None:
        return None
    return [s if math.isfinite(s) else ("-inf" if s < 0 else "inf") for s in score]


def _member_to_dict(member: _Member) -> dict[str, Any]:
    return {"trial": member.trial.to_dict(), "score": _encode(member.score)}


def _child_to_dict(child: _Child) -> dict[str, Any]:
    source = None if child.source is None else child.source.to_dict()
    return {
        "arch": child.arch.to_dict(),
        "parents": list(child.parents),
        "source": source,
        "made": dict(child.made),
    }


def _child_from_dict(data: Mapping[str, Any]) -> _Child:
    # Checkpoints from before inheritance have neither "source" nor "made".
    source = data.get("source")
    return _Child(
        candidate_from_dict(data["arch"]),
        tuple(str(p) for p in data["parents"]),
        None if source is None else Trial.from_dict(source),
        dict(data.get("made") or {}),
    )


def _member_from_dict(data: Mapping[str, Any]) -> _Member:
    score = data["score"]
    return _Member(
        Trial.from_dict(data["trial"]), None if score is None else tuple(float(s) for s in score)
    )


register_kind(
    "optimizer",
    GeneticAlgorithm.name,
    GeneticAlgorithm,
    Schema(from_task={"budget": "epochs"}),
)
