"""Driver utilisation: how close `Search` comes to a zero-overhead schedule on a real cluster.

    python benchmarks/driver_utilisation.py --trials 1000 --median 0.5 \
        --json benchmarks/results/driver_utilisation.json

On a ``LocalCluster`` of worker processes (2 x 25 threads: 50 slots by default), the
simulated NAS-Bench-201 task (`NB201TabularTask`, which sleeps ``cost_seconds * time_scale``)
is searched by asynchronous regularized evolution (population 10, sample 3) and by the
synchronous genetic algorithm (population 50, elitism 2), each through
``Search(..., store=FOLDER)``, a fresh temporary folder each (the worker processes write to
the store too, so not the driver's memory; a local folder costs what a real store costs).
``time_scale`` is chosen so that the median 12-epoch
trial sleeps ``--median`` seconds (the median cost over ``--cost-sample`` random cells).

For each run, from the trials table (``start_time``/``end_time`` are measured on the worker
around the trial; trials answered from the store without running are left out):

- makespan: first start to last end; also the wall time of ``search.run()``;
- busy slot-seconds ``sum(end - start)`` and utilisation ``busy / (slots * makespan)``;
- ideal: the makespan of a zero-overhead greedy list schedule of the same durations, in
  trial-id order, each to the earliest-free of ``slots`` slots; ``ideal / makespan`` is 1.0
  for a driver that never lets a slot wait (for the synchronous GA it also shows the cost of
  the generation barriers, which the greedy schedule does not have);
- a bare Dask loop over the same durations, ``client.submit(time.sleep, d, pure=False)``
  keeping ``slots`` tasks in flight with ``as_completed(...).add``, its makespan measured the
  same way (worker start/stop times from the task stream) and ``bare / ours``: 1.0 or more
  means the search is no slower than the bare loop.

``--phases`` also times the driver loop's phases (ask, submit, collect, tell, store appends,
checkpoints, and waiting for the next completion) by wrapping the methods of the `Search`,
its optimizer and its store in timers, and reports them per run.
"""

from __future__ import annotations

import argparse
import functools
import heapq
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask.driver import Search
from morphml_dask.driver._session import SearchSession
from morphml_dask.driver._state import SearchState
from morphml_dask.optim import BaseOptimizer, GeneticAlgorithm, RegularizedEvolution
from morphml_dask.space import NUM_CELLS, CellSpace
from morphml_dask.storage import open_store
from morphml_dask.tasks import NB201TabularTask

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

DEFAULT_JSON = Path(__file__).parent / "results" / "driver_utilisation.json"

Factory = Callable[[int, int], BaseOptimizer]
POPULATION, ELITISM = 50, 2
RUNS: dict[str, Factory] = {
    "async-evolution": lambda trials, seed: RegularizedEvolution(
        CellSpace(), population_size=10, sample_size=3, budget=12, max_trials=trials, seed=seed
    ),
    "sync-genetic": lambda trials, seed: GeneticAlgorithm(
        CellSpace(),
        population_size=POPULATION,
        elitism=ELITISM,
        budget=12,
        max_trials=trials,
        seed=seed,
    ),
}
# Trials asked per generation by the synchronous runs: the first generation is the whole
# population, each later one the population less the elites, which are not evaluated again
# (true while every trial completes, as on this task).
GENERATIONS: dict[str, tuple[int, int]] = {"sync-genetic": (POPULATION, POPULATION - ELITISM)}


# -- the time scale and the ideal schedule -------------------------------------------------


def median_cost(sample: int, seed: int) -> float:
    """Median simulated cost (s) of a 12-epoch trial over ``sample`` random cells (0: all)."""
    space = CellSpace()
    task = NB201TabularTask("cifar10")
    rng = np.random.default_rng(seed)
    indices = (
        range(NUM_CELLS)
        if sample <= 0 or sample >= NUM_CELLS
        else rng.choice(NUM_CELLS, size=sample, replace=False).tolist()
    )
    costs = [task.evaluate(space.from_index(int(i)), 12).metrics["cost_seconds"] for i in indices]
    return float(statistics.median(costs))


def greedy_makespan(durations: Sequence[float], slots: int) -> float:
    """Makespan of a zero-overhead list schedule: each job, in order, to the earliest-free slot."""
    free = [0.0] * slots
    for duration in durations:
        heapq.heapreplace(free, free[0] + duration)
    return max(free)


def barrier_makespan(durations: Sequence[float], slots: int, first: int, then: int) -> float:
    """`greedy_makespan` of each generation in turn, each waiting for the one before: the
    best a synchronous algorithm can do. ``durations`` holds every asked trial in id order
    (0 for trials answered from the store); generations have ``first``, then ``then`` trials."""
    total, start, size = 0.0, 0, first
    while start < len(durations):
        total += greedy_makespan(durations[start : start + size], slots)
        start, size = start + size, then
    return total


def running_percentiles(starts: FloatArray, ends: FloatArray, step: float = 0.05) -> list[float]:
    """10th, 50th and 90th percentile of the number of trials running, sampled every
    ``step`` seconds between the first start and the last end."""
    grid = np.arange(starts.min(), ends.max(), step)
    running = (starts[None, :] <= grid[:, None]) & (ends[None, :] > grid[:, None])
    return [float(v) for v in np.percentile(running.sum(axis=1), [10, 50, 90])]


# -- the runs ------------------------------------------------------------------------------


class PhaseTimer:
    """Seconds and calls per phase, collected by wrapping callables in `wrap`.

    Phases nest (``state.handle`` calls ``optimizer.ask`` and ``tell``, ``session._execute``
    calls ``session._submit`` and ``session._persist``): each
    gets its total time and its self time, the total less the phases it called, on the thread
    that called it (the store is written from a writer thread of its own).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.self_seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # .children: per open phase, seconds in phases it called
        self.submitted: dict[str, float] = {}  # trial id -> unix time of its submit
        self.collected: dict[str, float] = {}  # trial id -> unix time the loop took it

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            children: list[float] = self._local.__dict__.setdefault("children", [])
            start = time.perf_counter()
            children.append(0.0)
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = children.pop()
                if children:
                    children[-1] += elapsed
                with self._lock:
                    self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
                    self.self_seconds[name] = self.self_seconds.get(name, 0.0) + elapsed - inner
                    self.calls[name] = self.calls.get(name, 0) + 1

        return timed

    def instrument(self, search: Search) -> None:
        """Time the phases of ``search``'s loop: the store's and the optimizer's methods on
        the instances, the driver's on its classes (a session is made when the search runs;
        `restore` puts the classes back)."""
        store, optimizer = search.store, search.optimizer
        for name in ("append_records", "append_curves", "save_checkpoint"):
            setattr(store, name, self.wrap(f"store.{name}", getattr(store, name)))
        for name in ("ask", "tell", "state_dict"):
            setattr(optimizer, name, self.wrap(f"optimizer.{name}", getattr(optimizer, name)))
        self._patched = [
            (cls, name, getattr(cls, name))
            for cls, name in (
                (SearchSession, "_collect"),
                (SearchSession, "_execute"),
                (SearchSession, "_submit"),
                (SearchSession, "_persist"),
                (SearchState, "handle"),
                (SearchState, "_reused"),
            )
        ]
        for cls, name, function in self._patched:
            prefix = "session" if cls is SearchSession else "state"
            setattr(cls, name, self.wrap(f"{prefix}.{name}", function))
        submit, collect = SearchSession._submit, SearchSession._collect

        def stamped_submit(session: Any, instruction: Any) -> None:
            for trial in instruction.trials:
                self.submitted[trial.id] = time.time()
            submit(session, instruction)

        def stamped_collect(session: Any, futures: list[Any]) -> Any:
            now = time.time()
            for future in futures:
                self.collected[str(future.key).split("/")[1].split("+")[0]] = now
            return collect(session, futures)

        setattr(SearchSession, "_submit", stamped_submit)  # noqa: B010 (shadowing a method)
        setattr(SearchSession, "_collect", stamped_collect)  # noqa: B010

    def restore(self) -> None:
        """Put back the driver's methods that `instrument` wrapped."""
        for cls, name, function in getattr(self, "_patched", []):
            setattr(cls, name, function)

    def report(self, wall: float, ran: pd.DataFrame) -> dict[str, Any]:
        phases = {
            name: {
                "seconds": round(seconds, 4),
                "self_seconds": round(self.self_seconds[name], 4),
                "calls": self.calls[name],
                "self_ms_per_call": round(1e3 * self.self_seconds[name] / self.calls[name], 3),
                "self_share_of_wall": round(self.self_seconds[name] / wall, 4),
            }
            for name, seconds in sorted(self.seconds.items())
        }
        # Every phase the loop itself calls; the rest of the wall is waiting for completions.
        own = sum(self.seconds.get(n, 0.0) for n in _TOP_PHASES)
        ids = ran["trial_id"].astype(str)
        start, end = ran["start_time"].to_numpy(float), ran["end_time"].to_numpy(float)
        dispatch = start - ids.map(self.submitted).to_numpy(float)
        notice = ids.map(self.collected).to_numpy(float) - end
        return {
            "phases": phases,
            "driver_busy_s": round(own, 4),
            "wall_s": round(wall, 4),
            # submit -> start on a worker, and end on a worker -> the loop takes the result.
            "submit_to_start_ms_p50_p90": [round(float(v), 1) for v in _ms(dispatch)],
            "end_to_collect_ms_p50_p90": [round(float(v), 1) for v in _ms(notice)],
        }


# The loop's own work, none calling another: take results in, decide, carry the decisions out.
_TOP_PHASES = ("session._collect", "state.handle", "session._execute")


def _ms(seconds: np.ndarray[Any, Any]) -> FloatArray:
    return np.asarray(1e3 * np.nanpercentile(seconds, [50, 90]), dtype=np.float64)


def run_search(
    client: Client,
    kind: str,
    trials: int,
    time_scale: float,
    seed: int,
    *,
    lookahead: int | None,
    persist_interval: float | None,
    phases: bool,
) -> tuple[pd.DataFrame, float, PhaseTimer | None]:
    """One search on ``client`` into a fresh temporary folder: its trials table, wall time of
    ``run()`` and (with ``phases``) the phase timer."""
    timer = PhaseTimer() if phases else None
    with tempfile.TemporaryDirectory(prefix="morphml-utilisation-") as folder:
        search = Search(
            RUNS[kind](trials, seed),
            NB201TabularTask("cifar10", time_scale=time_scale),
            store=os.path.join(folder, kind),
            client=client,
            lookahead=lookahead,
            persist_interval=persist_interval,
            name=f"{kind}-{uuid.uuid4().hex[:8]}",
        )
        if timer is not None:
            timer.instrument(search)
        start = time.perf_counter()
        try:
            table = search.run()
        finally:
            if timer is not None:
                timer.restore()
        wall = time.perf_counter() - start
    return table, wall, timer


def bare_loop(client: Client, durations: Sequence[float], slots: int) -> tuple[float, float]:
    """`workloads.bare_loop`: makespan on the workers and the driver's wall time."""
    from workloads import bare_loop as bare

    result = bare(client, durations, slots)
    return result["makespan_s"], result["wall_s"]


def measure(
    client: Client,
    kind: str,
    slots: int,
    args: argparse.Namespace,
    time_scale: float,
) -> dict[str, Any]:
    """Run one search and its bare-loop twin; every figure the table and the JSON show."""
    cpu_before = cpu_seconds(client)
    table, wall, timer = run_search(
        client,
        kind,
        args.trials,
        time_scale,
        args.seed,
        lookahead=args.lookahead,
        persist_interval=args.persist_interval,
        phases=args.phases,
    )
    ran = table.dropna(subset=["start_time", "end_time"]).sort_values("trial_id")
    starts = ran["start_time"].to_numpy(dtype=float)
    ends = ran["end_time"].to_numpy(dtype=float)
    durations = (ends - starts).tolist()
    makespan = float(ends.max() - starts.min())
    busy = float(sum(durations))
    ideal = greedy_makespan(durations, slots)
    cpu_search = cpu_seconds(client)
    bare_makespan, bare_wall = bare_loop(client, durations, slots)
    cpu_bare = cpu_seconds(client)
    cpu = {
        # CPU time (all threads) per trial that ran: the driver process (the search loop,
        # the store writer, the client and, in a LocalCluster, the scheduler) and the workers.
        "cpu_ms_per_trial_driver": round(1e3 * (cpu_search[0] - cpu_before[0]) / len(ran), 2),
        "cpu_ms_per_trial_workers": round(1e3 * (cpu_search[1] - cpu_before[1]) / len(ran), 2),
        "bare_cpu_ms_per_task_driver": round(1e3 * (cpu_bare[0] - cpu_search[0]) / len(ran), 2),
        "bare_cpu_ms_per_task_workers": round(1e3 * (cpu_bare[1] - cpu_search[1]) / len(ran), 2),
    }
    barrier: dict[str, float] = {}
    if kind in GENERATIONS:
        every = table.sort_values("trial_id")
        asked = (every["end_time"] - every["start_time"]).fillna(0.0).tolist()
        barrier_ideal = barrier_makespan(asked, slots, *GENERATIONS[kind])
        barrier = {
            "barrier_ideal_s": round(barrier_ideal, 3),
            "barrier_ideal_over_makespan": round(barrier_ideal / makespan, 4),
        }
    result: dict[str, Any] = {
        "run": kind,
        "trials": len(table),
        "trials_run": len(ran),
        "trials_reused": int(table["reused"].sum()),
        "failed": int((table["state"] != "complete").sum()),
        "slots": slots,
        "median_s": round(float(np.median(durations)), 4),
        "mean_s": round(float(np.mean(durations)), 4),
        "makespan_s": round(makespan, 3),
        "run_wall_s": round(wall, 3),
        "busy_slot_s": round(busy, 3),
        "utilisation": round(busy / (slots * makespan), 4),
        "running_p10_p50_p90": running_percentiles(starts, ends),
        "ideal_s": round(ideal, 3),
        "ideal_over_makespan": round(ideal / makespan, 4),
        "ideal_over_run_wall": round(ideal / wall, 4),
        "bare_makespan_s": round(bare_makespan, 3),
        "bare_wall_s": round(bare_wall, 3),
        "bare_ideal_over_makespan": round(ideal / bare_makespan, 4),
        "bare_over_ours": round(bare_makespan / makespan, 4),
        "bare_wall_over_run_wall": round(bare_wall / wall, 4),
        **cpu,
        **barrier,
    }
    if timer is not None:
        result["driver"] = timer.report(wall, ran)
    return result


def cpu_seconds(client: Client) -> tuple[float, float]:
    """CPU seconds used so far by this process and by all the workers together."""
    workers = client.run(time.process_time)
    return time.process_time(), float(sum(workers.values()))


def _warm_driver() -> None:
    """Write a curve once, so the first run does not pay for loading xarray's Zarr backend."""
    import fsspec

    path = f"driver-utilisation/warm-{uuid.uuid4().hex}"
    open_store(f"memory://{path}").append_curves({"t000001": [{"epoch": 12, "accuracy": 1.0}]})
    fsspec.filesystem("memory").rm(path, recursive=True)


def _warm_worker() -> None:
    """Import the task and read its tables once, so the first trials do not pay for it."""
    from morphml_dask.space import CellSpace
    from morphml_dask.tasks import NB201TabularTask

    NB201TabularTask("cifar10").evaluate(CellSpace().from_index(0), 12)


# -- output --------------------------------------------------------------------------------


def _table(results: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'run':<17}{'trials':>7}{'ran':>6}{'slots':>6}{'median s':>9}{'makespan s':>11}"
        f"{'run() s':>9}{'ideal s':>9}{'ideal/mk':>9}{'util':>7}{'bare mk s':>10}"
        f"{'bare/ours':>10}{'running p50':>12}"
    )
    lines = [header]
    for r in results:
        lines.append(
            f"{r['run']:<17}{r['trials']:>7}{r['trials_run']:>6}{r['slots']:>6}"
            f"{r['median_s']:>9.3f}{r['makespan_s']:>11.2f}{r['run_wall_s']:>9.2f}"
            f"{r['ideal_s']:>9.2f}{r['ideal_over_makespan']:>9.3f}{r['utilisation']:>7.3f}"
            f"{r['bare_makespan_s']:>10.2f}{r['bare_over_ours']:>10.3f}"
            f"{r['running_p10_p50_p90'][1]:>12.0f}"
        )
    lines.append(
        f"\n{'CPU ms per trial':<17}{'driver':>9}{'workers':>9}{'bare driver':>13}"
        f"{'bare workers':>14}"
    )
    for r in results:
        lines.append(
            f"{r['run']:<17}{r['cpu_ms_per_trial_driver']:>9.1f}"
            f"{r['cpu_ms_per_trial_workers']:>9.1f}{r['bare_cpu_ms_per_task_driver']:>13.1f}"
            f"{r['bare_cpu_ms_per_task_workers']:>14.1f}"
        )
    for r in results:
        if "barrier_ideal_s" in r:
            lines.append(
                f"{r['run']}: with its generation barriers the ideal is"
                f" {r['barrier_ideal_s']:.2f} s (barrier ideal / makespan"
                f" {r['barrier_ideal_over_makespan']:.3f})"
            )
    for r in results:
        driver = r.get("driver")
        if driver is None:
            continue
        lines.append(
            f"\n{r['run']}: driver busy {driver['driver_busy_s']:.2f} s (self time per phase"
            f" below) of run() wall {driver['wall_s']:.2f} s; submit->start"
            f" p50/p90 {driver['submit_to_start_ms_p50_p90']} ms, end->collect p50/p90"
            f" {driver['end_to_collect_ms_p50_p90']} ms"
        )
        lines.append(f"  {'phase':<22}{'total s':>9}{'self s':>9}{'calls':>7}{'self ms/call':>13}")
        for name, p in driver["phases"].items():
            lines.append(
                f"  {name:<22}{p['seconds']:>9.3f}{p['self_seconds']:>9.3f}{p['calls']:>7}"
                f"{p['self_ms_per_call']:>13.3f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--median", type=float, default=0.5, help="median trial seconds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=25, help="threads per worker")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    parser.add_argument("--lookahead", type=int, default=None, help="default: config")
    parser.add_argument(
        "--persist-interval", type=float, default=None, help="seconds; default: config"
    )
    parser.add_argument("--cost-sample", type=int, default=2000, help="cells; 0: all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, one row each")
    parser.add_argument("--phases", action="store_true", help="time the driver loop's phases")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    cost = median_cost(args.cost_sample, args.seed)
    time_scale = args.median / cost
    started = time.perf_counter()
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=args.workers,
            threads_per_worker=args.threads,
            processes=True,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        cluster_start = time.perf_counter() - started
        client.wait_for_workers(args.workers)
        client.run(_warm_worker)
        _warm_driver()
        slots = args.workers * args.threads
        results = [
            measure(client, kind, slots, args, time_scale)
            for _ in range(args.repeat)
            for kind in args.runs
        ]
    print(_table(results))
    document = {
        "benchmark": "driver_utilisation",
        "settings": {
            "trials": args.trials,
            "median_target_s": args.median,
            "median_12_epoch_cost_s": round(cost, 3),
            "cost_sample": args.cost_sample,
            "time_scale": time_scale,
            "workers": args.workers,
            "threads_per_worker": args.threads,
            "slots": args.workers * args.threads,
            "lookahead": args.lookahead,
            "persist_interval": args.persist_interval,
            "seed": args.seed,
            "repeat": args.repeat,
            "cluster_start_s": round(cluster_start, 3),
        },
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": _cpus(),
        "argv": sys.argv[1:],
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {args.json}")


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
