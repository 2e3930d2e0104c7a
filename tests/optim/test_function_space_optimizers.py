"""Every optimizer on a define-by-run space: the contract suite on a conditional,
variable-length `FunctionSpace` (with and without a cell decision), the multi-objective
variants, and the trials' configs through JSON and a checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from morphml_dask.exceptions import SearchSpaceError
from morphml_dask.optim import (
    ASHA,
    BaseOptimizer,
    BayesianOptimization,
    GeneticAlgorithm,
    RandomSearch,
    RegularizedEvolution,
)
from morphml_dask.space import Config, FunctionSpace, Sampler
from morphml_dask.testing import (
    check_optimizer,
    conditional_cell_space,
    conditional_space,
    run_optimizer,
    synthetic_result,
)
from morphml_dask.trial import Trial

MULTI = [("val_accuracy", "maximize"), ("params", "minimize")]

Make = Callable[[FunctionSpace, int], BaseOptimizer]

OPTIMIZERS: dict[str, Make] = {
    "random": lambda space, seed: RandomSearch(space, max_trials=30, seed=seed),
    "evolution": lambda space, seed: RegularizedEvolution(
        space, population_size=6, sample_size=2, budget=3, max_trials=30, seed=seed
    ),
    "evolution-multi": lambda space, seed: RegularizedEvolution(
        space, population_size=6, sample_size=3, objectives=MULTI, max_trials=30, seed=seed
    ),
    "genetic": lambda space, seed: GeneticAlgorithm(
        space, population_size=6, max_trials=30, seed=seed
    ),
    "genetic-multi": lambda space, seed: GeneticAlgorithm(
        space, population_size=6, objectives=MULTI, max_trials=30, seed=seed
    ),
    "asha": lambda space, seed: ASHA(space, budgets=[1, 3, 9], max_trials=40, seed=seed),
    "asha-brackets": lambda space, seed: ASHA(
        space, min_budget=1, max_budget=9, brackets=2, max_trials=40, seed=seed
    ),
    "bayesian": lambda space, seed: BayesianOptimization(
        space, n_initial=5, n_candidates=30, max_trials=30, seed=seed
    ),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("fn", [conditional_space, conditional_cell_space])
def test_every_optimizer_keeps_the_contract_on_a_function_space(
    name: str, fn: Callable[[Sampler], object]
) -> None:
    space = FunctionSpace(fn)
    check_optimizer(lambda seed: OPTIMIZERS[name](space, seed))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_trials_hold_configs_of_the_space_that_survive_json(name: str) -> None:
    space = FunctionSpace(conditional_cell_space)
    asked: list[Trial] = []
    run_optimizer(OPTIMIZERS[name](space, 0), record=asked)
    assert asked
    for trial in asked:
        assert isinstance(trial.arch, Config)
        assert space.contains(trial.arch)
        back = Trial.from_dict(json.loads(json.dumps(trial.to_dict())))
        assert back == trial
        assert back.arch.fingerprint == trial.arch.fingerprint


def test_the_named_constructors_accept_a_function_space() -> None:
    space = FunctionSpace(conditional_space)
    evolution = RegularizedEvolution(space, budget=4, max_trials=12, seed=0)
    asha = ASHA(space, budgets=[1, 3], max_trials=12)
    for optimizer in (evolution, asha):
        told = run_optimizer(optimizer)
        assert len(told) == 12 and optimizer.finished
    assert {t.budget for t, _ in run_optimizer(RandomSearch(space, budget=4, max_trials=3))} == {4}


def test_evolution_children_are_single_decision_mutations_of_their_parents() -> None:
    space = FunctionSpace(conditional_space)
    optimizer = RegularizedEvolution(space, population_size=4, sample_size=2, seed=3)
    run_optimizer(optimizer, workers=1, stop_after=4)
    parents = [member.arch for _, member in optimizer._population]
    for _ in range(10):
        (trial,) = optimizer.ask(1)
        child = trial.arch
        assert isinstance(child, Config)
        nearest = min(_changed(p, child) for p in parents if isinstance(p, Config))
        assert 1 <= nearest <= 4  # one decision, and the widths of a depth it changed
        optimizer.tell(synthetic_result(trial))
        parents = [member.arch for _, member in optimizer._population] + parents


def _changed(a: Config, b: Config) -> int:
    common = set(a.names) & set(b.names)
    return len(set(a.names) ^ set(b.names)) + sum(bool(a[n] != b[n]) for n in common)


def test_asha_promotes_the_same_config() -> None:
    optimizer = ASHA(FunctionSpace(conditional_space), budgets=[1, 3], eta=2, max_trials=20)
    told = run_optimizer(optimizer, workers=1)
    by_id = {t.id: t for t, _ in told}
    promoted = [t for t, _ in told if t.parent is not None]
    assert promoted
    for trial in promoted:
        assert trial.parent is not None and trial.arch == by_id[trial.parent].arch
        assert trial.parent_budget == 1 and trial.budget == 3


def test_bayesian_optimization_encodes_every_config_to_one_length() -> None:
    space = FunctionSpace(conditional_cell_space)
    optimizer = BayesianOptimization(space, n_initial=4, n_candidates=20, seed=0)
    run_optimizer(optimizer, stop_after=12)
    lengths = {len(x) for x in optimizer._x}
    assert lengths == {len(space.encode(space.sample(np.random.default_rng(0))))}


def test_a_checkpoint_names_the_space_function_by_import_path() -> None:
    optimizer = RegularizedEvolution(FunctionSpace(conditional_space), seed=0, max_trials=5)
    run_optimizer(optimizer, stop_after=2)
    state = json.loads(json.dumps(optimizer.state_dict()))
    assert state["space"] == {
        "name": "function",
        "function": "morphml_dask.testing:conditional_space",
    }
    resumed = RegularizedEvolution(FunctionSpace(conditional_cell_space), max_trials=5)
    resumed.load_state_dict(state)
    assert isinstance(resumed.space, FunctionSpace)
    assert resumed.space.fn is conditional_space


def test_a_lambda_space_searches_but_cannot_checkpoint() -> None:
    space = FunctionSpace(lambda s: {"x": s.float("x", 0.0, 1.0)})
    optimizer = RandomSearch(space, max_trials=3, seed=0)
    assert len(run_optimizer(optimizer)) == 3
    with pytest.raises(
        SearchSpaceError,
        match=r"(?s)the space function has no import path.*a lambda has no name.*"
        r"fix: define it with def at module level",
    ):
        optimizer.state_dict()
