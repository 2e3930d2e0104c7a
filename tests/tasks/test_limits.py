"""Limits on what a candidate costs: measured on the fresh model before it trains, a
candidate above one is rejected (a FAIL row of kind ``constraint`` with what was measured),
never trained and never run again; from an experiment file, through a real search."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from morphml_dask.exceptions import CandidateRejected, TaskError
from morphml_dask.experiment import load_experiment
from morphml_dask.models import build_model, count_parameters
from morphml_dask.space import DagSpace
from morphml_dask.tasks import TrainingTask

SPACE = {"name": "dag-cnn", "max_nodes": 4, "widths": [8, 16, 48], "kernels": [1, 3, 5]}


def test_a_candidate_above_a_limit_is_rejected_with_what_was_measured() -> None:
    arch = DagSpace(max_nodes=3, widths=(48,), kernels=(5,)).sample(np.random.default_rng(0))
    params = count_parameters(build_model(arch, 10, in_channels=1))
    with pytest.raises(
        CandidateRejected, match=rf"rejected before training: params {params}"
    ) as rejected:
        TrainingTask(limits={"params": params - 1}).evaluate(arch, 1)
    assert rejected.value.metrics == {"proxy_params": float(params)}
    kept = TrainingTask(limits={"params": params}).evaluate(arch, 1)
    assert kept.metrics["proxy_params"] == params == kept.metrics["params"]
    assert len(kept.curve) == 1, "a candidate within its limits trains"


@pytest.mark.parametrize("proxies", [[], ["params"]])
def test_an_inheriting_child_is_held_to_the_limits_too(proxies: list[str]) -> None:
    """A child that starts from its parent's weights measures no proxies, but every limit,
    one on a proxy the task also reports included."""
    arch = DagSpace(max_nodes=3, widths=(48,), kernels=(5,)).sample(np.random.default_rng(0))
    parent = build_model(arch, 10, in_channels=1).state_dict()
    params = count_parameters(build_model(arch, 10, in_channels=1))
    limits = {"params": params - 1, "flops": 1e12}
    with pytest.raises(CandidateRejected, match=rf"rejected before training: params {params}"):
        TrainingTask(proxies=proxies, limits=limits).evaluate(arch, 1, inherit=parent)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (
            {"latency": 5},
            r"(?s)no measurement called 'latency' to limit.*expected: a limit on one of .*"
            r"'latency_ms'.*fix: limit what a candidate costs",
        ),
        (
            {"params": 0},
            r"(?s)the limit on params is not a positive number.*received: limits\['params'\] = 0",
        ),
        ([("params", 1)], r"(?s)limits must map measurements to upper bounds"),
    ],
)
def test_bad_limits_are_refused(limits: object, message: str) -> None:
    with pytest.raises(TaskError, match=message):
        TrainingTask(limits=limits)  # type: ignore[arg-type]


def test_rejected_candidates_are_recorded_not_dropped(tmp_path: Path) -> None:
    from morphml_dask.driver import search_from_experiment
    from morphml_dask.testing import local_client

    limit = 6_000
    experiment = load_experiment(
        {
            "name": "limited",
            "space": SPACE,
            "task": {"name": "train", "epochs": 1, "limits": {"params": limit}, "seed": 0},
            "optimizer": {"name": "random-search", "seed": 0},
            "max_trials": 16,
            "store": str(tmp_path / "store"),
        }
    )
    assert experiment.to_dict()["task"]["limits"] == {"params": limit}
    with local_client(n_workers=2, threads_per_worker=1) as client:
        table = search_from_experiment(experiment, client=client).run()
    assert len(table) == 16 and table["trial_id"].is_unique
    rejected = table[table["state"] == "fail"]
    trained = table[table["state"] == "complete"]
    assert len(rejected) > 0 and len(trained) > 0, table["proxy_params"].tolist()
    assert (rejected["error_kind"] == "constraint").all(), rejected["error"].tolist()
    assert (rejected["proxy_params"] > limit).all() and (rejected["attempt"] == 1).all()
    assert (trained["proxy_params"] <= limit).all() and (trained["params"] <= limit).all()
    assert trained["val_accuracy"].notna().all() and rejected["val_accuracy"].isna().all()


@pytest.mark.parametrize(
    ("optimizer", "key", "metric"),
    [
        ({"constraints": {"latency_ms": 5}}, "constraints.latency_ms", "latency_ms"),
        (
            {"objectives": [["val_accuracy", "maximize"], ["proxy_flops", "minimize"]]},
            "objectives[1]",
            "proxy_flops",
        ),
        ({"objective": "accuracy"}, "objective", "accuracy"),
    ],
)
def test_an_objective_or_constraint_on_a_metric_nobody_computes_is_refused(
    optimizer: dict[str, object], key: str, metric: str
) -> None:
    from morphml_dask.exceptions import ExperimentError

    document = {
        "name": "unknown-metric",
        "space": SPACE,
        "task": {"name": "train", "epochs": 1, "proxies": ["params"]},
        "optimizer": {"name": "regularized-evolution", **optimizer},
        "max_trials": 4,
    }
    with pytest.raises(
        ExperimentError,
        match=rf"(?s)optimizer\.{re.escape(key)} names a metric the "
        rf"task does not report.*expected: one of \[.*'proxy_params'.*\].*received: '{metric}'"
        r".*fix: name a metric of the task; to limit or optimise a cost, add it to the task's "
        r"proxies",
    ):
        load_experiment(document)


def test_accuracy_against_a_measured_cost_from_an_experiment_file(tmp_path: Path) -> None:
    """Two objectives, one of them a proxy the task measures, through a real search."""
    from morphml_dask.driver import search_from_experiment
    from morphml_dask.testing import local_client

    experiment = load_experiment(
        {
            "name": "accuracy-and-latency",
            "space": SPACE,
            "task": {"name": "train", "epochs": 1, "proxies": ["latency_ms"], "seed": 0},
            "optimizer": {
                "name": "regularized-evolution",
                "population_size": 4,
                "objectives": [["val_accuracy", "maximize"], ["proxy_latency_ms", "minimize"]],
                "seed": 0,
            },
            "max_trials": 8,
            "store": str(tmp_path / "store"),
        }
    )
    with local_client(n_workers=2, threads_per_worker=1) as client:
        search = search_from_experiment(experiment, client=client)
        table = search.run()
    assert len(table) == 8 and (table["state"] == "complete").all()
    assert (table["proxy_latency_ms"] > 0).all()
    front = {trial.id for trial in search.optimizer.pareto_front()}  # type: ignore[attr-defined]
    costs = zip(table["val_accuracy"], table["proxy_latency_ms"], strict=True)
    scores = dict(zip(table["trial_id"], costs, strict=True))
    scores_by_point = {point: trial_id for trial_id, point in scores.items()}
    beaten = {
        a
        for a, (acc_a, ms_a) in scores.items()
        for acc_b, ms_b in scores.values()
        if acc_b >= acc_a and ms_b <= ms_a and (acc_b, ms_b) != (acc_a, ms_a)
    }
    assert front == set(scores) - beaten
    # The report's Pareto figure trades accuracy against the latency, as the search did.
    from morphml_dask.report import draw_figure

    axes = draw_figure("pareto", search.store).axes[0]
    assert axes.get_xlabel() == "proxy_latency_ms (minimize)"
    drawn = axes.get_lines()[0]
    ys, xs = np.asarray(drawn.get_ydata(), float), np.asarray(drawn.get_xdata(), float)
    points = zip(ys.tolist(), xs.tolist(), strict=True)
    ids = {scores_by_point[p] for p in points}
    assert ids == front
