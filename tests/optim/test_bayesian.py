"""`BayesianOptimization`: the contract, random start, batches and believers, failures,
the bounded training set, settings, and search quality on NAS-Bench-201."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim import RandomSearch, _bayesian
from morphml_dask.optim._base import BaseOptimizer
from morphml_dask.optim._bayesian import BayesianOptimization
from morphml_dask.space import ArchGraph, CellSpace, DagSpace
from morphml_dask.tasks import NB201TabularTask
from morphml_dask.testing import check_optimizer, run_optimizer, synthetic_result
from morphml_dask.trial import Trial, TrialResult


def _tell_all(optimizer: BaseOptimizer, trials: list[Trial], fail_rate: float = 0.0) -> None:
    for trial in trials:
        optimizer.tell(synthetic_result(trial, fail_rate=fail_rate))


@pytest.mark.parametrize(
    ("space", "acquisition"),
    [(CellSpace(), "ei"), (DagSpace(max_nodes=4), "ei"), (CellSpace(), "ucb")],
)
def test_bayesian_optimization_keeps_the_contract(
    space: CellSpace | DagSpace, acquisition: str
) -> None:
    check_optimizer(
        lambda seed: BayesianOptimization(
            space, n_initial=5, acquisition=acquisition, max_trials=30, seed=seed
        )
    )


def test_the_first_trials_are_samples_and_never_wait() -> None:
    optimizer = BayesianOptimization(CellSpace(), n_initial=5, budget=200, seed=4)
    first = optimizer.ask(8)  # more than n_initial while nothing is told: all random
    assert first[0].arch == CellSpace().sample(np.random.default_rng(4))
    assert len({t.arch.fingerprint for t in first}) == 8
    assert {t.budget for t in first} == {200}
    _tell_all(optimizer, first[:4])
    assert len(optimizer.ask(4)) == 4  # 4 told, 4 running: random still, never waiting


def test_a_batch_after_the_random_start_is_eight_new_architectures() -> None:
    optimizer = BayesianOptimization(CellSpace(), n_initial=5, seed=0)
    start = optimizer.ask(5)
    _tell_all(optimizer, start)
    batch = optimizer.ask(8)
    fingerprints = {t.arch.fingerprint for t in batch}
    assert len(fingerprints) == 8
    assert not fingerprints & {t.arch.fingerprint for t in start}
    assert [t.id for t in batch] == [f"t{i:06d}" for i in range(6, 14)]


def test_pending_trials_are_kriging_believers() -> None:
    optimizer = BayesianOptimization(CellSpace(), n_initial=5, seed=1)
    _tell_all(optimizer, optimizer.ask(5))
    pending = np.stack([CellSpace().encode(t.arch) for t in optimizer.ask(4)])
    believing, _ = optimizer._surrogate()
    scores = _bayesian._normal_scores(np.array(optimizer._y))
    told_only = _bayesian._GaussianProcess.fit(np.stack(optimizer._x), scores)
    mean, std = believing.predict(pending)
    mean_told, std_told = told_only.predict(pending)
    np.testing.assert_allclose(mean, mean_told, atol=1e-9)  # believed at the model's mean
    assert np.all(std < 0.3) and np.all(std < std_told - 0.1)  # and no longer uncertain


def test_failures_count_as_the_worst_score_and_the_state_stays_json() -> None:
    optimizer = BayesianOptimization(CellSpace(), n_initial=3, seed=2)
    _tell_all(optimizer, optimizer.ask(3), fail_rate=1.0)
    assert len(optimizer.ask(3)) == 3  # only failures told: a flat model, still asking
    _tell_all(optimizer, optimizer.pending)
    model, _ = optimizer._surrogate()
    # The three failures tie with the worst completed trial, below the others.
    assert sorted(model.target.tolist()).count(model.target.min()) == 4
    assert np.all(model.target[:3] == model.target.min())
    state = optimizer.state_dict()
    json.dumps(state, allow_nan=False)
    assert state["algorithm"]["scores"][:3] == [None, None, None]
    assert len(state["algorithm"]["top"]) == 3


def test_the_training_set_keeps_the_best_half_and_the_most_recent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_bayesian, "_MAX_POINTS", 20)
    optimizer = BayesianOptimization(CellSpace(), n_initial=5, seed=3)
    told = run_optimizer(optimizer, workers=1, stop_after=50)
    scores = [optimizer.objective.score(r) for _, r in told]
    kept = optimizer.state_dict()["algorithm"]["scores"]
    best = sorted(range(50), key=lambda i: -scores[i])[:10]
    recent = [i for i in range(50) if i not in best][-10:]
    assert kept == [scores[i] for i in sorted(best + recent)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"budget": 0},
            r"(?s)invalid budget.*an integer >= 1.*received: 0 \(int\).*fix: set budget",
        ),
        ({"n_initial": 0}, r"(?s)invalid n_initial.*an integer >= 1.*received: 0 \(int\)"),
        (
            {"n_candidates": "100"},
            r"(?s)invalid n_candidates.*an integer >= 1.*received: '100' \(str\)",
        ),
        ({"n_initial": True}, r"(?s)invalid n_initial.*received: True"),
        (
            {"acquisition": "pi"},
            r"(?s)invalid acquisition.*\['ei', 'ucb'\].*received: 'pi'.*fix: pass acquisition=\"ei\"",
        ),
        ({"xi": -0.1}, r"(?s)invalid xi.*a number >= 0 \(finite\).*received: -0.1.*fix: set xi"),
        ({"kappa": float("nan")}, r"(?s)invalid kappa.*a number >= 0 \(finite\).*received: nan"),
        ({"max_trials": 0}, r"(?s)invalid max_trials.*positive integer or None.*received: 0"),
        ({"direction": "up"}, r"(?s)invalid direction.*\['maximize', 'minimize'\].*'up'"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(OptimizerError, match=message):
        BayesianOptimization(CellSpace(), **kwargs)  # type: ignore[arg-type]


def test_checkpoint_of_another_optimizer_is_refused() -> None:
    state = RandomSearch(CellSpace(), seed=0).state_dict()
    with pytest.raises(
        OptimizerError,
        match=r"(?s)another optimizer.*'bayesian-optimization' version 1.*'random-search'",
    ):
        BayesianOptimization(CellSpace()).load_state_dict(state)


def _best_rewards(make: Callable[[int], BaseOptimizer], task: NB201TabularTask) -> float:
    """The mean over 20 seeds of the best 12-epoch validation accuracy of 60 sequential
    evaluations."""

    def evaluate(trial: Trial) -> TrialResult:
        assert isinstance(trial.arch, ArchGraph)
        value = task.evaluate(trial.arch, 12).metrics["val_accuracy"]
        return TrialResult.complete(trial.id, {"val_accuracy": value})

    best = []
    for seed in range(20):
        told = run_optimizer(make(seed), evaluate, workers=1)
        best.append(max(result.metrics["val_accuracy"] for _, result in told))
    return float(np.mean(best))


@pytest.mark.slow
def test_beats_random_search_on_nas_bench_201() -> None:
    task = NB201TabularTask("cifar10")
    bo = _best_rewards(
        lambda seed: BayesianOptimization(CellSpace(), budget=12, max_trials=60, seed=seed), task
    )
    rs = _best_rewards(
        lambda seed: RandomSearch(CellSpace(), budget=12, max_trials=60, seed=seed), task
    )
    print(f"mean best 12-epoch val accuracy, 60 evaluations: BO {bo:.3f}, RS {rs:.3f}")
    assert bo > rs + 0.5
