from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim._asha import ASHA, rung_budgets
from morphml_dask.space import CellSpace, DagSpace
from morphml_dask.testing import check_optimizer, run_optimizer, synthetic_result
from morphml_dask.trial import Trial, TrialResult

# -- the contract --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "kwargs"),
    [
        (CellSpace(), {"min_budget": 1, "max_budget": 9, "eta": 3}),
        (CellSpace(), {"budgets": (12, 200), "eta": 3}),
        (CellSpace(), {"min_budget": 1, "max_budget": 9, "eta": 3, "brackets": 2}),
        (DagSpace(max_nodes=4), {"min_budget": 1, "max_budget": 9, "eta": 3}),
    ],
    ids=["cell", "nb201-budgets", "two-brackets", "dag"],
)
def test_asha_keeps_the_contract(space: CellSpace | DagSpace, kwargs: dict[str, Any]) -> None:
    check_optimizer(lambda seed: ASHA(space, max_trials=40, seed=seed, **kwargs))


# -- predicted equals actual: a plain transcription of the paper ---------------------------


class PaperASHA:
    """Algorithm 2 of Li et al. (MLSys 2020) as written: lists, a full sort on every call.

    A rung holds ``(-score, order, trial_id)`` for every result told to it, so that sorting
    it ranks the best first and equal scores by trial order (the earlier first); ``get_job``
    returns ``(parent id or None, bracket, rung)``. With several brackets, promotions are
    looked for from the highest rung down, lowest bracket first, and new configurations
    take the brackets in turn.
    """

    def __init__(self, budgets: tuple[int, ...], eta: int, brackets: int) -> None:
        self.top = len(budgets) - 1
        self.eta = eta
        self.brackets = brackets
        self.rungs: dict[tuple[int, int], list[tuple[float, int, str]]] = {
            (s, k): [] for s in range(brackets) for k in range(s, self.top + 1)
        }
        self.promoted: set[str] = set()
        self.next_bracket = 0

    def get_job(self) -> tuple[str | None, int, int]:
        for k in range(self.top - 1, -1, -1):
            for s in range(self.brackets):
                if s > k:
                    continue
                rung = self.rungs[s, k]
                candidates = sorted(rung)[: len(rung) // self.eta]
                promotable = [
                    c for c in candidates if c[2] not in self.promoted and c[0] != math.inf
                ]
                if promotable:
                    self.promoted.add(promotable[0][2])
                    return promotable[0][2], s, k + 1
        s = self.next_bracket
        self.next_bracket = (s + 1) % self.brackets
        return None, s, s

    def update(self, trial_id: str, bracket: int, rung: int, score: float) -> None:
        self.rungs[bracket, rung].append((-score, int(trial_id[1:]), trial_id))


def _scripted_result(
    trial: Trial, rng: np.random.Generator, ties: bool, fail_rate: float
) -> TrialResult:
    fate = rng.random()
    if fate < fail_rate:
        return TrialResult.failed(trial.id, "scripted failure")
    if fate < fail_rate + 0.03:
        return TrialResult.complete(trial.id, {"params": 1.0})  # objective missing
    value = float(rng.integers(0, 6)) if ties else float(rng.normal())
    return TrialResult.complete(trial.id, {"loss": value})


def _paper_score(result: TrialResult, direction: str) -> float:
    if not result.ok or "loss" not in result.metrics:
        return -math.inf
    value = result.metrics["loss"]
    return value if direction == "maximize" else -value


def _resumed(asha: ASHA) -> ASHA:
    state = json.loads(json.dumps(asha.state_dict(), allow_nan=False))
    clone = ASHA(CellSpace(), objective="loss", seed=12345)
    clone.load_state_dict(state)
    return clone


MIRROR_CASES = [
    # eta, ladder, brackets, workers, tied scores, direction
    (2, {"min_budget": 1, "max_budget": 27}, 1, 7, True, "maximize"),
    (3, {"min_budget": 1, "max_budget": 27}, 1, 1, False, "maximize"),
    (3, {"budgets": (12, 200)}, 1, 16, True, "maximize"),
    (4, {"min_budget": 1, "max_budget": 100}, 3, 5, True, "minimize"),
    (3, {"min_budget": 1, "max_budget": 81}, 4, 9, False, "maximize"),
    (2, {"budgets": (12, 200)}, 2, 3, True, "minimize"),
    (4, {"min_budget": 2, "max_budget": 27}, 1, 32, False, "maximize"),
]
MIRROR_TELLS = 2000


@pytest.mark.parametrize(
    ("eta", "ladder", "brackets", "workers", "ties", "direction"), MIRROR_CASES
)
def test_asha_mirrors_the_paper(
    eta: int, ladder: dict[str, Any], brackets: int, workers: int, ties: bool, direction: str
) -> None:
    """Every decision (promote which trial to which rung, or a new configuration in which
    bracket) matches the plain transcription, with out-of-order results, ties, failures and
    a checkpoint round trip halfway."""
    asha = ASHA(
        CellSpace(), eta=eta, brackets=brackets, objective="loss", direction=direction,
        seed=eta, **ladder,
    )  # fmt: skip
    paper = PaperASHA(asha.budgets, eta, brackets)
    rng = np.random.default_rng(eta * 100 + workers)
    archs: dict[str, Any] = {}
    running: list[Trial] = []
    decisions: list[tuple[str | None, int, int]] = []
    for step in range(MIRROR_TELLS):
        if step == MIRROR_TELLS // 2:
            asha = _resumed(asha)
        asked = asha.ask(workers - len(running))
        assert len(asked) == workers - len(running), "ASHA must never make a worker wait"
        for trial in asked:
            expected = paper.get_job()
            actual = (trial.parent, trial.info["bracket"], trial.rung)
            assert actual == expected, f"decision {len(decisions)} differs from the paper"
            assert trial.budget == asha.budgets[trial.rung]
            if trial.parent is not None:
                assert trial.arch == archs[trial.parent]
                assert trial.parent_budget == asha.budgets[trial.rung - 1]
            archs[trial.id] = trial.arch
            decisions.append(actual)
        running.extend(asked)
        for _ in range(min(len(running), int(rng.integers(1, 4)))):  # bursts, out of order
            trial = running.pop(int(rng.integers(len(running))))
            # A bad start and a bad spell: failures fill whole top fractions of rungs.
            bad = step < MIRROR_TELLS // 10 or 1000 <= step < 1100
            result = _scripted_result(trial, rng, ties, fail_rate=0.8 if bad else 0.12)
            asha.tell(result)
            paper.update(
                trial.id, trial.info["bracket"], trial.rung, _paper_score(result, direction)
            )
    promotions = [d for d in decisions if d[0] is not None]
    assert len(promotions) > MIRROR_TELLS // (2 * eta), "too few promotions were exercised"
    assert {d[2] for d in promotions} == set(range(1, len(asha.budgets)))
    assert {d[1] for d in decisions} == set(range(brackets))


# -- behaviour, by hand --------------------------------------------------------------------


def _tell(asha: ASHA, trial: Trial, value: float | None) -> None:
    if value is None:
        asha.tell(TrialResult.failed(trial.id, "boom"))
    else:
        asha.tell(TrialResult.complete(trial.id, {"val_accuracy": value}))


def test_the_top_third_is_promoted_as_soon_as_it_exists() -> None:
    asha = ASHA(CellSpace(), min_budget=1, max_budget=9, eta=3, seed=0)
    a, b, c = asha.ask(3)
    _tell(asha, a, 0.5)
    _tell(asha, b, 0.9)
    (d,) = asha.ask(1)
    assert (d.parent, d.rung) == (None, 0), "two results: floor(2/3) = 0 candidates"
    _tell(asha, c, 0.7)
    (promotion,) = asha.ask(1)
    assert (promotion.parent, promotion.rung, promotion.budget) == (b.id, 1, 3)
    assert (promotion.parent_budget, promotion.arch) == (1, b.arch)
    assert promotion.info == {"bracket": 0}
    (e,) = asha.ask(1)
    assert e.parent is None, "b was marked promoted when asked, not when told"


def test_ties_go_to_the_earlier_trial_and_failures_are_never_promoted() -> None:
    asha = ASHA(CellSpace(), min_budget=1, max_budget=9, eta=3, seed=0)
    trials = asha.ask(6)
    for trial in trials[:3]:
        _tell(asha, trial, None)
    assert asha.ask(1)[0].parent is None, "failures fill the top third but are not promoted"
    for trial, value in zip(trials[3:], (0.4, 0.8, 0.8), strict=True):
        _tell(asha, trial, value)
    assert asha.ask(1)[0].parent == trials[4].id, "equal scores: the earlier trial wins"


def test_a_later_better_result_is_promoted_past_earlier_promotions() -> None:
    asha = ASHA(CellSpace(), min_budget=1, max_budget=9, eta=3, seed=0)
    trials = asha.ask(4)
    for trial, value in zip(trials[:3], (0.1, 0.5, 0.2), strict=True):
        _tell(asha, trial, value)
    assert asha.ask(1)[0].parent == trials[1].id
    _tell(asha, trials[3], 0.9)  # 4 results: floor(4/3) = 1 candidate, now trials[3]
    assert asha.ask(1)[0].parent == trials[3].id


def test_promotions_carry_parent_and_parent_budget() -> None:
    asked: list[Trial] = []
    run_optimizer(ASHA(CellSpace(), budgets=[12, 200], max_trials=60, seed=1), record=asked)
    by_id = {t.id: t for t in asked}
    promoted = [t for t in asked if t.parent is not None]
    assert promoted, "no promotion happened"
    for trial in promoted:
        parent = by_id[trial.parent]  # type: ignore[index]
        assert (trial.rung, trial.budget, trial.parent_budget) == (1, 200, 12)
        assert (parent.rung, parent.budget, parent.arch) == (0, 12, trial.arch)
    for trial in asked:
        if trial.parent is None:
            assert (trial.rung, trial.budget, trial.parent_budget) == (0, 12, 0)


def test_brackets_start_new_configurations_in_turn() -> None:
    asha = ASHA(CellSpace(), min_budget=1, max_budget=27, eta=3, brackets=3, seed=0)
    trials = asha.ask(6)
    assert [t.info["bracket"] for t in trials] == [0, 1, 2, 0, 1, 2]
    assert [(t.rung, t.budget) for t in trials[:3]] == [(0, 1), (1, 3), (2, 9)]


def test_asha_never_makes_a_worker_wait() -> None:
    asha = ASHA(CellSpace(), min_budget=1, max_budget=9, eta=3, max_trials=100, seed=0)
    assert len(asha.ask(60)) == 60, "nothing told yet: all new configurations"
    assert len(asha.ask(60)) == 40, "max_trials caps the rest"
    assert asha.ask(1) == []


def test_checkpoint_is_strict_json_with_failures_and_infinite_scores() -> None:
    asha = ASHA(CellSpace(), min_budget=1, max_budget=9, eta=3, seed=0)
    trials = asha.ask(4)
    _tell(asha, trials[0], None)
    _tell(asha, trials[1], 1e300)
    _tell(asha, trials[2], -math.inf)
    _tell(asha, trials[3], 0.5)
    state = json.loads(json.dumps(asha.state_dict(), allow_nan=False))
    resumed = ASHA(CellSpace(), seed=7)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    assert (resumed.budgets, resumed.eta) == ((1, 3, 9), 3)
    assert resumed.ask(1)[0].parent == trials[1].id
    run_optimizer(resumed, lambda t: synthetic_result(t, fail_rate=0.3), stop_after=50)


@pytest.mark.parametrize(
    ("args", "budgets"),
    [
        ((1, 27, 3), (1, 3, 9, 27)),
        ((1, 9, 3), (1, 3, 9)),
        ((1, 100, 3), (1, 3, 9, 27, 81, 100)),
        ((2, 50, 2), (2, 4, 8, 16, 32, 50)),
        ((1, 200, 4), (1, 4, 16, 64, 200)),
        ((5, 5, 3), (5,)),
    ],
)
def test_rung_budgets(args: tuple[int, int, int], budgets: tuple[int, ...]) -> None:
    assert rung_budgets(*args) == budgets
    min_budget, max_budget, eta = args
    asha = ASHA(CellSpace(), min_budget=min_budget, max_budget=max_budget, eta=eta)
    assert asha.budgets == budgets


def test_explicit_budgets_replace_the_ladder() -> None:
    asha = ASHA(CellSpace(), min_budget=1, max_budget=27, eta=3, budgets=[12, 200])
    assert asha.budgets == (12, 200)
    assert asha.ask(1)[0].budget == 12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"eta": 1},
            r"(?s)invalid eta.*an integer >= 2 \(the reduction factor\).*received: 1 \(int\)\n.*fix: pass eta=3",
        ),
        ({"eta": 2.5}, r"(?s)invalid eta.*received: 2\.5"),
        (
            {"min_budget": 0},
            r"(?s)invalid min_budget.*an integer >= 1.*received: 0 \(int\)\n.*min_budget=1",
        ),
        (
            {"min_budget": 3, "max_budget": 2},
            r"(?s)invalid max_budget.*at least min_budget \(3\).*received: 2 \(int\)\n.*max_budget=81",
        ),
        (
            {"budgets": [200, 12]},
            r"(?s)invalid budgets.*strictly increasing list of positive integers.*received: \[200, 12\] \(list\)\n.*budgets=None",
        ),
        ({"budgets": [12, 12]}, r"(?s)invalid budgets.*received: \[12, 12\]"),
        ({"budgets": []}, r"(?s)invalid budgets.*received: \[\]"),
        ({"budgets": [0, 5]}, r"(?s)invalid budgets.*received: \[0, 5\]"),
        ({"budgets": [1.5, 5]}, r"(?s)invalid budgets.*received: \[1\.5, 5\]"),
        (
            {"brackets": 0},
            r"(?s)invalid brackets.*from 1 to the number of rungs, 4 \(budgets \[1, 3, 9, 27\]\).*received: 0 \(int\)\n.*brackets=1 for plain ASHA, or at most brackets=4",
        ),
        (
            {"budgets": (12, 200), "brackets": 3},
            r"(?s)invalid brackets.*from 1 to the number of rungs, 2.*received: 3",
        ),
        ({"direction": "up"}, r"(?s)invalid direction.*'up'"),
        ({"max_trials": 0}, r"(?s)invalid max_trials.*received: 0"),
    ],
)
def test_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(OptimizerError, match=message):
        ASHA(CellSpace(), **kwargs)


def test_checkpoint_of_another_optimizer_is_refused() -> None:
    state = ASHA(CellSpace(), seed=0).state_dict()
    state["optimizer"] = "random-search"
    with pytest.raises(OptimizerError, match=r"(?s)another optimizer.*'asha' version 1"):
        ASHA(CellSpace()).load_state_dict(state)
