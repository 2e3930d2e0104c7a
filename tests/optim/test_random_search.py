from __future__ import annotations

import numpy as np
import pytest

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim import RandomSearch
from morphml_dask.space import CellSpace, DagSpace
from morphml_dask.testing import check_optimizer, run_optimizer, synthetic_result
from morphml_dask.trial import TrialResult


@pytest.mark.parametrize("space", [CellSpace(), DagSpace(max_nodes=4)])
def test_random_search_keeps_the_contract(space: CellSpace | DagSpace) -> None:
    check_optimizer(lambda seed: RandomSearch(space, max_trials=30, seed=seed))


def test_samples_are_the_spaces_samples() -> None:
    space = CellSpace()
    trials = RandomSearch(space, seed=4, budget=200).ask(5)
    rng = np.random.default_rng(4)
    assert [t.arch for t in trials] == [space.sample(rng) for _ in range(5)]
    assert [t.id for t in trials] == [f"t{i:06d}" for i in range(1, 6)]
    assert {t.budget for t in trials} == {200}


def test_max_trials_bounds_the_search() -> None:
    optimizer = RandomSearch(CellSpace(), max_trials=5, seed=0)
    told = run_optimizer(optimizer, workers=3)
    assert len(told) == 5
    assert optimizer.finished
    assert optimizer.ask(3) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_trials": 0}, r"(?s)invalid max_trials.*positive integer or None.*received: 0"),
        ({"direction": "up"}, r"(?s)invalid direction.*\['maximize', 'minimize'\].*'up'"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(OptimizerError, match=message):
        RandomSearch(CellSpace(), **kwargs)  # type: ignore[arg-type]


def test_a_space_is_required() -> None:
    with pytest.raises(TypeError, match="needs a BaseSearchSpace"):
        RandomSearch("nb201")  # type: ignore[arg-type]


def test_checkpoint_of_another_optimizer_is_refused() -> None:
    state = RandomSearch(CellSpace(), seed=0).state_dict()
    state["optimizer"] = "asha"
    with pytest.raises(
        OptimizerError, match=r"(?s)another optimizer.*'random-search' version 1.*'asha'"
    ):
        RandomSearch(CellSpace()).load_state_dict(state)


def test_infinite_best_score_checkpoints_as_strict_json() -> None:
    import json

    from morphml_dask.trial import TrialResult

    optimizer = RandomSearch(CellSpace(), seed=0)
    (trial,) = optimizer.ask(1)
    optimizer.tell(TrialResult.complete(trial.id, {"val_accuracy": float("inf")}))
    state = json.loads(json.dumps(optimizer.state_dict(), allow_nan=False))
    resumed = RandomSearch(CellSpace())
    resumed.load_state_dict(state)
    assert resumed.best_trial == trial


def test_ids_keep_working_past_a_million_trials() -> None:
    optimizer = RandomSearch(CellSpace(), seed=0)
    optimizer._asked = 999_999  # as if a million trials had been asked
    (trial,) = optimizer.ask(1)
    assert trial.id == "t1000000"
    result = synthetic_result(trial)
    optimizer.tell(result)
    optimizer.tell(result)  # a repeated tell is still recognised and ignored
    assert optimizer.num_told == 1


def test_a_pruned_result_informs_the_search_but_is_never_the_best() -> None:
    optimizer = RandomSearch(CellSpace(), max_trials=2, seed=0)
    first, second = optimizer.ask(2)
    optimizer.tell(TrialResult.pruned(first.id, {"val_accuracy": 0.9}))
    assert optimizer.best_trial is None
    optimizer.tell(TrialResult.complete(second.id, {"val_accuracy": 0.5}))
    assert optimizer.best_trial == second and optimizer.best_value == 0.5
