from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim._genetic import GeneticAlgorithm
from morphml_dask.optim._pareto import dominates, nsga2_order
from morphml_dask.space import CellSpace, DagSpace
from morphml_dask.testing import check_optimizer, morph_space, run_optimizer, synthetic_result
from morphml_dask.trial import Trial, TrialResult

TWO_OBJECTIVES = [("val_accuracy", "maximize"), ("params", "minimize")]


def _by_generation(
    told: list[tuple[Trial, TrialResult]],
) -> dict[int, list[tuple[Trial, TrialResult]]]:
    groups: dict[int, list[tuple[Trial, TrialResult]]] = defaultdict(list)
    for trial, result in told:
        groups[int(trial.info["generation"])].append((trial, result))
    return dict(groups)


def _conv_count(trial: Trial) -> TrialResult:
    """A smooth landscape: accuracy counts 3x3 convolutions, params count all convolutions."""
    ops = CellSpace().to_ops(trial.arch)
    return TrialResult.complete(
        trial.id,
        {
            "val_accuracy": 10.0 * ops.count("nor_conv_3x3"),
            "params": 1e4 * (1 + ops.count("nor_conv_3x3") + ops.count("nor_conv_1x1")),
        },
    )


@pytest.mark.parametrize(
    ("space", "objectives"),
    [
        (CellSpace(), None),
        (CellSpace(), TWO_OBJECTIVES),
        (DagSpace(max_nodes=4), None),
        (DagSpace(max_nodes=4), TWO_OBJECTIVES),
    ],
)
def test_genetic_algorithm_keeps_the_contract(
    space: CellSpace | DagSpace, objectives: list[tuple[str, str]] | None
) -> None:
    check_optimizer(
        lambda seed: GeneticAlgorithm(
            space, population_size=8, elitism=2, max_trials=40, objectives=objectives, seed=seed
        )
    )


def test_generation_zero_is_the_spaces_samples() -> None:
    space = CellSpace()
    trials = GeneticAlgorithm(space, population_size=5, seed=4, budget=200).ask(10)
    rng = np.random.default_rng(4)
    assert [t.arch for t in trials] == [space.sample(rng) for _ in range(5)]
    assert {t.budget for t in trials} == {200}
    assert all(t.info == {"generation": 0, "parents": []} and t.parent is None for t in trials)


def test_ask_waits_until_the_generation_is_told() -> None:
    optimizer = GeneticAlgorithm(CellSpace(), population_size=6, elitism=2, seed=0)
    first = optimizer.ask(4)
    rest = optimizer.ask(100)
    assert (len(first), len(rest)) == (4, 2)
    assert optimizer.ask(1) == []
    for trial in [*first, *rest][:-1]:
        optimizer.tell(synthetic_result(trial))
        assert optimizer.ask(3) == []
        assert optimizer.generation == 0
    optimizer.tell(synthetic_result(rest[-1]))
    assert optimizer.generation == 1
    children = optimizer.ask(100)
    assert len(children) == 4  # population_size - elitism
    assert {t.info["generation"] for t in children} == {1}
    assert optimizer.ask(1) == []


def test_elitism_and_generation_sizes_match_a_simulation() -> None:
    """Each generation asks population_size - elitism children; the elites carried over are
    the best of the previous population (previous elites + its children), with their scores.
    """
    optimizer = GeneticAlgorithm(CellSpace(), population_size=8, elitism=3, seed=2)
    asked: list[Trial] = []
    told = run_optimizer(optimizer, workers=5, stop_after=8 + 5 * 4, record=asked)
    generations: dict[int, list[Trial]] = defaultdict(list)
    for trial in asked:
        generations[int(trial.info["generation"])].append(trial)
    assert {g: len(ts) for g, ts in generations.items()} == {0: 8, 1: 5, 2: 5, 3: 5, 4: 5}
    assert optimizer.generation == 5
    score = {t.id: r.metrics["val_accuracy"] for t, r in told}
    elites: list[str] = []
    for g in range(5):
        pool = elites + [t.id for t in generations[g]]
        elites = sorted(pool, key=lambda i: -score[i])[:3]  # stable: ties keep pool order
    members = optimizer.state_dict()["algorithm"]["members"]
    assert [m["trial"]["id"] for m in members] == elites
    assert [m["score"] for m in members] == [[score[i]] for i in elites]
    children = optimizer.ask(100)
    assert len(children) == 5
    assert not {t.id for t in children} & set(score)
    assert optimizer.best_trial is not None and optimizer.best_trial.id == elites[0]


def test_children_differ_from_their_parents() -> None:
    # Without crossover or mutation a child would be a copy of its parent: it is mutated.
    optimizer = GeneticAlgorithm(
        CellSpace(), population_size=6, elitism=1, crossover_rate=0.0, mutation_rate=0.0, seed=0
    )
    asked: list[Trial] = []
    run_optimizer(optimizer, max_steps=50, record=asked, stop_after=36)
    arch_of = {t.id: t.arch for t in asked}
    children = [t for t in asked if t.info["generation"] > 0]
    assert children
    for child in children:
        assert len(child.info["parents"]) == 1  # a copy has one parent
        assert child.arch.fingerprint != arch_of[child.info["parents"][0]].fingerprint


def test_tournaments_of_the_whole_population_pick_its_best() -> None:
    # A third of the trials fail; failures never beat a completed individual.
    optimizer = GeneticAlgorithm(
        CellSpace(), population_size=8, elitism=0, tournament_size=8, crossover_rate=0.0, seed=1
    )
    told = run_optimizer(optimizer, lambda t: synthetic_result(t, fail_rate=0.34), stop_after=16)
    groups = _by_generation(told)
    assert any(not r.ok for _, r in groups[0])
    completed = [(r.metrics["val_accuracy"], t.id) for t, r in groups[0] if r.ok]
    best = max(completed)[1]
    assert {tuple(t.info["parents"]) for t, _ in groups[1]} == {(best,)}


def test_multi_objective_tournaments_use_the_nsga2_order() -> None:
    optimizer = GeneticAlgorithm(
        CellSpace(),
        population_size=8,
        elitism=2,
        tournament_size=8,
        crossover_rate=0.0,
        objectives=TWO_OBJECTIVES,
        seed=3,
    )
    asked: list[Trial] = []
    told = {t.id: r for t, r in run_optimizer(optimizer, stop_after=8, record=asked)}
    assert optimizer.objectives is not None
    points = [optimizer.objectives.score(told[t.id]) for t in asked]
    order = nsga2_order(points)
    members = optimizer.state_dict()["algorithm"]["members"]
    assert [m["trial"]["id"] for m in members] == [asked[i].id for i in order[:2]]
    children = optimizer.ask(100)
    assert {tuple(t.info["parents"]) for t in children} == {(asked[order[0]].id,)}


def test_failed_individuals_are_never_elites() -> None:
    optimizer = GeneticAlgorithm(CellSpace(), population_size=6, elitism=3, seed=0)
    trials = optimizer.ask(6)
    for trial in trials[:-1]:
        optimizer.tell(TrialResult.failed(trial.id, "out of memory"))
    optimizer.tell(synthetic_result(trials[-1]))
    members = optimizer.state_dict()["algorithm"]["members"]
    assert [m["trial"]["id"] for m in members] == [trials[-1].id]
    assert len(optimizer.ask(100)) == 5


def test_best_improves_over_generation_zero() -> None:
    # synthetic_result hashes the fingerprint: elitism keeps the best found, which improves.
    optimizer = GeneticAlgorithm(CellSpace(), population_size=10, elitism=2, max_trials=50, seed=0)
    groups = _by_generation(run_optimizer(optimizer))
    best = [max(r.metrics["val_accuracy"] for _, r in groups[g]) for g in sorted(groups)]
    assert max(best[1:]) > best[0]
    assert optimizer.best_trial is not None
    assert synthetic_result(optimizer.best_trial).metrics["val_accuracy"] == max(best)


@pytest.mark.parametrize("seed", range(4))
def test_selection_climbs_a_smooth_landscape(seed: int) -> None:
    # On a landscape where neighbours have similar scores, the whole population improves.
    optimizer = GeneticAlgorithm(
        CellSpace(), population_size=10, elitism=2, max_trials=58, seed=seed
    )
    groups = _by_generation(run_optimizer(optimizer, _conv_count))
    accuracy = {g: [r.metrics["val_accuracy"] for _, r in groups[g]] for g in groups}
    last = max(groups)
    assert last == 6
    assert np.mean(accuracy[last]) > np.mean(accuracy[0]) + 10.0
    assert max(max(a) for a in accuracy.values()) > max(accuracy[0])


def test_multi_objective_pareto_front() -> None:
    optimizer = GeneticAlgorithm(
        CellSpace(), population_size=10, objectives=TWO_OBJECTIVES, max_trials=50, seed=0
    )
    told = run_optimizer(optimizer, lambda t: synthetic_result(t, fail_rate=0.2))
    front = optimizer.pareto_front()
    assert len(front) > 1
    score = {t.id: (r.metrics["val_accuracy"], -r.metrics["params"]) for t, r in told if r.ok}
    expected = {i for i in score if not any(dominates(score[j], score[i]) for j in score)}
    assert {t.id for t in front} == expected
    for a in front:
        assert not any(dominates(score[b.id], score[a.id]) for b in front)
    assert optimizer.best_trial is not None
    assert optimizer.best_trial.id in expected  # best val_accuracy is on the front


def test_single_objective_pareto_front_is_the_best_trial() -> None:
    optimizer = GeneticAlgorithm(CellSpace(), population_size=4, elitism=1, seed=0)
    assert optimizer.pareto_front() == []
    run_optimizer(optimizer, stop_after=6)
    assert optimizer.pareto_front() == [optimizer.best_trial]


def test_state_is_portable_json_with_failures() -> None:
    optimizer = GeneticAlgorithm(
        CellSpace(), population_size=6, elitism=1, objectives=TWO_OBJECTIVES, seed=0
    )
    run_optimizer(optimizer, lambda t: synthetic_result(t, fail_rate=0.5), stop_after=9)
    state = optimizer.state_dict()
    text = json.dumps(state, allow_nan=False)
    assert '"-inf"' in text
    resumed = GeneticAlgorithm(CellSpace(), population_size=3, elitism=0, seed=7)
    resumed.load_state_dict(json.loads(text))
    assert resumed.state_dict() == state
    assert (resumed.population_size, resumed.elitism) == (6, 1)  # the checkpoint decides
    assert resumed.pareto_front() == optimizer.pareto_front()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"population_size": 1}, r"(?s)invalid population_size.*integer >= 2.*received: 1"),
        ({"population_size": 4.0}, r"(?s)invalid population_size.*received: 4\.0"),
        (
            {"population_size": 4, "elitism": 4},
            r"(?s)invalid elitism.*integer from 0 to 3.*received: 4.*elitism=2",
        ),
        ({"elitism": -1}, r"(?s)invalid elitism.*integer from 0 to 19.*received: -1"),
        (
            {"population_size": 4, "tournament_size": 5},
            r"(?s)invalid tournament_size.*from 1 to 4.*received: 5.*tournament_size=3",
        ),
        ({"tournament_size": 0}, r"(?s)invalid tournament_size.*received: 0"),
        ({"crossover_rate": 1.5}, r"(?s)invalid crossover_rate.*probability from 0 to 1.*1\.5"),
        ({"mutation_rate": True}, r"(?s)invalid mutation_rate.*received: True"),
        ({"budget": 0}, r"(?s)invalid budget.*integer >= 1.*received: 0"),
        ({"objectives": []}, r"(?s)no objectives given"),
        ({"objectives": [("params", "down")]}, r"(?s)invalid objective.*'down'"),
        (
            {"objectives": [("params", "minimize"), ("latency", "minimize")]},
            r"(?s)not one of the objectives.*\[\['params', 'minimize'\], \['latency', 'minimize'\]\]"
            r".*objective='val_accuracy', direction='maximize'"
            r".*objective='params', direction='minimize'",
        ),
        ({"max_trials": 0}, r"(?s)invalid max_trials.*positive integer or None"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(OptimizerError, match=message):
        GeneticAlgorithm(CellSpace(), **kwargs)  # type: ignore[arg-type]


def test_objective_may_name_any_of_the_objectives() -> None:
    optimizer = GeneticAlgorithm(
        CellSpace(), objectives=TWO_OBJECTIVES, objective="params", direction="minimize"
    )
    assert optimizer.objective.metric == "params"


def test_inheriting_children_start_from_their_first_parent_and_survive_a_checkpoint() -> None:
    from morphml_dask.space import Morphism

    space = morph_space()
    settings = {
        "population_size": 6,
        "elitism": 1,
        "crossover_rate": 0.5,
        "budget": 4,
        "inherit_weights": True,
        "child_budget": 1,
        "seed": 3,
    }
    ga = GeneticAlgorithm(space, **settings)  # type: ignore[arg-type]
    first = ga.ask(6)
    assert all(not t.inherits and t.budget == 4 for t in first)
    for score, trial in enumerate(first):
        ga.tell(TrialResult.complete(trial.id, {"val_accuracy": score / 10}))
    state = ga.state_dict()
    again = GeneticAlgorithm(space, **settings)  # type: ignore[arg-type]
    again.load_state_dict(state)
    children = ga.ask(5)
    assert children == again.ask(5), "a checkpoint lost what the queued children inherit"
    assert all(c.inherits and c.budget == 1 and c.parent == c.info["parents"][0] for c in children)
    assert {c.parent_budget for c in children} == {4}
    morphed = [c for c in children if "morphism" in c.info]
    assert morphed, "no child was a morphism of its parent"
    for child in morphed:
        assert child.mutation == Morphism.from_dict(child.info["morphism"]).label
    assert {c.info["mutation"] for c in children} - {m.mutation for m in morphed} <= {
        "crossover",
        "mutate",
    }
