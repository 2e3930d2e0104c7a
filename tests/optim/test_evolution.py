from __future__ import annotations

import numpy as np
import pytest

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim import RegularizedEvolution
from morphml_dask.space import ArchGraph, Candidate, CellSpace, DagSpace
from morphml_dask.testing import check_optimizer, morph_space, run_optimizer, synthetic_result
from morphml_dask.trial import TrialResult

# Room to widen a convolution and grow a kernel: every morphism can make a child.
LAMARCKIAN_SPACE = morph_space()


@pytest.mark.parametrize("space", [CellSpace(), DagSpace(max_nodes=4)])
def test_regularized_evolution_keeps_the_contract(space: CellSpace | DagSpace) -> None:
    check_optimizer(
        lambda seed: RegularizedEvolution(
            space, population_size=6, sample_size=3, max_trials=40, seed=seed
        )
    )


def _tournament_child(
    space: CellSpace, history: list[tuple[Candidate, float]], rng: np.random.Generator
) -> ArchGraph:
    """The paper's step for P=5, S=2: mutate the best of 2 of the 5 latest results."""
    population = history[-5:]
    picks = sorted(int(i) for i in rng.choice(5, size=2, replace=False))
    parent = max(picks, key=lambda i: population[i][1])
    return space.mutate(population[parent][0], rng)


def test_sequential_run_is_the_papers_algorithm() -> None:
    """P random architectures, then each child is a one-edge mutation of the best of S
    members sampled from the P most recent results (predicted equals actual)."""
    space = CellSpace()
    optimizer = RegularizedEvolution(space, population_size=5, sample_size=2, seed=1)
    rng = np.random.default_rng(1)
    history: list[tuple[Candidate, float]] = []
    for step in range(40):
        (trial,) = optimizer.ask(1)
        expected = space.sample(rng) if step < 5 else _tournament_child(space, history, rng)
        assert trial.arch == expected, f"step {step}"
        result = synthetic_result(trial)
        optimizer.tell(result)
        history.append((trial.arch, result.metrics["val_accuracy"]))


def test_failures_and_infeasible_results_stay_out_of_the_population() -> None:
    space = CellSpace()
    optimizer = RegularizedEvolution(
        space, population_size=3, sample_size=2, constraints={"params": 50_000}, seed=0
    )
    for _ in range(6):
        (trial,) = optimizer.ask(1)
        optimizer.tell(TrialResult.failed(trial.id, "boom"))
    for _ in range(6):
        (trial,) = optimizer.ask(1)
        optimizer.tell(TrialResult.complete(trial.id, {"val_accuracy": 90.0, "params": 1e6}))
    # Nothing feasible was told: the search is still sampling at random.
    assert optimizer.state_dict()["algorithm"]["population"] == []
    (trial,) = optimizer.ask(1)
    optimizer.tell(TrialResult.complete(trial.id, {"val_accuracy": 50.0, "params": 1e4}))
    assert len(optimizer.state_dict()["algorithm"]["population"]) == 1


def test_minimization_prefers_small_values() -> None:
    optimizer = RegularizedEvolution(
        CellSpace(), objective="params", direction="minimize", max_trials=60, seed=2
    )
    told = run_optimizer(optimizer, workers=1)
    best = optimizer.best_trial
    assert best is not None
    assert min(r.metrics["params"] for _, r in told) == synthetic_result(best).metrics["params"]


def test_async_workers_keep_busy_before_the_population_is_full() -> None:
    optimizer = RegularizedEvolution(CellSpace(), population_size=10, seed=0)
    assert len(optimizer.ask(50)) == 50


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"population_size": 1},
            r"(?s)invalid population_size.*an integer >= 2.*received: 1 \(int\)",
        ),
        ({"sample_size": 11}, r"(?s)invalid sample_size.*from 1 to population_size \(10\).*11"),
    ],
)
def test_bad_settings(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(OptimizerError, match=message):
        RegularizedEvolution(CellSpace(), **kwargs)  # type: ignore[arg-type]


MULTI = [("val_accuracy", "maximize"), ("params", "minimize")]


@pytest.mark.parametrize("space", [CellSpace(), DagSpace(max_nodes=4)])
def test_multi_objective_evolution_keeps_the_contract(space: CellSpace | DagSpace) -> None:
    check_optimizer(
        lambda seed: RegularizedEvolution(
            space, population_size=6, objectives=MULTI, max_trials=40, seed=seed
        )
    )


def test_multi_objective_front_is_the_non_dominated_set() -> None:
    optimizer = RegularizedEvolution(CellSpace(), objectives=MULTI, max_trials=200, seed=0)
    told = run_optimizer(optimizer, lambda t: synthetic_result(t, fail_rate=0.1), workers=4)
    points = {
        t.arch.fingerprint: (r.metrics["val_accuracy"], -r.metrics["params"])
        for t, r in told
        if r.ok
    }

    def dominated(p: tuple[float, float]) -> bool:
        return any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points.values())

    expected = {p for p in points.values() if not dominated(p)}
    front = optimizer.pareto_front()
    assert len(front) > 1
    assert {points[t.arch.fingerprint] for t in front} == expected


@pytest.mark.parametrize("space", [CellSpace(), DagSpace(max_nodes=4)])
def test_greedy_start_and_avoid_repeats_keep_the_contract(space: CellSpace | DagSpace) -> None:
    check_optimizer(
        lambda seed: RegularizedEvolution(
            space,
            population_size=6,
            sample_size=3,
            greedy_start=12,
            avoid_repeats=True,
            max_trials=40,
            seed=seed,
        )
    )


def test_greedy_start_climbs_from_the_best_result_then_runs_the_papers_algorithm() -> None:
    """Predicted equals actual: one random cell, then mutations of the best result told so
    far until greedy_start results are back, then tournaments over the last P results."""
    space = CellSpace()
    optimizer = RegularizedEvolution(
        space, population_size=5, sample_size=2, greedy_start=8, seed=3
    )
    rng = np.random.default_rng(3)
    history: list[tuple[Candidate, float]] = []
    for step in range(40):
        (trial,) = optimizer.ask(1)
        if not history:
            expected = space.sample(rng)
        elif len(history) < 8:
            leader = max(history, key=lambda member: member[1])  # ties: the earlier
            expected = space.mutate(leader[0], rng)
        else:
            expected = _tournament_child(space, history, rng)
        assert trial.arch == expected, f"step {step}"
        result = synthetic_result(trial)
        optimizer.tell(result)
        history.append((trial.arch, result.metrics["val_accuracy"]))


def test_greedy_start_waits_for_a_first_result_and_ignores_failures() -> None:
    space = CellSpace()
    optimizer = RegularizedEvolution(space, greedy_start=20, seed=0)
    first = optimizer.ask(10)  # nothing is back: every one is random
    optimizer.tell(TrialResult.failed(first[0].id, "boom"))
    optimizer.tell(TrialResult.complete(first[1].id, {"val_accuracy": 50.0}))
    optimizer.tell(TrialResult.complete(first[2].id, {"val_accuracy": 70.0}))
    leader = space.to_ops(first[2].arch)
    for child in optimizer.ask(8):
        ops = space.to_ops(child.arch)
        assert sum(a != b for a, b in zip(ops, leader, strict=True)) == 1


def test_avoid_repeats_draws_new_children_of_the_same_parent() -> None:
    space = CellSpace()
    children: dict[bool, set[str]] = {}
    for avoid, count in ((True, 12), (False, 24)):
        optimizer = RegularizedEvolution(space, greedy_start=50, avoid_repeats=avoid, seed=4)
        (first,) = optimizer.ask(1)
        optimizer.tell(TrialResult.complete(first.id, {"val_accuracy": 60.0}))
        children[avoid] = {t.arch.fingerprint for t in optimizer.ask(count)}
        children[avoid].add(first.arch.fingerprint)
    # 12 children of one cell, all new, and the parent.
    assert len(children[True]) == 13
    # A cell has 24 one-edge neighbours: 24 children drawn without the option repeat some.
    assert len(children[False]) < 25


def test_avoid_repeats_remembers_across_a_checkpoint() -> None:
    space = CellSpace()
    optimizer = RegularizedEvolution(space, greedy_start=50, avoid_repeats=True, seed=5)
    (first,) = optimizer.ask(1)
    optimizer.tell(TrialResult.complete(first.id, {"val_accuracy": 60.0}))
    before = [t.arch.fingerprint for t in optimizer.ask(6)]
    resumed = RegularizedEvolution(space, greedy_start=50, avoid_repeats=True, seed=5)
    resumed.load_state_dict(optimizer.state_dict())
    after = [t.arch.fingerprint for t in resumed.ask(6)]
    assert len(set(before + after + [first.arch.fingerprint])) == 13


def test_checkpoints_from_before_the_options_still_load() -> None:
    optimizer = RegularizedEvolution(CellSpace(), population_size=3, max_trials=20, seed=6)
    run_optimizer(optimizer, workers=2)
    state = optimizer.state_dict()
    for key in ("fed", "leader", "asked_fingerprints"):
        del state["algorithm"][key]
    resumed = RegularizedEvolution(CellSpace(), population_size=3, seed=6)
    resumed.load_state_dict(state)
    assert resumed.finished
    assert resumed.state_dict()["algorithm"]["fed"] == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"greedy_start": -1}, r"(?s)invalid greedy_start.*an integer >= 0.*received: -1 \(int\)"),
        ({"greedy_start": True}, r"(?s)invalid greedy_start.*received: True"),
        ({"greedy_start": 2.5}, r"(?s)invalid greedy_start.*received: 2.5"),
        ({"avoid_repeats": "yes"}, r"(?s)invalid avoid_repeats.*True or False.*'yes'"),
        (
            {"greedy_start": 10, "objectives": MULTI},
            r"(?s)greedy_start needs a single objective.*drop greedy_start",
        ),
    ],
)
def test_bad_strategy_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(OptimizerError, match=message):
        RegularizedEvolution(CellSpace(), **kwargs)  # type: ignore[arg-type]


def test_inheriting_children_name_their_parent_and_train_the_child_budget() -> None:
    from morphml_dask.space import Morphism

    space = LAMARCKIAN_SPACE
    rea = RegularizedEvolution(
        space,
        population_size=3,
        sample_size=2,
        budget=6,
        inherit_weights=True,
        child_budget=2,
        seed=1,
    )
    first = rea.ask(3)
    assert all(not t.inherits and t.parent is None and t.budget == 6 for t in first)
    for score, trial in enumerate(first):
        rea.tell(TrialResult.complete(trial.id, {"val_accuracy": score / 10}))
    children = rea.ask(20)
    assert all(c.inherits and c.parent in {t.id for t in first} for c in children)
    assert all((c.budget, c.parent_budget, c.epochs_trained) == (2, 6, 2) for c in children)
    for child in children:
        morphism = Morphism.from_dict(child.info["morphism"])
        assert child.info["mutation"] == morphism.label and morphism.exact
        assert space.contains(child.arch) and child.mutation == morphism.label


def test_child_budget_without_inheritance_is_refused() -> None:
    with pytest.raises(
        OptimizerError,
        match=r"(?s)child_budget needs inherit_weights.*received: child_budget=2 with "
        r"inherit_weights=False.*fix: pass inherit_weights=True",
    ):
        RegularizedEvolution(CellSpace(), child_budget=2)
    with pytest.raises(
        OptimizerError, match=r"(?s)invalid child_budget.*expected: an integer >= 1"
    ):
        RegularizedEvolution(CellSpace(), inherit_weights=True, child_budget=0)


def test_a_lamarckian_search_keeps_a_pareto_front_of_accuracy_and_size() -> None:
    """LEMONADE's trade-off: children inherit, and the front holds the trials no other
    beats on both accuracy and parameter count."""
    space = LAMARCKIAN_SPACE
    rea = RegularizedEvolution(
        space,
        population_size=4,
        sample_size=2,
        budget=4,
        inherit_weights=True,
        child_budget=1,
        objectives=[("val_accuracy", "maximize"), ("params", "minimize")],
        max_trials=30,
        seed=0,
    )
    rng = np.random.default_rng(0)
    scores: dict[str, tuple[float, float]] = {}
    asked = []
    while not rea.finished:
        for trial in rea.ask(2):
            asked.append(trial)
            accuracy, params = float(rng.uniform(50, 99)), float(rng.integers(1_000, 100_000))
            scores[trial.id] = (accuracy, params)
            rea.tell(TrialResult.complete(trial.id, {"val_accuracy": accuracy, "params": params}))
    assert sum(t.inherits for t in asked) == 26  # all but the 4 sampled
    front = {t.id for t in rea.pareto_front()}
    beaten = {
        a
        for a, (acc_a, size_a) in scores.items()
        for acc_b, size_b in scores.values()
        if acc_b >= acc_a and size_b <= size_a and (acc_b, size_b) != (acc_a, size_a)
    }
    assert front == set(scores) - beaten
    assert any(t.inherits for t in asked if t.id in front)
