"""Helpers of the dashboard tests: a search to watch, HTTP and waiting."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from distributed import Client

from morphml_dask.driver import Search
from morphml_dask.faults import FlakyTask
from morphml_dask.optim import RegularizedEvolution
from morphml_dask.space import CellSpace
from morphml_dask.tasks import NB201TabularTask

SLOTS = 4  # of the dashboard_client fixture: 2 workers x 2 threads


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


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def wait_for(condition: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        time.sleep(0.1)
