"""Helpers of the dashboard tests: searches to watch, HTTP and waiting."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import scripted_trials
from distributed import Client

from morphml_dask.driver import Search
from morphml_dask.faults import FlakyTask
from morphml_dask.optim import RandomSearch, RegularizedEvolution
from morphml_dask.prune import SuccessiveHalving
from morphml_dask.space import CellSpace, FunctionSpace
from morphml_dask.tasks import FunctionTask, NB201TabularTask, TrialContext

SLOTS = 4  # of the dashboard_client fixture: 2 workers x 2 threads
BUDGET = 9
# Seconds a step of `climb_then_save` takes, and how long it takes to return once told to
# stop: each longer than the driver's message interval over a trial's life, so that the
# page sees trials running and trials told to stop.
STEP_S = 0.2
SAVE_S = 1.2


def make_search(client: Client, store: Path, trials: int, time_scale: float) -> Search:
    """Regularized evolution on the tabular NAS-Bench-201 task, a tenth of the trials
    raising: failures show up as such. ``time_scale`` sets how long trials sleep."""
    task = FlakyTask(NB201TabularTask("cifar10", time_scale=time_scale), 0.1, 0.0, seed=1)
    optimizer = RegularizedEvolution(
        CellSpace(), population_size=10, sample_size=3, max_trials=trials, seed=0
    )
    return Search(
        optimizer,
        task,
        store=str(store),
        client=client,
        name=f"watched-{uuid.uuid4().hex[:6]}",
    )


def climb_then_save(config: dict[str, Any], ctx: TrialContext) -> None:
    """`scripted_trials.climb`, slower, and taking `SAVE_S` to return once told to stop, as
    a trial saving its weights would."""
    for step in range(ctx.trained_epochs + 1, ctx.budget + 1):
        time.sleep(STEP_S)
        ctx.report(step, score=scripted_trials.score(config["quality"], step))
        if ctx.should_stop():
            time.sleep(SAVE_S)
            return


def make_pruned_search(client: Client, store: Path, trials: int) -> Search:
    """Random search over the scripted curves, stopped early by successive halving: the
    trials report each step live, and about two in three are pruned."""
    optimizer = RandomSearch(
        FunctionSpace(scripted_trials.space),
        budget=BUDGET,
        max_trials=trials,
        seed=1,
        objective="score",
    )
    return Search(
        optimizer,
        FunctionTask(climb_then_save, objective="score"),
        store=str(store),
        client=client,
        name=f"pruned-{uuid.uuid4().hex[:6]}",
        pruner=SuccessiveHalving(min_budget=1, eta=3, max_budget=BUDGET),
    )


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def wait_for(condition: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        time.sleep(0.1)
