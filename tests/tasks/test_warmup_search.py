"""A zero-cost warm-up through a real search: the candidates are scored on workers,
recorded as trials that trained nothing, and the search starts from the best of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from morphml_dask.exceptions import ExperimentError
from morphml_dask.experiment import load_experiment

SPACE = {"name": "dag-cnn", "max_nodes": 4, "widths": [8, 16, 48], "kernels": [1, 3, 5]}


def test_evolution_starts_from_the_best_scored_candidates(tmp_path: Path) -> None:
    from morphml_dask.driver import search_from_experiment
    from morphml_dask.testing import local_client

    experiment = load_experiment(
        {
            "name": "warmed-up",
            "space": SPACE,
            "task": {"name": "train", "epochs": 1, "seed": 0},
            "optimizer": {
                "name": "regularized-evolution",
                "population_size": 3,
                "warmup": 12,
                "warmup_proxy": "synflow",
                "seed": 0,
            },
            "max_trials": 6,
            "store": str(tmp_path / "store"),
        }
    )
    with local_client(n_workers=2, threads_per_worker=1) as client:
        table = search_from_experiment(experiment, client=client).run()
    table = table.sort_values("trial_id")
    scored = table[table["budget"] == 0]
    trained = table[table["budget"] > 0]
    assert len(scored) == 12 and len(trained) == 6, table[["trial_id", "budget"]]
    assert (scored["state"] == "complete").all(), scored["error"].tolist()
    assert scored["proxy_synflow"].notna().all() and scored["val_accuracy"].isna().all()
    assert (scored["epochs_trained"] == 0).all()
    assert (trained["state"] == "complete").all() and trained["val_accuracy"].notna().all()
    # The initial population: the three best synflow scores, best first.
    best = scored.sort_values("proxy_synflow", ascending=False, kind="stable")["fingerprint"]
    assert trained["fingerprint"].tolist()[:3] == best.tolist()[:3]


@pytest.mark.parametrize(
    ("task", "proxy", "message"),
    [
        (
            {"name": "nb201-tabular"},
            "jacob_cov",
            r"a tabular benchmark has no images for a data-dependent proxy.*expected: "
            r"warmup_proxy one of \['flops', 'params', 'synflow'\]",
        ),
    ],
)
def test_a_warm_up_the_task_cannot_score_is_refused(
    task: dict[str, object], proxy: str, message: str
) -> None:
    document = {
        "name": "cannot-warm-up",
        "space": {"name": "nb201-cell"},
        "task": task,
        "optimizer": {"name": "regularized-evolution", "warmup": 10, "warmup_proxy": proxy},
        "max_trials": 4,
    }
    with pytest.raises(ExperimentError, match=rf"(?s)optimizer\.warmup: {message}"):
        load_experiment(document)


def test_a_warm_up_with_a_train_function_is_refused(tmp_path: Path) -> None:
    (tmp_path / "fit_warm.py").write_text(
        "def space(s):\n    return {'x': s.float('x', -1.0, 1.0)}\n\n"
        "def fit(config, ctx):\n    return {'loss': config['x'] ** 2}\n"
    )
    document = {
        "name": "function-warm-up",
        "space": {"function": "fit_warm:space"},
        "task": {"function": "fit_warm:fit", "objective": "loss", "direction": "minimize"},
        "optimizer": {"name": "random-search", "warmup": 10},
        "max_trials": 4,
        "python_path": [str(tmp_path)],
    }
    with pytest.raises(
        ExperimentError,
        match=r"(?s)"
        + re.escape("optimizer.warmup: a zero-cost warm-up needs a task that builds the")
        + r".*received: warmup with a FunctionTask.*fix: drop warmup",
    ):
        load_experiment(document)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "imagenet"])
def test_a_tabular_task_scores_a_warm_up_on_the_benchmarks_network(dataset: str) -> None:
    from morphml_dask.optim import RegularizedEvolution
    from morphml_dask.space import CellSpace
    from morphml_dask.tasks import NB201TabularTask, TrialContext, score_for_warmup

    (trial,) = RegularizedEvolution(CellSpace(), warmup=4, seed=0).ask(1)
    scored = score_for_warmup(NB201TabularTask(dataset), trial, TrialContext(trial))
    assert scored.metrics["proxy_synflow"] > 0 and scored.metrics["cost_seconds"] > 0
