"""Zero-cost warm-up (Abdelfattah et al., ICLR 2021) as an option of RS, REA and GA."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim import BaseOptimizer, GeneticAlgorithm, RandomSearch, RegularizedEvolution
from morphml_dask.space import CellSpace
from morphml_dask.testing import check_optimizer, run_optimizer, synthetic_result
from morphml_dask.trial import Trial, TrialResult

SPACE = CellSpace()
Factory = Callable[..., BaseOptimizer]
FACTORIES: dict[str, Factory] = {
    "random-search": lambda **kw: RandomSearch(SPACE, budget=4, **kw),
    "regularized-evolution": lambda **kw: RegularizedEvolution(
        SPACE, population_size=5, sample_size=2, budget=4, **kw
    ),
    "genetic-algorithm": lambda **kw: GeneticAlgorithm(
        SPACE, population_size=5, elitism=1, budget=4, **kw
    ),
}


@pytest.mark.parametrize("name", FACTORIES)
def test_a_warmed_up_optimizer_keeps_the_contract(name: str) -> None:
    check_optimizer(lambda seed: FACTORIES[name](warmup=12, max_trials=30, seed=seed))


def _scored(optimizer: BaseOptimizer, count: int) -> dict[str, float]:
    """Ask and tell the ``count`` warm-up trials; their proxy scores by fingerprint."""
    trials = optimizer.ask(count + 5)
    assert len(trials) == count  # no more than the warm-up until its scores are back
    assert all(t.budget == 0 and t.info == {"warmup": "synflow"} for t in trials)
    scores = {}
    for trial in trials[:-1]:
        result = synthetic_result(trial)
        optimizer.tell(result)
        scores[trial.arch.fingerprint] = result.metrics["proxy_synflow"]
    assert optimizer.ask(3) == [], "the search started before every score was back"
    optimizer.tell(TrialResult.failed(trials[-1].id, "out of memory", kind="oom"))
    return scores


def _best(scores: dict[str, float], count: int) -> list[str]:
    return sorted(scores, key=lambda f: scores[f], reverse=True)[:count]


@pytest.mark.parametrize("name", ["regularized-evolution", "genetic-algorithm"])
def test_the_first_population_is_the_best_scored(name: str) -> None:
    optimizer = FACTORIES[name](warmup=30, seed=4)
    scores = _scored(optimizer, 30)
    first = optimizer.ask(5)
    assert [t.budget for t in first] == [4] * 5
    assert [t.arch.fingerprint for t in first] == _best(scores, 5)


def test_random_search_trains_the_candidates_best_first_then_samples() -> None:
    optimizer = RandomSearch(SPACE, budget=4, warmup=20, warmup_keep=6, max_trials=10, seed=2)
    scores = _scored(optimizer, 20)
    trained = optimizer.ask(10)
    assert len(trained) == 10, "warm-up trials counted towards max_trials"
    assert optimizer.warmup_trials == 20
    assert [t.arch.fingerprint for t in trained[:6]] == _best(scores, 6)
    assert not {t.arch.fingerprint for t in trained[6:]} <= set(_best(scores, 6))
    assert optimizer.ask(1) == []
    for trial in trained:
        optimizer.tell(synthetic_result(trial))
    assert optimizer.finished
    best = optimizer.best_trial
    assert best is not None and best.budget == 4  # a warm-up score is never the best result


def test_a_warm_up_resumes_from_its_checkpoint_mid_scoring() -> None:
    original = RegularizedEvolution(SPACE, population_size=4, warmup=10, seed=7)
    asked = original.ask(10)
    for trial in asked[:6]:
        original.tell(synthetic_result(trial))
    resumed = RegularizedEvolution(SPACE, population_size=4, warmup=10, seed=0)
    resumed.load_state_dict(original.state_dict())
    for optimizer in (original, resumed):
        for trial in asked[6:]:
            optimizer.tell(synthetic_result(trial))
    assert [t.arch for t in original.ask(4)] == [t.arch for t in resumed.ask(4)]


def test_without_a_warm_up_the_sequence_is_unchanged() -> None:
    """warmup=0 is the paper's algorithm, trial for trial."""
    record: list[list[Trial]] = [[], []]
    run_optimizer(RegularizedEvolution(SPACE, max_trials=25, seed=3), record=record[0])
    run_optimizer(RegularizedEvolution(SPACE, max_trials=25, seed=3, warmup=0), record=record[1])
    assert [t.arch for t in record[0]] == [t.arch for t in record[1]]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"warmup": -1}, r"(?s)warmup.*an integer >= 0.*warmup=3000"),
        (
            {"warmup": 10, "warmup_proxy": "latency_ms"},
            r"(?s)warmup_proxy.*grows with accuracy, one of \['synflow'.*latency and memory are costs",
        ),
        ({"warmup": 10, "warmup_keep": 11}, r"(?s)warmup_keep.*from 1 to warmup \(10\)"),
        ({"warmup_keep": 3}, r"(?s)warmup_keep needs a warm-up.*warmup=3000"),
    ],
)
def test_bad_warm_up_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(OptimizerError, match=message):
        RegularizedEvolution(SPACE, **settings)  # type: ignore[arg-type]
