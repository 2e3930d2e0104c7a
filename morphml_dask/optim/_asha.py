"""`ASHA`: asynchronous successive halving (Li et al., MLSys 2020), with optional brackets."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim._base import BaseOptimizer
from morphml_dask.registry import Schema, register_kind
from morphml_dask.space import BaseSearchSpace
from morphml_dask.trial import Trial, TrialResult
from morphml_dask.validation import check_int, invalid, is_int

__all__ = ["ASHA"]


class ASHA(BaseOptimizer):
    """Asynchronous successive halving: promote a configuration as soon as it is in the top.

    Algorithm 2 of Li et al., "A System for Massively Parallel Hyperparameter Tuning"
    (MLSys 2020). Rung ``k`` trains to budget ``r * eta**k``, from the minimum resource
    ``r = min_budget`` up to the maximum resource ``R = max_budget``. Whenever a worker is
    free, ``get_job`` scans the rungs from the highest non-top rung down to rung 0 and
    promotes the best configuration that is among the top ``floor(|rung k| / eta)`` results
    of its rung and not yet promoted; when none is, it samples a new configuration for the
    bottom rung. ASHA never waits for a rung to fill, so `ask` only returns ``[]`` once
    ``max_trials`` is spent.

    Parameters
    ----------
    space, objective, direction, max_trials, seed
        As for `BaseOptimizer`.
    min_budget
        ``r``, the budget (e.g. epochs) of rung 0.
    max_budget
        ``R``, the budget of the top rung. The rungs are ``r * eta**k`` while at most ``R``;
        when ``R`` is not a power of ``eta`` times ``r``, ``R`` is appended as the top rung.
    eta
        The reduction factor: the top ``1/eta`` of each rung is promoted.
    budgets
        An explicit, strictly increasing list of rung budgets that replaces the ladder made
        from ``min_budget``, ``max_budget`` and ``eta``, e.g. ``[12, 200]`` for the
        NAS-Bench-201 epochs. ``eta`` still sets the fraction promoted.
    brackets
        Asynchronous Hyperband when above 1: bracket ``s`` (the paper's minimum
        early-stopping rate) starts its new configurations at rung ``s``. New configurations
        go to the brackets in turn; each bracket is an independent ASHA over rungs
        ``s, ..., K``; promotions are looked for in every bracket before a new configuration
        is drawn, highest rung first, then lowest bracket first.

    Notes
    -----
    `Trial.rung` is the rung index ``k`` in the whole ladder and ``trial.info["bracket"]``
    the bracket ``s``. A promotion is a trial for the same architecture at rung ``k + 1``
    whose ``parent`` is the promoted trial, so that a worker continues from its weights and
    trains ``budget - parent_budget`` more. A configuration counts as promoted as soon as its
    promotion is asked for, as in the paper.

    ``|rung k|`` counts every result told at rung ``k``, failures included. Failures (and
    scores of -inf) rank below every completed result and are never promoted. Equal scores
    rank by trial order: the earlier trial is the better. Both ask and tell cost
    ``O(log |rung|)`` per rung: each rung keeps its top ``floor(|rung| / eta)`` results and
    the rest in two heaps, and its unpromoted results in a third.
    """

    name = "asha"

    def __init__(
        self,
        space: BaseSearchSpace,
        *,
        min_budget: int = 1,
        max_budget: int = 27,
        eta: int = 3,
        budgets: Sequence[int] | None = None,
        brackets: int = 1,
        objective: str = "val_accuracy",
        direction: str = "maximize",
        max_trials: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            space, objective=objective, direction=direction, max_trials=max_trials, seed=seed
        )
        self.eta = check_int(
            "eta",
            eta,
            low=2,
            error=OptimizerError,
            expected="an integer >= 2 (the reduction factor)",
            fix="pass eta=3 (or 2 or 4), as in the ASHA paper",
        )
        self.budgets = rung_budgets(min_budget, max_budget, self.eta, budgets)
        rungs = len(self.budgets)
        self.brackets = check_int(
            "brackets",
            brackets,
            low=1,
            high=rungs,
            error=OptimizerError,
            expected=f"an integer from 1 to the number of rungs, {rungs} "
            f"(budgets {list(self.budgets)})",
            fix=f"pass brackets=1 for plain ASHA, or at most brackets={rungs}",
        )
        self._next_bracket = 0
        self._rungs = self._empty_rungs()

    def _empty_rungs(self) -> dict[tuple[int, int], _Rung]:
        """A table per (bracket s, non-top rung k), in the order ``get_job`` scans them."""
        top = len(self.budgets) - 1
        return {
            (s, k): _Rung(self.eta)
            for k in range(top - 1, -1, -1)
            for s in range(min(k, self.brackets - 1) + 1)
        }

    def _suggest(self, n: int) -> list[Trial]:
        return [self._get_job() for _ in range(n)]

    def _get_job(self) -> Trial:
        for (s, k), rung in self._rungs.items():
            parent = rung.promote()
            if parent is not None:
                return self._new_trial(
                    parent.arch,
                    self.budgets[k + 1],
                    rung=k + 1,
                    parent=parent,
                    info={"bracket": s},
                )
        s = self._next_bracket
        self._next_bracket = (s + 1) % self.brackets
        arch = self.space.sample(self.rng)
        return self._new_trial(arch, self.budgets[s], rung=s, info={"bracket": s})

    def _observe(self, trial: Trial, result: TrialResult, score: float) -> None:
        rung = self._rungs.get((int(trial.info.get("bracket", 0)), trial.rung))
        if rung is not None:  # results at the top rung are never promoted: not kept
            # Ids are "t" + the ask count, so this is the trial order that breaks ties.
            rung.add(trial, int(trial.id[1:]), score)

    def _state(self) -> dict[str, Any]:
        return {
            "eta": self.eta,
            "budgets": list(self.budgets),
            "brackets": self.brackets,
            "next_bracket": self._next_bracket,
            "rungs": [[s, k, rung.to_dict()] for (s, k), rung in self._rungs.items()],
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.eta = int(state["eta"])
        self.budgets = tuple(int(b) for b in state["budgets"])
        self.brackets = int(state["brackets"])
        self._next_bracket = int(state["next_bracket"])
        self._rungs = self._empty_rungs()
        for s, k, rung in state["rungs"]:
            self._rungs[int(s), int(k)].load(rung)


def rung_budgets(
    min_budget: int, max_budget: int, eta: int, budgets: Sequence[int] | None = None
) -> tuple[int, ...]:
    """The budget of each rung: ``budgets`` when given, else ``r * eta**k`` up to ``R``.

    Examples
    --------
    >>> rung_budgets(1, 27, 3)
    (1, 3, 9, 27)
    >>> rung_budgets(1, 100, 3)
    (1, 3, 9, 27, 81, 100)
    >>> rung_budgets(1, 27, 3, budgets=[12, 200])
    (12, 200)
    """
    if budgets is not None:
        return _listed_budgets(budgets)
    r = check_int(
        "min_budget",
        min_budget,
        low=1,
        error=OptimizerError,
        expected="an integer >= 1 (r, the budget of rung 0)",
        fix="pass min_budget=1, or budgets=[...] to list the rungs",
    )
    big_r = check_int(
        "max_budget",
        max_budget,
        low=r,
        error=OptimizerError,
        expected=f"an integer of at least min_budget ({r})",
        fix=f"pass max_budget={r * eta**3} (min_budget * eta**3) or larger",
    )
    ladder = [r]
    while ladder[-1] * eta <= big_r:
        ladder.append(ladder[-1] * eta)
    if ladder[-1] != big_r:
        ladder.append(big_r)
    return tuple(ladder)


def _listed_budgets(budgets: object) -> tuple[int, ...]:
    listed = list(budgets) if isinstance(budgets, Sequence) else []
    positive = bool(listed) and all(is_int(b) and b >= 1 for b in listed)
    if not (positive and all(a < b for a, b in itertools.pairwise(listed))):
        raise invalid(
            OptimizerError,
            "budgets",
            budgets,
            expected="a strictly increasing list of positive integers, e.g. [12, 200]",
            fix="list each rung's budget from lowest to highest, or pass budgets=None "
            "to use min_budget, max_budget and eta",
        )
    return tuple(int(b) for b in listed)


class _Rung:
    """The results told at one rung of one bracket, kept for ``O(log n)`` promotions.

    Results are ranked by ``(score, -order)``: higher score first, then earlier trial.
    ``top`` holds the ``floor(size / eta)`` best as a min-heap of ``(score, -order)`` (root:
    the worst of them), ``rest`` the others as a min-heap of ``(-score, order)`` (root: the
    best of them), and ``waiting`` the unpromoted completed results as a min-heap of
    ``(-score, order, trial id)`` (root: the best), with their trials in ``trials``.

    The paper's promotable set is non-empty iff the best unpromoted result is in the top
    ``floor(size / eta)``, i.e. ranks no lower than the root of ``top``.
    """

    __slots__ = ("eta", "rest", "size", "top", "trials", "waiting")

    def __init__(self, eta: int) -> None:
        self.eta = eta
        self.size = 0
        self.top: list[tuple[float, int]] = []
        self.rest: list[tuple[float, int]] = []
        self.waiting: list[tuple[float, int, str]] = []
        self.trials: dict[str, Trial] = {}

    def add(self, trial: Trial, order: int, score: float) -> None:
        self.size += 1
        entry = (score, -order)
        if self.top and entry > self.top[0]:
            worst = heapq.heappushpop(self.top, entry)
            heapq.heappush(self.rest, (-worst[0], -worst[1]))
        else:
            heapq.heappush(self.rest, (-score, order))
        if len(self.top) < self.size // self.eta:  # grows by at most one per result
            best = heapq.heappop(self.rest)
            heapq.heappush(self.top, (-best[0], -best[1]))
        if score > -math.inf:
            heapq.heappush(self.waiting, (-score, order, trial.id))
            self.trials[trial.id] = trial

    def promote(self) -> Trial | None:
        """Take the best promotable trial of this rung, or None when there is none."""
        if not self.top or not self.waiting:
            return None
        neg_score, order, trial_id = self.waiting[0]
        if (-neg_score, -order) < self.top[0]:
            return None
        heapq.heappop(self.waiting)
        return self.trials.pop(trial_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "top": [[_encode(a), b] for a, b in self.top],
            "rest": [[_encode(a), b] for a, b in self.rest],
            "waiting": [[_encode(a), b, c] for a, b, c in self.waiting],
            "trials": [t.to_dict() for t in self.trials.values()],
        }

    def load(self, data: Mapping[str, Any]) -> None:
        """Restore `to_dict`, heaps in their stored order."""
        self.size = int(data["size"])
        self.top = [(float(a), int(b)) for a, b in data["top"]]
        self.rest = [(float(a), int(b)) for a, b in data["rest"]]
        self.waiting = [(float(a), int(b), str(c)) for a, b, c in data["waiting"]]
        trials = (Trial.from_dict(t) for t in data["trials"])
        self.trials = {t.id: t for t in trials}


def _encode(value: float) -> float | str:
    """A JSON-safe float: infinities as the strings ``float`` reads back."""
    return value if math.isfinite(value) else repr(value)


register_kind(
    "optimizer",
    ASHA.name,
    ASHA,
    Schema(
        from_task={"max_budget": "epochs"},
        dropped_by={"budgets": ("min_budget", "max_budget")},
    ),
)
