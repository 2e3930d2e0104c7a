"""Function tasks: the user's train function with its TrialContext, on a worker and in a
search; its state in the store; its curve; how it fails."""

from __future__ import annotations

import math
import pickle
import re
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from morphml_dask.driver import run_trial
from morphml_dask.exceptions import TaskError
from morphml_dask.space import CellSpace, Config, FunctionSpace, Sampler
from morphml_dask.storage import open_store
from morphml_dask.tasks import (
    FunctionTask,
    NB201TabularTask,
    TrialContext,
    trial_seed,
)
from morphml_dask.trial import Trial, TrialResult

# -- train functions, at module level so that they have an import path ------------------------


def space(s: Sampler) -> dict[str, Any]:
    return {"width": s.choice("width", [2, 4, 8]), "rate": s.float("rate", 0.01, 1.0, log=True)}


def climb(config: dict[str, Any], ctx: TrialContext) -> None:
    """Reports a score that grows each epoch from where its restored state left it."""
    state = ctx.restore()
    score = 0.0 if state is None else float(state["score"])
    for epoch in range(ctx.trained_epochs + 1, ctx.budget + 1):
        score += config["rate"] * config["width"]
        ctx.report(epoch, score=score, started_at=float(ctx.trained_epochs))
    ctx.save({"score": score})


def returns_metrics(config: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
    ctx.report(1, score=1.0, loss=0.5)
    ctx.report(2, loss=0.25)
    return {"score": 3.0, "extra": 7}


def reports_nan(config: dict[str, Any], ctx: TrialContext) -> None:
    ctx.report(1, score=0.5)
    ctx.report(2, score=math.nan)


def reports_something_else(config: dict[str, Any], ctx: TrialContext) -> None:
    ctx.report(1, loss=0.5, accuracy=0.25)


def raises(config: dict[str, Any], ctx: TrialContext) -> None:
    ctx.report(1, score=0.5)
    raise RuntimeError("the data loader broke")


def make_trial(value: Any = None, budget: int = 3, **fields: Any) -> Trial:
    config = Config((), {"width": 2, "rate": 0.5} if value is None else value)
    return Trial(fields.pop("id", "t000001"), config, budget, **fields)


# -- the context -------------------------------------------------------------------------------


def test_reports_make_the_curve_in_step_order_and_a_step_again_adds_to_its_point() -> None:
    ctx = TrialContext(make_trial())
    ctx.report(1, loss=0.5)
    ctx.report(1, accuracy=60)
    ctx.report(3, loss=0.25, accuracy=70.5)
    assert ctx.reports == [
        {"epoch": 1, "loss": 0.5, "accuracy": 60.0},
        {"epoch": 3, "loss": 0.25, "accuracy": 70.5},
    ]
    ctx.reports.clear()  # a copy
    assert len(ctx.reports) == 2
    with pytest.raises(TaskError, match=r"(?s)step 2 goes backwards.*a step >= 3"):
        ctx.report(2, loss=0.1)


def test_the_context_names_the_trial_its_devices_budget_and_seed() -> None:
    trial = make_trial(budget=9, id="t000042")
    ctx = TrialContext(trial, seed=3)
    assert (ctx.trial_id, ctx.budget, ctx.device, ctx.devices) == ("t000042", 9, "cpu", ("cpu",))
    assert ctx.trained_epochs == 0 and ctx.restore() is None and ctx.should_stop() is False
    gpus = TrialContext(trial, devices=("cuda:1", "cuda:2"))
    assert (gpus.device, gpus.devices) == ("cuda:1", ("cuda:1", "cuda:2"))
    # The seed is a stable function of the task's seed and the trial id.
    assert ctx.seed == trial_seed(3, "t000042") == TrialContext(trial, seed=3).seed
    assert 0 <= ctx.seed < 2**31
    assert ctx.seed != TrialContext(trial, seed=4).seed
    assert ctx.seed != TrialContext(make_trial(id="t000043"), seed=3).seed


def test_without_a_store_a_state_is_checked_and_there_is_nothing_to_restore() -> None:
    ctx = TrialContext(make_trial())
    ctx.report(2, loss=1.0)
    ctx.save({"w": [1.0, 2.0]})
    assert (ctx.restore(), ctx.trained_epochs) == (None, 0)
    with pytest.raises(TaskError, match=r"(?s)ctx.save takes a dict.*received: \[1\.0\]"):
        ctx.save([1.0])  # type: ignore[arg-type]


def test_restore_gives_the_trial_its_own_state_else_its_parents() -> None:
    store = open_store(f"memory://ctx-{uuid.uuid4().hex}")
    parent = TrialContext(make_trial(id="t000001", budget=3), store=store)
    for epoch in (1, 2, 3):
        parent.report(epoch, loss=1.0 / epoch)
    parent.save({"epoch": 3})
    promoted = make_trial(id="t000009", budget=9, rung=1, parent="t000001", parent_budget=3)
    child = TrialContext(promoted, store=store)
    assert (child.trained_epochs, child.restore()) == (3, {"epoch": 3})
    assert child.reports == []  # the parent's curve is the parent's
    child.report(4, loss=0.2)
    child.report(5, loss=0.1)
    child.save({"epoch": 5})
    # What the trial continues from stays what it was when the trial started.
    assert (child.trained_epochs, child.restore()) == (3, {"epoch": 3})
    # The same trial run again (a resumed search, a retry) continues from its own state,
    # with the curve it had reported by then.
    again = TrialContext(promoted, store=store)
    assert again.restore() == {"epoch": 5}
    assert again.trained_epochs == 5
    assert [p["epoch"] for p in again.reports] == [4, 5]
    assert TrialContext(make_trial(id="t000002"), store=store).restore() is None


# -- the task ----------------------------------------------------------------------------------


def test_a_function_task_is_its_import_path_and_pickles_as_it() -> None:
    task = FunctionTask(climb, objective="score", seed=2)
    path = f"{climb.__module__}:climb"
    assert task.function == path
    assert task.to_dict() == {
        "name": "function",
        "function": path,
        "objective": "score",
        "direction": "maximize",
        "seed": 2,
    }
    data = pickle.dumps(task)
    assert path.encode() in data and b"climb" in data
    assert b"config[" not in data, "the function's code travelled by value"
    back = pickle.loads(data)
    assert back.to_dict() == task.to_dict()
    assert back.fn is climb  # imported by its path when first used
    assert FunctionTask(path, "score", "minimize").fn is climb


def test_a_lambda_works_in_process_but_has_no_path_to_travel_by() -> None:
    task = FunctionTask(lambda config, ctx: {"score": 1.0}, "score")
    assert task.evaluate({}, budget=1).metrics["score"] == 1.0
    with pytest.raises(TaskError, match=r"(?s)the train function has no import path.*lambda"):
        pickle.dumps(task)


def test_the_metrics_are_what_it_returns_over_the_last_value_of_each_reported_metric() -> None:
    evaluation = FunctionTask(returns_metrics, "score").evaluate({}, budget=2)
    metrics = dict(evaluation.metrics)
    assert metrics.pop("wall_time") >= 0 and metrics.pop("cost_seconds") >= 0
    assert metrics == {"score": 3.0, "loss": 0.25, "extra": 7.0}
    assert evaluation.curve == [{"epoch": 1, "score": 1.0, "loss": 0.5}, {"epoch": 2, "loss": 0.25}]
    assert evaluation.weights is None


def test_config_is_the_space_functions_value_and_an_architecture_as_itself() -> None:
    seen: list[Any] = []

    def look(config: Any, ctx: TrialContext) -> dict[str, float]:
        seen.append(config)
        return {"score": 0.0}

    task = FunctionTask(look, "score")
    config = FunctionSpace(space).sample(np.random.default_rng(0))
    task.run(Trial("t1", config, 1), TrialContext(Trial("t1", config, 1)))
    arch = CellSpace().from_index(7)
    task.run(Trial("t2", arch, 1), TrialContext(Trial("t2", arch, 1)))
    assert seen == [config.value, arch]


# -- on a worker: run_trial --------------------------------------------------------------------


def test_a_trial_saves_its_state_and_a_promotion_continues_from_it() -> None:
    url = f"memory://run-{uuid.uuid4().hex}"
    task = FunctionTask(climb, "score")
    first = run_trial(make_trial(id="t000001", budget=2), task, url)
    assert first["result"]["state"] == "complete"
    assert [p["epoch"] for p in first["curve"]] == [1, 2]
    saved = open_store(url).saved_state("t000001")
    assert saved is not None and (saved.step, saved.state) == (2, {"score": 2.0})
    promoted = make_trial(id="t000002", budget=4, rung=1, parent="t000001", parent_budget=2)
    second = run_trial(promoted, task, url)
    assert [p["epoch"] for p in second["curve"]] == [3, 4]
    assert [p["score"] for p in second["curve"]] == [3.0, 4.0]  # from the parent's 2.0
    assert second["result"]["metrics"]["score"] == 4.0


@pytest.mark.parametrize(
    ("fn", "kind", "error", "epochs"),
    [
        (reports_nan, "diverged", r"the objective score came out nan", [1, 2]),
        (raises, "error", r"RuntimeError: the data loader broke", [1]),
        (
            reports_something_else,
            "error",
            r"neither reported nor returned the objective 'score'.*"
            r"received: reported metrics \['accuracy', 'loss'\], returned None",
            [1],
        ),
    ],
)
def test_a_failed_trial_is_a_fail_row_with_its_kind_and_keeps_its_curve(
    fn: Any, kind: str, error: str, epochs: list[int]
) -> None:
    outcome = run_trial(make_trial(), FunctionTask(fn, "score"), None)
    result = TrialResult.from_dict(outcome["result"])
    assert not result.ok
    assert result.error_kind == kind
    assert result.error is not None
    assert re.search(error, result.error, re.DOTALL), result.error
    assert [p["epoch"] for p in outcome["curve"]] == epochs


def test_a_worker_that_cannot_import_the_function_fails_the_trial_and_says_how_to_fix() -> None:
    task = FunctionTask(climb, "score")
    # What a worker unpickles: the module is imported when the first trial runs.
    rebuild, arguments = task.__reduce__()
    lost = rebuild("no_such_mod:climb", *arguments[1:])
    outcome = run_trial(make_trial(), lost, None)
    result = TrialResult.from_dict(outcome["result"])
    assert result.error_kind == "import"
    assert result.error is not None
    assert "cannot use the train function 'no_such_mod:climb' on this worker" in result.error
    assert "--upload" in result.error


def test_an_architecture_task_refuses_a_configuration() -> None:
    outcome = run_trial(make_trial(), NB201TabularTask(), None)
    result = TrialResult.from_dict(outcome["result"])
    assert result.error is not None
    assert "NB201TabularTask task evaluates architectures, not configurations" in result.error


# -- end to end: ASHA on a LocalCluster of worker processes ------------------------------------

_MODULE = """
import torch


def space(s):
    return {"width": s.choice("width", [1, 2, 3, 4, 5, 6]), "rate": s.float("rate", 0.1, 1.0)}


def fit(config, ctx):
    state = ctx.restore()
    score = torch.zeros(()) if state is None else state["score"]
    for epoch in range(ctx.trained_epochs + 1, ctx.budget + 1):
        score = score + config["rate"] * config["width"]
        ctx.report(epoch, score=score.item(), started_at=ctx.trained_epochs)
        ctx.save({"score": score})
"""


@pytest.mark.slow
def test_asha_with_a_function_task_continues_promotions_from_their_parents_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from morphml_dask.driver import search_from_experiment
    from morphml_dask.experiment import load_experiment
    from morphml_dask.testing import local_client

    monkeypatch.setattr(sys, "path", list(sys.path))
    module = f"asha_fn_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(_MODULE))
    (tmp_path / "search.yaml").write_text(
        textwrap.dedent(f"""
        name: asha-function
        space: {{function: "{module}:space"}}
        task: {{function: "{module}:fit", objective: score, direction: maximize}}
        optimizer: {{name: asha, budgets: [1, 3], eta: 3, seed: 0}}
        max_trials: 12
        store: {tmp_path / "store"}
        """)
    )
    # The module sits next to the experiment: its folder goes on the path of the driver and,
    # inherited, of the local cluster's worker processes.
    experiment = load_experiment(tmp_path / "search.yaml")
    with local_client(n_workers=2, threads_per_worker=1) as client:
        table = search_from_experiment(experiment, client=client).run()
    store = open_store(str(tmp_path / "store"))
    assert len(table) == 12 and set(table["state"]) == {"complete"}
    records = {r.trial_id: r for r in store.records()}
    curves = store.curves()
    promoted = [r for r in records.values() if r.trial.parent is not None]
    assert promoted, "ASHA promoted no trial"
    for record in records.values():
        trial = record.trial
        curve = curves.sel(trial=trial.id).dropna("epoch", subset=["score"])
        epochs = curve["epoch"].values.tolist()
        assert epochs == list(range(trial.parent_budget + 1, trial.budget + 1)), trial
        assert set(curve["started_at"].values.tolist()) == {float(trial.parent_budget)}
        saved = store.saved_state(trial.id)
        assert saved is not None and saved.step == trial.budget
        if trial.parent is not None:  # the first epoch adds to the parent's last score
            config = trial.arch.value  # type: ignore[union-attr]
            parent_last = curves["score"].sel(trial=trial.parent).dropna("epoch").values[-1]
            first = float(curve["score"].values[0])
            assert first == pytest.approx(parent_last + config["rate"] * config["width"])
