"""Workloads and yardsticks shared by the performance benchmarks.

- `lognormal_durations`: the reference workload (2,000 trials, median 0.5 s, sigma 0.5,
  ``numpy.random.default_rng(0)``), the same list for every tool compared;
- `nb201_durations`: simulated NAS-Bench-201 training times (`NB201TabularTask`), scaled;
- `greedy_makespan`: the makespan of a zero-overhead greedy list schedule, the yardstick of
  every utilisation figure;
- `bare_loop`, `bare_submit_rate`, `map_rate`: plain Dask with no search around it;
- `ScheduledSearch` and `SleepTask`: an optimizer and a task that make `Search` run a given
  list of durations, trial ``i`` sleeping ``durations[i - 1]``, so the search and the bare
  loop run exactly the same work;
- `local_cluster`: the ``LocalCluster`` of worker processes every benchmark runs on.

Importing this module registers it with cloudpickle by value, so worker processes need not
find ``benchmarks/`` on their path to run a `SleepTask`.
"""

from __future__ import annotations

import heapq
import statistics
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import cloudpickle  # type: ignore[import-untyped]
import numpy as np

from morphml_dask.optim import BaseOptimizer
from morphml_dask.space import CellSpace
from morphml_dask.tasks import BaseTask, Evaluation, NB201TabularTask
from morphml_dask.trial import Trial, TrialResult

if TYPE_CHECKING:
    from distributed import Client

    from morphml_dask.space import ArchGraph

__all__ = [
    "ScheduledSearch",
    "SleepTask",
    "bare_loop",
    "bare_submit_rate",
    "greedy_makespan",
    "local_cluster",
    "lognormal_durations",
    "map_rate",
    "nb201_durations",
    "nb201_time_scale",
]

cloudpickle.register_pickle_by_value(sys.modules[__name__])

# The reference workload every tool is compared on.
REFERENCE: dict[str, Any] = {"trials": 2000, "median_s": 0.5, "sigma": 0.5, "seed": 0, "slots": 50}


def lognormal_durations(
    trials: int = 2000, median: float = 0.5, sigma: float = 0.5, seed: int = 0
) -> list[float]:
    """Seconds per trial: lognormal with the given median (``exp(mu)``) and ``sigma``."""
    rng = np.random.default_rng(seed)
    return [float(d) for d in rng.lognormal(np.log(median), sigma, size=trials)]


def nb201_time_scale(median: float, sample: int = 2000, seed: int = 0) -> float:
    """The ``time_scale`` that makes the median 12-epoch NAS-Bench-201 trial last ``median`` s
    (the median over ``sample`` random cells)."""
    space, task = CellSpace(), NB201TabularTask("cifar10")
    rng = np.random.default_rng(seed)
    cells = rng.choice(len(space), size=min(sample, len(space)), replace=False)
    costs = [task.evaluate(space.from_index(int(i)), 12).metrics["cost_seconds"] for i in cells]
    return median / float(statistics.median(costs))


def nb201_durations(
    trials: int, median: float = 0.5, epochs: int = 12, seed: int = 0
) -> list[float]:
    """Simulated training seconds of ``trials`` random cells, scaled to ``median``."""
    space, task = CellSpace(), NB201TabularTask("cifar10")
    scale = nb201_time_scale(median, seed=seed)
    rng = np.random.default_rng(seed + 1)
    cells = rng.integers(0, len(space), size=trials)
    return [
        task.evaluate(space.from_index(int(i)), epochs).metrics["cost_seconds"] * scale
        for i in cells
    ]


def greedy_makespan(durations: Sequence[float], slots: int) -> float:
    """Makespan of a zero-overhead list schedule: each job, in order, to the earliest-free
    slot. No scheduler does better without knowing the durations in advance."""
    free = [0.0] * slots
    for duration in durations:
        heapq.heapreplace(free, free[0] + duration)
    return max(free)


# -- plain Dask ----------------------------------------------------------------------------


def bare_loop(client: Client, durations: Sequence[float], slots: int) -> dict[str, float]:
    """``time.sleep`` tasks of ``durations``, ``slots`` in flight, one ``client.submit`` per
    completion through ``as_completed``: the loop every Dask user writes first. Returns its
    makespan (first start to last stop on the workers, from the task stream) and wall time."""
    from distributed import as_completed, get_task_stream

    pending = iter(durations)
    with get_task_stream(client) as stream:
        start = time.perf_counter()
        first = [
            client.submit(time.sleep, d, pure=False)
            for d, _ in zip(pending, range(slots), strict=False)
        ]
        completed = as_completed(first)  # type: ignore[no-untyped-call]
        for future in completed:
            future.release()
            duration = next(pending, None)
            if duration is not None:
                completed.add(client.submit(time.sleep, duration, pure=False))  # type: ignore[no-untyped-call]
        wall = time.perf_counter() - start
    spans = [
        (part["start"], part["stop"])
        for task in stream.data
        for part in task["startstops"]
        if part["action"] == "compute"
    ]
    makespan = max(stop for _, stop in spans) - min(begin for begin, _ in spans)
    return {"makespan_s": makespan, "wall_s": wall}


def _noop() -> None:
    return None


def bare_submit_rate(client: Client, tasks: int, slots: int) -> float:
    """Zero-length tasks per second through the bare loop (one submit per completion)."""
    from distributed import as_completed

    start = time.perf_counter()
    left = tasks - slots
    completed = as_completed(  # type: ignore[no-untyped-call]
        [client.submit(_noop, pure=False) for _ in range(min(slots, tasks))]
    )
    for future in completed:
        future.release()
        if left > 0:
            left -= 1
            completed.add(client.submit(_noop, pure=False))  # type: ignore[no-untyped-call]
    return tasks / (time.perf_counter() - start)


def map_rate(client: Client, tasks: int) -> float:
    """Zero-length tasks per second submitted at once with ``client.map`` and waited for."""
    from distributed import wait

    start = time.perf_counter()
    futures = client.map(_noop_item, range(tasks), pure=False)
    wait(futures)  # type: ignore[no-untyped-call]
    del futures
    return tasks / (time.perf_counter() - start)


def _noop_item(item: int) -> int:
    return item


@contextmanager
def local_cluster(slots: int, workers: int = 2) -> Iterator[Client]:
    """A client of a ``LocalCluster`` of ``workers`` processes sharing ``slots`` threads (one
    process when ``slots`` is 1), warmed up so that imports are not timed."""
    from morphml_dask.testing import local_client

    workers = max(1, min(workers, slots))
    with local_client(n_workers=workers, threads_per_worker=slots // workers) as client:
        client.wait_for_workers(workers)
        client.run(_warm_worker)
        _warm_worker()
        yield client


def _warm_worker() -> None:
    from morphml_dask.driver import run_trial

    NB201TabularTask("cifar10").evaluate(CellSpace().from_index(0), 12)
    trial = next(iter(ScheduledSearch(1).ask(1)))
    run_trial(trial, SleepTask([0.0]))


# -- the same work through a Search --------------------------------------------------------


class SleepTask(BaseTask):
    """Trial ``i`` sleeps ``durations[i - 1]`` seconds, ``i`` being its budget (see
    `ScheduledSearch`), and reports a made-up accuracy that falls with the duration."""

    name = "sleep"

    def __init__(self, durations: Sequence[float]) -> None:
        self.durations = [float(d) for d in durations]

    def evaluate(
        self,
        arch: ArchGraph,
        budget: int,
        *,
        device: str = "cpu",
        weights: Mapping[str, Any] | None = None,
        trained_epochs: int = 0,
    ) -> Evaluation:
        del arch, device, weights, trained_epochs
        seconds = self.durations[(budget - 1) % len(self.durations)]
        start = time.perf_counter()
        if seconds > 0:
            time.sleep(seconds)
        return Evaluation(
            {
                "val_accuracy": 1.0 / (1.0 + seconds),
                "cost_seconds": seconds,
                "wall_time": time.perf_counter() - start,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "trials": len(self.durations)}


class ScheduledSearch(BaseOptimizer):
    """Asks ``max_trials`` trials in order, trial ``i`` with budget ``i``, so that a
    `SleepTask` runs ``durations[i - 1]`` for it and no two trials share a (fingerprint,
    budget) key: none is answered from the store instead of running.

    The architectures cycle through a few pre-built NAS-Bench-201 cells: building and
    fingerprinting a cell costs about 2 ms, an optimizer's cost (see
    ``benchmarks/optimizer_overhead.py``) that would hide the driver's own.
    """

    name = "scheduled"

    def __init__(self, max_trials: int, *, cells: int = 64, seed: int = 0) -> None:
        space = CellSpace()
        super().__init__(space, max_trials=max_trials, seed=seed)
        picked = self.rng.choice(len(space), size=cells, replace=False)
        self._cells = [space.from_index(int(i)) for i in picked]
        for cell in self._cells:
            _ = cell.fingerprint  # computed once here, reused by every trial of the cell

    def _suggest(self, n: int) -> list[Trial]:
        return [
            self._new_trial(self._cells[self._asked % len(self._cells)], self._asked + 1)
            for _ in range(n)
        ]

    def _observe(self, trial: Trial, result: TrialResult, score: float) -> None:
        del trial, result, score
