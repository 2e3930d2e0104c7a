"""`SuccessiveHalving` and `Hyperband` in stopping mode: rungs that stop running trials."""

from __future__ import annotations

import bisect
import itertools
from typing import Any

from morphml_dask.exceptions import PrunerError
from morphml_dask.prune._base import BasePruner, PrunerTrial, decode_scores, encode_scores
from morphml_dask.registry import Schema, register_kind
from morphml_dask.validation import check_int

__all__ = ["Hyperband", "SuccessiveHalving"]

# Brackets when no max_budget bounds the rungs.
_DEFAULT_BRACKETS = 4


class SuccessiveHalving(BasePruner):
    """Asynchronous successive halving in stopping mode (Li et al., MLSys 2020).

    Rung ``k`` sits at step ``min_budget * eta**k`` (below ``max_budget``). When a trial
    first reports a step at or past a rung, its best score so far is recorded at that rung,
    and it continues only if it ranks in the top ``1/eta`` of the scores recorded there so
    far, itself included: rank ``<= max(1, n // eta)`` of ``n``. The first trial at a rung
    always continues; equal scores rank by arrival, the earlier the better. A trial whose
    report jumps several rungs is ranked at each in turn and stops at the first it fails.

    Parameters
    ----------
    min_budget
        ``r``, the step of the first rung.
    eta
        The reduction factor: the top ``1/eta`` of each rung continues.
    max_budget
        ``R``, the most steps a trial trains: no rung at or past it (a trial there is done
        anyway). None: rungs go on for as long as trials report.

    Notes
    -----
    As in the paper's asynchronous variant (and Ray Tune's `ASHAScheduler`), no rung waits
    to fill: a decision is made when the report arrives, from the results seen so far, so
    a few more trials continue than synchronous halving would let through.
    """

    name = "successive-halving"

    def __init__(self, *, min_budget: int = 1, eta: int = 3, max_budget: int | None = None) -> None:
        super().__init__()
        self.min_budget = check_int("min_budget", min_budget, low=1, error=PrunerError)
        self.eta = check_int("eta", eta, low=2, error=PrunerError)
        self.max_budget = (
            None
            if max_budget is None
            else check_int("max_budget", max_budget, low=self.min_budget, error=PrunerError)
        )
        # Per rung, (-score, arrival) of the scores recorded there, sorted: best first.
        self._rungs: list[list[tuple[float, int]]] = []
        self._arrivals = 0
        self._passed: dict[str, int] = {}

    def rung_step(self, rung: int) -> int:
        """The step of rung ``rung``."""
        return int(self.min_budget * self.eta**rung)

    def _decide(self, trial_id: str, trial: PrunerTrial) -> bool:
        rung = self._passed.get(trial_id, 0)
        while self._is_rung(rung) and trial.step >= self.rung_step(rung):
            rung += 1
            self._passed[trial_id] = rung
            if not self._continues(rung - 1, trial.best):
                return True
        return False

    def _is_rung(self, rung: int) -> bool:
        return self.max_budget is None or self.rung_step(rung) < self.max_budget

    def _continues(self, rung: int, score: float) -> bool:
        while len(self._rungs) <= rung:
            self._rungs.append([])
        recorded = self._rungs[rung]
        entry = (-score, self._arrivals)
        self._arrivals += 1
        bisect.insort(recorded, entry)
        rank = bisect.bisect_left(recorded, entry) + 1
        return rank <= max(1, len(recorded) // self.eta)

    def settings(self) -> dict[str, Any]:
        return {"min_budget": self.min_budget, "eta": self.eta, "max_budget": self.max_budget}

    def _rule_state(self) -> Any:
        return {
            "rungs": [
                [encode_scores([-score for score, _ in rung]), [order for _, order in rung]]
                for rung in self._rungs
            ],
            "arrivals": self._arrivals,
            "passed": dict(self._passed),
        }

    def _load_rule_state(self, state: Any) -> None:
        self._rungs = [
            [
                (-score, int(order))
                for score, order in zip(decode_scores(scores), orders, strict=True)
            ]
            for scores, orders in state["rungs"]
        ]
        self._arrivals = int(state["arrivals"])
        self._passed = {str(key): int(value) for key, value in state["passed"].items()}


class Hyperband(BasePruner):
    """Hyperband brackets of asynchronous successive halving (Li et al., JMLR 2018; MLSys
    2020), in stopping mode.

    Bracket ``s`` is a `SuccessiveHalving` whose first rung sits at step
    ``min_budget * eta**s``: bracket 0 prunes the most aggressively, the last one lets
    every trial train to its last rung before judging. Trials join the brackets in turn, in
    the order their first reports arrive, so that the assignment replays exactly.

    Parameters
    ----------
    min_budget, eta, max_budget
        As for `SuccessiveHalving`.
    brackets
        How many brackets; by default as many as there are rungs below ``max_budget``
        (``4`` without one).
    """

    name = "hyperband"

    def __init__(
        self,
        *,
        min_budget: int = 1,
        eta: int = 3,
        max_budget: int | None = None,
        brackets: int | None = None,
    ) -> None:
        super().__init__()
        first = SuccessiveHalving(min_budget=min_budget, eta=eta, max_budget=max_budget)
        self.min_budget, self.eta, self.max_budget = first.min_budget, first.eta, max_budget
        most = _DEFAULT_BRACKETS
        if max_budget is not None:
            most = sum(1 for _ in itertools.takewhile(first._is_rung, itertools.count()))
        self.brackets = (
            most
            if brackets is None
            else check_int("brackets", brackets, low=1, high=max(most, 1), error=PrunerError)
        )
        self._halvings = [
            SuccessiveHalving(min_budget=first.rung_step(s), eta=eta, max_budget=max_budget)
            for s in range(max(self.brackets, 1))
        ]
        self._bracket: dict[str, int] = {}

    def bracket_of(self, trial_id: str) -> int | None:
        """The bracket ``trial_id`` joined, or None before its first report."""
        return self._bracket.get(trial_id)

    def _decide(self, trial_id: str, trial: PrunerTrial) -> bool:
        bracket = self._bracket.setdefault(trial_id, len(self._bracket) % len(self._halvings))
        return self._halvings[bracket]._decide(trial_id, trial)

    def settings(self) -> dict[str, Any]:
        return {
            "min_budget": self.min_budget,
            "eta": self.eta,
            "max_budget": self.max_budget,
            "brackets": self.brackets,
        }

    def _rule_state(self) -> Any:
        return {
            "brackets": [halving._rule_state() for halving in self._halvings],
            "bracket": dict(self._bracket),
        }

    def _load_rule_state(self, state: Any) -> None:
        for halving, saved in zip(self._halvings, state["brackets"], strict=True):
            halving._load_rule_state(saved)
        self._bracket = {str(key): int(value) for key, value in state["bracket"].items()}


# In experiment files the rungs stop at the task's epochs unless max_budget is given.
_SCHEMA = Schema(from_task={"max_budget": "epochs"})
register_kind("pruner", SuccessiveHalving.name, SuccessiveHalving, _SCHEMA)
register_kind("pruner", Hyperband.name, Hyperband, _SCHEMA)
