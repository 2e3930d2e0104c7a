"""ProxyTask scores architectures and configurations without training them; TrainingTask adds
proxies of its fresh model to its metrics; both from experiment files, and how they refuse."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from morphml_dask.exceptions import ExperimentError, TaskError
from morphml_dask.experiment import load_experiment
from morphml_dask.models import PROXIES, build_model, score
from morphml_dask.space import ArchGraph, CellSpace, Config, DagSpace, FunctionSpace, Sampler
from morphml_dask.tasks import ProxyTask, TrainingTask, TrialContext, load_digits
from morphml_dask.tasks._limits import PROXY_NAMES
from morphml_dask.tasks._proxy import training_batch
from morphml_dask.trial import Trial

DIGITS_SHAPE = (1, 8, 8)
SEED = 3

# -- the user's space and model builder, at module level so that they have an import path -----


def space(s: Sampler) -> dict[str, Any]:
    return {"width": s.choice("width", [4, 8, 16]), "depth": s.int("depth", 1, 2)}


def mlp(config: dict[str, Any]) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = 64
    for _ in range(config["depth"]):
        layers += [nn.Linear(width, config["width"]), nn.ReLU()]
        width = config["width"]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def not_a_module(config: dict[str, Any]) -> str:
    return "a model"


def takes_nothing() -> nn.Module:
    return nn.Identity()


def _run(task: ProxyTask, candidate: Any, budget: int = 1) -> dict[str, float]:
    trial = Trial("t000001", candidate, budget)
    return task.run(trial, TrialContext(trial, seed=task.seed)).metrics


def _expected(model: nn.Module, proxies: list[str]) -> dict[str, float]:
    """`score` on the same model with the batch the task draws for its seed."""
    return score(model, proxies, training_batch(load_digits(SEED), 64, SEED, "cpu"))


def _seeded(build: Any, *args: Any, **kwargs: Any) -> nn.Module:
    torch.manual_seed(SEED)
    model: nn.Module = build(*args, **kwargs)
    return model


# -- scoring ---------------------------------------------------------------------------------


def test_the_task_checks_names_without_torch_as_the_models_registry_names_them() -> None:
    assert tuple(PROXIES) == PROXY_NAMES


def test_a_cell_is_scored_as_score_scores_the_network_training_would_build() -> None:
    proxies = ["synflow", "params", "snip", "grad_norm"]
    arch = CellSpace().sample(np.random.default_rng(0))
    task = ProxyTask(proxies, seed=SEED)
    metrics = _run(task, arch)
    assert set(metrics) == {*proxies, "wall_time", "cost_seconds"}
    assert metrics["cost_seconds"] == metrics["wall_time"] > 0
    model = _seeded(build_model, arch, 10, in_channels=1, reductions=0)
    assert {k: metrics[k] for k in proxies} == _expected(model, proxies)
    # The network TrainingTask trains, on the same seed.
    training = TrainingTask(seed=SEED).build(arch)
    assert {k: metrics[k] for k in proxies} == _expected(training, proxies)


def test_a_dag_is_scored_with_one_training_batch_and_the_budget_is_ignored() -> None:
    proxies = ["naswot", "jacob_cov", "flops", "synflow"]
    arch = DagSpace(max_nodes=3, widths=(8,)).sample(np.random.default_rng(1))
    task = ProxyTask(proxies, objective="naswot", seed=SEED)
    metrics = _run(task, arch, budget=1)
    model = _seeded(build_model, arch, 10, in_channels=1, reductions=0)
    assert {k: metrics[k] for k in proxies} == _expected(model, proxies)
    again = _run(task, arch, budget=9)
    assert {k: again[k] for k in proxies} == {k: metrics[k] for k in proxies}


def test_the_batch_is_drawn_from_the_training_split_by_the_seed() -> None:
    digits = load_digits(SEED)
    images, labels = training_batch(digits, 64, SEED, "cpu")
    assert images.shape == (64, *DIGITS_SHAPE) and labels.dtype == torch.int64
    again, _ = training_batch(digits, 64, SEED, "cpu")
    assert torch.equal(images, again)
    assert not torch.equal(images, training_batch(digits, 64, SEED + 1, "cpu")[0])
    rows = {row.tobytes() for row in digits.x_train}
    assert all(image.numpy().tobytes() in rows for image in images)
    everything, _ = training_batch(digits, 10**6, SEED, "cpu")
    assert len(everything) == digits.sizes[0]


def test_data_free_proxies_need_no_batch() -> None:
    arch = DagSpace(max_nodes=2, widths=(8,)).sample(np.random.default_rng(2))
    proxies = ["synflow", "flops", "latency_ms"]
    metrics = ProxyTask(proxies, seed=SEED).evaluate(arch, budget=1).metrics
    model = _seeded(build_model, arch, 10, in_channels=1, reductions=0)
    expected = score(model, ["synflow", "flops"], input_shape=(64, *DIGITS_SHAPE))
    assert {k: metrics[k] for k in expected} == expected
    assert metrics["latency_ms"] > 0  # measured: no two timings are equal


def test_a_function_space_is_scored_with_the_users_model_builder() -> None:
    proxies = ["params", "synflow", "naswot", "snip"]
    config = FunctionSpace(space).sample(np.random.default_rng(0))
    for model in (mlp, f"{__name__}:mlp"):
        task = ProxyTask(proxies, objective="params", direction="minimize", seed=SEED, model=model)
        metrics = _run(task, config)
        assert {k: metrics[k] for k in proxies} == _expected(_seeded(mlp, config.value), proxies)
        assert metrics["params"] == sum(p.numel() for p in mlp(config.value).parameters())
        # The builder travels by its import path, and the workers import it.
        assert task.to_dict()["model"] == f"{__name__}:mlp"
        copy = pickle.loads(pickle.dumps(task))
        assert copy._model is None and copy.model is mlp
        assert copy.evaluate(config.value, budget=1).metrics["params"] == metrics["params"]


def test_to_dict_holds_every_setting() -> None:
    task = ProxyTask(("params", "flops", "params"), objective="flops", direction="minimize")
    assert task.to_dict() == {
        "name": "proxy",
        "proxies": ["params", "flops"],
        "objective": "flops",
        "direction": "minimize",
        "dataset": "digits",
        "batch_size": 64,
        "seed": 0,
        "model": None,
    }
    assert ProxyTask("params", objective="params").proxies == ("params",)


# -- proxies as training metrics ---------------------------------------------------------------


def test_training_adds_proxies_of_the_fresh_model_and_trains_as_without_them() -> None:
    arch = DagSpace(max_nodes=3, widths=(8,)).sample(np.random.default_rng(3))
    plain = TrainingTask(seed=SEED).evaluate(arch, 1)
    task = TrainingTask(seed=SEED, proxies=["params", "synflow"])
    assert task.to_dict()["proxies"] == ["params", "synflow"]
    proxied = task.evaluate(arch, 1)
    metrics = proxied.metrics
    assert metrics["proxy_params"] == metrics["params"]
    fresh = TrainingTask(seed=SEED).build(arch)
    assert (
        metrics["proxy_synflow"]
        == score(fresh, "synflow", input_shape=(64, *DIGITS_SHAPE))["synflow"]
    )
    # Scoring left the model as it was: the training is the same.
    timed = {"wall_time", "cost_seconds"}
    assert {k: v for k, v in metrics.items() if not k.startswith("proxy_") and k not in timed} == {
        k: v for k, v in plain.metrics.items() if k not in timed
    }
    # A promotion continues from trained weights: no proxies of an initialisation.
    assert proxied.weights is not None
    promoted = task.evaluate(arch, 2, weights=proxied.weights, trained_epochs=1)
    assert not any(k.startswith("proxy_") for k in promoted.metrics)
    assert TrainingTask().proxies == () and TrainingTask().to_dict()["proxies"] == []


# -- experiment files and a real search ----------------------------------------------------------


@pytest.mark.slow
def test_a_proxy_search_from_an_experiment_file_records_the_proxies(tmp_path: Path) -> None:
    from morphml_dask.driver import search_from_experiment
    from morphml_dask.storage import open_store
    from morphml_dask.testing import local_client

    experiment = load_experiment(
        {
            "name": "proxy-search",
            "space": {"name": "dag-cnn", "max_nodes": 3, "widths": [8, 16]},
            "task": {"name": "proxy", "proxies": ["synflow", "params", "naswot"], "seed": SEED},
            "optimizer": {"name": "random-search", "seed": 0},
            "max_trials": 10,
            "store": str(tmp_path / "store"),
        }
    )
    assert isinstance(experiment.task, ProxyTask)
    assert experiment.to_dict()["task"]["proxies"] == ["synflow", "params", "naswot"]
    assert experiment.to_dict()["optimizer"]["objective"] == "synflow"
    with local_client(n_workers=2, threads_per_worker=1) as client:
        table = search_from_experiment(experiment, client=client).run()
    assert len(table) == 10 and set(table["state"]) == {"complete"}, table["error"].tolist()
    assert {"synflow", "params", "naswot", "cost_seconds"} <= set(table.columns)
    assert all(math.isfinite(v) and v > 0 for v in table["params"])
    # What the workers computed is what the task computes here.
    records = {r.trial_id: r for r in open_store(str(tmp_path / "store")).records()}
    row = table.iloc[0]
    arch = records[row["trial_id"]].trial.arch
    assert isinstance(arch, ArchGraph)
    here = experiment.task.evaluate(arch, budget=1).metrics
    assert (row["synflow"], row["params"], row["naswot"]) == pytest.approx(
        (here["synflow"], here["params"], here["naswot"]), rel=1e-9
    )


def test_a_training_task_section_takes_proxies() -> None:
    experiment = load_experiment(
        {
            "name": "proxied-training",
            "space": {"name": "dag-cnn", "max_nodes": 2},
            "task": {"name": "train", "proxies": ["params", "synflow"]},
            "optimizer": {"name": "random-search"},
            "max_trials": 2,
        }
    )
    assert isinstance(experiment.task, TrainingTask)
    assert experiment.task.proxies == ("params", "synflow")


# -- bad input ---------------------------------------------------------------------------------


def test_an_unknown_proxy_is_refused_with_the_nearest_name() -> None:
    with pytest.raises(
        TaskError, match=r"(?s)unknown zero-cost proxy.*'synflw' \(proxies\[1\]\).*'synflow'"
    ):
        ProxyTask(["params", "synflw"], objective="params")
    with pytest.raises(TaskError, match=r"(?s)unknown zero-cost proxy.*fix: pick names"):
        TrainingTask(proxies=["accuracy"])
    with pytest.raises(TaskError, match=r"(?s)invalid proxies.*a non-empty list"):
        ProxyTask([])


def test_an_objective_that_is_no_proxy_is_refused() -> None:
    with pytest.raises(
        TaskError,
        match=r"(?s)the objective is not one of the proxies.*\['params'\].*'val_accuracy'.*"
        r"add it to proxies",
    ):
        ProxyTask(["params"], objective="val_accuracy")


def test_a_function_space_without_a_model_builder_is_refused() -> None:
    config = FunctionSpace(space).sample(np.random.default_rng(0))
    pattern = r"(?s)needs a model builder.*fix: define model\(config\)"
    with pytest.raises(TaskError, match=pattern):
        _run(ProxyTask(), config)
    with pytest.raises(TaskError, match=pattern):
        ProxyTask().evaluate(Config((), {"width": 4}), budget=1)
    # From an experiment file, when it loads rather than in every trial.
    with pytest.raises(ExperimentError, match=r"(?s)task.model: the proxy task needs a model"):
        load_experiment(
            {
                "name": "no-builder",
                "space": {"function": f"{__name__}:space"},
                "task": {"name": "proxy"},
                "optimizer": {"name": "random-search"},
                "max_trials": 2,
            }
        )
    experiment = load_experiment(
        {
            "name": "builder",
            "space": {"function": f"{__name__}:space"},
            "task": {"name": "proxy", "model": f"{__name__}:mlp", "objective": "params"},
            "optimizer": {"name": "random-search"},
            "max_trials": 2,
        }
    )
    assert isinstance(experiment.task, ProxyTask)
    assert experiment.task.evaluate(config, budget=1).metrics["params"] > 0


def test_a_bad_model_builder_is_refused() -> None:
    with pytest.raises(TaskError, match=r"(?s)the model builder 'nowhere:build' cannot be"):
        ProxyTask(model="nowhere:build")
    with pytest.raises(TaskError, match=r"(?s)the model builder is not callable"):
        ProxyTask(model=3)  # type: ignore[arg-type]
    with pytest.raises(TaskError, match=r"(?s)does not take \(config\).*def build\(config\)"):
        ProxyTask(model=takes_nothing)  # type: ignore[arg-type]
    task = ProxyTask(model=not_a_module)  # type: ignore[arg-type]
    with pytest.raises(TaskError, match=r"(?s)returned no torch.nn.Module.*'a model'"):
        task.evaluate({"width": 4, "depth": 1}, budget=1)
    with pytest.raises(TaskError, match=r"(?s)the model builder has no import path.*lambda"):
        pickle.dumps(ProxyTask(model=lambda config: mlp(config)))
