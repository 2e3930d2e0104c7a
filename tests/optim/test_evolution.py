from __future__ import annotations

import numpy as np
import pytest

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim import RegularizedEvolution
from morphml_dask.space import ArchGraph, CellSpace, DagSpace
from morphml_dask.testing import check_optimizer, run_optimizer, synthetic_result
from morphml_dask.trial import TrialResult


@pytest.mark.parametrize("space", [CellSpace(), DagSpace(max_nodes=4)])
def test_regularized_evolution_keeps_the_contract(space: CellSpace | DagSpace) -> None:
    check_optimizer(
        lambda seed: RegularizedEvolution(
            space, population_size=6, sample_size=3, max_trials=40, seed=seed
        )
    )


def test_sequential_run_is_the_papers_algorithm() -> None:
    """P random architectures, then each child is a one-edge mutation of the best of S
    members sampled from the P most recent results (predicted equals actual)."""
    space = CellSpace()
    optimizer = RegularizedEvolution(space, population_size=5, sample_size=2, seed=1)
    rng = np.random.default_rng(1)
    history: list[tuple[ArchGraph, float]] = []
    for step in range(40):
        (trial,) = optimizer.ask(1)
        if step < 5:
            expected = space.sample(rng)
        else:
            population = history[-5:]
            picks = sorted(int(i) for i in rng.choice(5, size=2, replace=False))
            parent = max(picks, key=lambda i: population[i][1])
            expected = space.mutate(population[parent][0], rng)
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
        ({"population_size": 1}, r"(?s)invalid population_size.*at least 2.*received: 1"),
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
