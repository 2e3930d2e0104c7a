"""The performance suite: how much a `Search` costs next to plain Dask and plain PyTorch.

    python benchmarks/performance.py utilisation [--quick] [--repeat N] [--json PATH]
    python benchmarks/performance.py overhead | scaling | training [--device cuda] | many

Every benchmark runs its own ``LocalCluster`` of worker processes on this machine, measures
a search and its yardstick side by side in the same run, prints a table and writes
``benchmarks/results/perf_<name>.json``; ``benchmarks/run_all`` runs them all.

- ``utilisation``: simulated NAS-Bench-201 trials (median 0.5 s; 5 s too unless
  ``--quick``) at 8, 16, 32 and 50 slots, searched by asynchronous regularized evolution,
  ASHA and the synchronous genetic algorithm; then the reference workload: 2,000 lognormal
  sleeps (median 0.5 s, sigma 0.5, ``default_rng(0)``) on 50 slots. Per run: the makespan
  of a zero-overhead greedy schedule of the same durations over the measured makespan
  (first start to last end on the workers), and a bare Dask loop's makespan (one submit
  per completion) on the same durations over ours.
- ``overhead``: zero-length trials per second through the whole stack (ask, submit,
  as_completed, store appends, tell), packed (the default) and one per task, next to the
  bare submit loop and ``client.map`` in the same run, and a profile of where the driver's
  time goes.
- ``scaling``: per-trial time at 1 slot over 50 x the per-trial time at 50 slots, trials
  of a fixed duration.
- ``training``: one digits architecture trained through a `Search` (the worker's path,
  ``run_trial``) against a plain PyTorch loop with the same model, data, epochs, batch size,
  seed and one thread.
- ``many``: one search of 100,000 zero-length trials (10,000 with ``--quick``) on a cluster
  whose scheduler runs in a process of its own: trials per second per 10 % window, and the
  driver's and the scheduler's resident memory sampled every 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import workloads as wl

from morphml_dask.driver import Search
from morphml_dask.optim import (
    ASHA,
    BaseOptimizer,
    GeneticAlgorithm,
    RandomSearch,
    RegularizedEvolution,
)
from morphml_dask.space import CellSpace, DagSpace
from morphml_dask.tasks import BaseTask, NB201TabularTask, TrainingTask

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

RESULTS = Path(__file__).parent / "results"


# -- running a search ----------------------------------------------------------------------


def timed_search(
    client: Client, optimizer: BaseOptimizer, task: BaseTask, **options: Any
) -> tuple[pd.DataFrame, float]:
    """A search into a fresh temporary folder: its trials table and the wall time of ``run``.

    The worker processes write to the store too, so it cannot be the driver's memory; a
    local folder costs the search what a real store costs (Parquet and Zarr writes)."""
    with tempfile.TemporaryDirectory(prefix="morphml-perf-") as folder:
        search = Search(
            optimizer,
            task,
            store=os.path.join(folder, "store"),
            client=client,
            name=f"perf-{uuid.uuid4().hex[:8]}",
            **options,
        )
        start = time.perf_counter()
        table = search.run()
        wall = time.perf_counter() - start
    return table, wall


def spans(table: pd.DataFrame) -> tuple[list[float], float]:
    """Durations of the trials that ran, in trial-id order, and the makespan."""
    ran = table.dropna(subset=["start_time", "end_time"]).sort_values("trial_id")
    starts, ends = ran["start_time"].to_numpy(float), ran["end_time"].to_numpy(float)
    return (ends - starts).tolist(), float(ends.max() - starts.min())


def compare(
    client: Client, table: pd.DataFrame, wall: float, slots: int, nominal: list[float] | None
) -> dict[str, Any]:
    """Ideal / makespan and bare loop / ours for one search (ideal from ``nominal`` durations
    when given, else from the measured ones)."""
    durations, makespan = spans(table)
    ideal = wl.greedy_makespan(nominal if nominal is not None else durations, slots)
    bare = wl.bare_loop(client, nominal if nominal is not None else durations, slots)
    return {
        "trials": len(table),
        "trials_run": len(durations),
        "median_s": round(float(np.median(durations)), 4),
        "makespan_s": round(makespan, 3),
        "run_wall_s": round(wall, 3),
        "ideal_s": round(ideal, 3),
        "ideal_over_makespan": round(ideal / makespan, 4),
        "ideal_over_run_wall": round(ideal / wall, 4),
        "utilisation": round(sum(durations) / (slots * makespan), 4),
        "bare_makespan_s": round(bare["makespan_s"], 3),
        "bare_ideal_over_makespan": round(ideal / bare["makespan_s"], 4),
        "bare_over_ours": round(bare["makespan_s"] / makespan, 4),
    }


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return round(float(statistics.median(r[key] for r in rows)), 4)


# -- 1. utilisation ------------------------------------------------------------------------

Factory = Callable[[int, int], BaseOptimizer]
OPTIMIZERS: dict[str, Factory] = {
    "async-rea": lambda n, seed: RegularizedEvolution(
        CellSpace(), population_size=10, sample_size=3, budget=12, max_trials=n, seed=seed
    ),
    "async-asha": lambda n, seed: ASHA(
        CellSpace(), budgets=[4, 12], eta=3, max_trials=n, seed=seed
    ),
    "sync-ga": lambda n, seed: GeneticAlgorithm(
        CellSpace(), population_size=50, elitism=2, budget=12, max_trials=n, seed=seed
    ),
}


def utilisation(args: argparse.Namespace) -> dict[str, Any]:
    slot_counts = [8, 50] if args.quick else [8, 16, 32, 50]
    medians = [0.5] if args.quick else [0.5, 5.0]
    rows: list[dict[str, Any]] = []
    for slots in slot_counts:
        with wl.local_cluster(slots) as client:
            for median in medians if slots == 50 else [0.5]:
                scale = wl.nb201_time_scale(median)
                waves = 3 if median > 1 else (6 if args.quick else 12)
                runs = OPTIMIZERS if median < 1 else {"async-rea": OPTIMIZERS["async-rea"]}
                for kind, factory in runs.items():
                    # The goals are at 50 slots: repeats there, one run of the smaller sizes.
                    for repeat in range(args.repeat if slots == 50 else 1):
                        table, wall = timed_search(
                            client,
                            factory(max(100, waves * slots), repeat),
                            NB201TabularTask("cifar10", time_scale=scale),
                        )
                        row = {"workload": "nb201", "run": kind, "slots": slots}
                        row |= {"median_target_s": median, "repeat": repeat}
                        rows.append(row | compare(client, table, wall, slots, None))
                        _progress(rows[-1])
    reference = dict(wl.REFERENCE)
    if args.quick:
        reference["trials"] = 500
    durations = wl.lognormal_durations(
        reference["trials"], reference["median_s"], reference["sigma"], reference["seed"]
    )
    with wl.local_cluster(50) as client:
        for repeat in range(args.reference_repeat):
            table, wall = timed_search(
                client, wl.ScheduledSearch(len(durations)), wl.SleepTask(durations)
            )
            row = {"workload": "lognormal", "run": "scheduled", "slots": 50, "repeat": repeat}
            rows.append(row | compare(client, table, wall, 50, durations))
            _progress(rows[-1])
    ref = [r for r in rows if r["workload"] == "lognormal"]
    summary = {
        "async_utilisation_50": _median(ref, "ideal_over_makespan"),
        "async_vs_bare_50": _median(ref, "bare_over_ours"),
        "reference_trials": reference["trials"],
    }
    return {"settings": {"reference": reference}, "results": rows, "summary": summary}


def _progress(row: dict[str, Any]) -> None:
    print(
        f"  {row['workload']:<10}{row['run']:<11}{row['slots']:>4} slots"
        f"{row.get('median_target_s', 0.5):>5} s  ideal/mk {row['ideal_over_makespan']:.3f}"
        f"  bare/ours {row['bare_over_ours']:.3f}  util {row['utilisation']:.3f}",
        flush=True,
    )


# -- 2. driver overhead --------------------------------------------------------------------

PACKING = (("packed", 32), ("unpacked", 1))


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    n = 1000 if args.quick else 3000
    rows = []
    with wl.local_cluster(50) as client:
        for repeat in range(args.repeat):
            row: dict[str, Any] = {"repeat": repeat, "trials": n}
            for label, pack in (("search", 32), ("search_unpacked", 1)):  # default, and off
                table, wall = timed_search(
                    client, wl.ScheduledSearch(n), wl.SleepTask([0.0]), max_pack=pack
                )
                assert len(table) == n and table["trial_id"].is_unique
                row[f"{label}_trials_per_s"] = round(n / wall, 1)
            row["bare_submit_per_s"] = round(wl.bare_submit_rate(client, n, 50), 1)
            row["map_per_s"] = round(wl.map_rate(client, n), 1)
            row["ratio_vs_bare"] = round(row["search_trials_per_s"] / row["bare_submit_per_s"], 3)
            rows.append(row)
            print("  " + "  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
        profiles = {
            label: profile_search(client, n, pack)
            for label, pack in (("packed", 32), ("unpacked", 1))
        }
    summary = {
        "driver_trials_per_s": _median(rows, "search_trials_per_s"),
        "driver_vs_bare_ratio": _median(rows, "ratio_vs_bare"),
        "bare_submit_per_s": _median(rows, "bare_submit_per_s"),
        "map_per_s": _median(rows, "map_per_s"),
        "unpacked_trials_per_s": _median(rows, "search_unpacked_trials_per_s"),
    }
    return {"results": rows, "profile": profiles, "summary": summary}


def profile_search(client: Client, n: int, pack: int) -> dict[str, Any]:
    """cProfile of the driver's thread over one search: the share of its wall time in each
    phase (waiting for results, submitting, collecting, ...)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    _, wall = timed_search(client, wl.ScheduledSearch(n), wl.SleepTask([0.0]), max_pack=pack)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    phases = {
        "waiting for results (as_completed)": ("_next_completions",),
        "taking results in (gather, decoding)": ("_collect",),
        "deciding (the state machine, optimizer included)": ("handle",),
        "optimizer ask": ("ask",),
        "submitting (client.submit)": ("_submit",),
        "handing batches to the store writer and checkpoints": ("_persist",),
        "watching workers": ("look",),
    }
    shares = {}
    for phase, names in phases.items():
        seconds = sum(
            cumulative
            for (filename, _, function), (_, _, _, cumulative, _) in stats.items()
            if function in names and ("morphml_dask" in filename or "workloads" in filename)
        )
        shares[phase] = round(seconds / wall, 3)
    return {"trials": n, "max_pack": pack, "trials_per_s": round(n / wall, 1), "share": shares}


# -- 3. scaling ----------------------------------------------------------------------------


def scaling(args: argparse.Namespace) -> dict[str, Any]:
    seconds = 0.5
    sizes = {1: 10 if args.quick else 30, 50: 500 if args.quick else 1500}
    per_trial: dict[int, list[float]] = {1: [], 50: []}
    rows = []
    for slots, n in sizes.items():
        with wl.local_cluster(slots) as client:
            for repeat in range(args.repeat):
                table, wall = timed_search(client, wl.ScheduledSearch(n), wl.SleepTask([seconds]))
                _, makespan = spans(table)
                per_trial[slots].append(wall / n)
                rows.append({"slots": slots, "trials": n, "repeat": repeat, "run_wall_s": wall})
                rows[-1]["makespan_s"] = makespan
                print(f"  {slots:>3} slots {n} trials: run() {wall:.2f} s", flush=True)
    t1, t50 = statistics.median(per_trial[1]), statistics.median(per_trial[50])
    efficiency = t1 / (50 * t50)
    print(f"  efficiency {efficiency:.3f}")
    summary = {"scaling_efficiency_50": round(efficiency, 4)}
    return {"settings": {"seconds": seconds, "trials": sizes}, "results": rows, "summary": summary}


# -- 4. training overhead ------------------------------------------------------------------


def training(args: argparse.Namespace) -> dict[str, Any]:
    """The plain loop and the worker path take turns on the same worker process, so that
    both see the same threads, allocator and machine load."""
    epochs = 3 if args.quick else 8
    task = TrainingTask("digits", seed=0)
    arch = RandomSearch(DagSpace(), seed=0).ask(1)[0].arch
    device = "cuda:0" if args.device == "cuda" else "cpu"
    gpus = 1 if args.device == "cuda" else 0
    plain, ours, ends = [], [], []
    with _training_cluster(gpus) as client:
        resources = {"GPU": 1} if gpus else None

        def plain_on_worker(n_epochs: int) -> float:
            future = client.submit(
                plain_training, task, arch, n_epochs, device, pure=False, resources=resources
            )
            return float(future.result())

        # First calls (imports, loading the data, torch's kernels) are paid once, untimed.
        plain_on_worker(1)
        timed_search(
            client, RandomSearch(DagSpace(), budget=1, max_trials=1, seed=0), task,
            gpus_per_trial=gpus,
        )  # fmt: skip
        for _ in range(args.repeat):
            plain.append(plain_on_worker(epochs))
            table, wall = timed_search(
                client,
                RandomSearch(DagSpace(), budget=epochs, max_trials=1, seed=0),
                task,
                gpus_per_trial=gpus,
            )
            assert (table["state"] == "complete").all(), table["error"].tolist()
            durations, _ = spans(table)
            ours.append(durations[0])
            ends.append(wall)
    t_plain, t_ours = statistics.median(plain), statistics.median(ours)
    result = {
        "plain_s": [round(t, 3) for t in plain],
        "worker_trial_s": [round(t, 3) for t in ours],
        "search_run_wall_s": [round(t, 3) for t in ends],
    }
    print(f"  plain {t_plain:.3f} s, worker {t_ours:.3f} s, ratio {t_ours / t_plain:.3f}")
    summary = {
        "training_overhead": round(t_ours / t_plain - 1.0, 4),
        "training_overhead_end_to_end": round(statistics.median(ends) / t_plain - 1.0, 4),
    }
    settings = {"epochs": epochs, "device": device, "batch_size": task.batch_size, "threads": 1}
    return {"settings": settings, "results": result, "summary": summary}


@contextmanager
def _training_cluster(gpus: int) -> Iterator[Client]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            resources={"GPU": gpus} if gpus else None,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


def plain_training(task: TrainingTask, arch: Any, epochs: int, device: str) -> float:
    """The same training as `TrainingTask.evaluate`, written as a plain PyTorch loop: same
    model and initialisation, data, batch order, optimizer, schedule, per-epoch validation
    and a final test score."""
    import math

    import torch
    from torch import nn

    from morphml_dask.models import build_model

    start = time.perf_counter()
    data = task.dataset
    torch.manual_seed(task.seed)
    model = build_model(arch, data.num_classes, in_channels=data.input_shape[0]).to(device)
    x, y = torch.from_numpy(data.x_train).to(device), torch.from_numpy(data.y_train).to(device)
    xv, yv = torch.from_numpy(data.x_val).to(device), torch.from_numpy(data.y_val).to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=task.learning_rate, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = 0.5 * task.learning_rate * (1.0 + math.cos(math.pi * epoch / epochs))
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch)).to(device)
        for first in range(0, len(x), task.batch_size):
            batch = order[first : first + task.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            loss.item()
        _evaluate(model, xv, yv)
    _evaluate(
        model, torch.from_numpy(data.x_test).to(device), torch.from_numpy(data.y_test).to(device)
    )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _evaluate(model: Any, x: Any, y: Any) -> tuple[float, float]:
    """Loss and accuracy on held-out data, in batches of 512: part of any training recipe
    that reports validation and test accuracy, so not counted as overhead."""
    import torch
    from torch import nn

    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for first in range(0, len(x), 512):
            logits = model(x[first : first + 512])
            target = y[first : first + 512]
            loss += nn.functional.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(dim=1) == target).sum().item())
    return loss / len(x), correct / len(x)


# -- 5. many trials ------------------------------------------------------------------------


def many(args: argparse.Namespace) -> dict[str, Any]:
    import psutil  # type: ignore[import-untyped]
    from distributed import Client
    from distributed.deploy.subprocess import SubprocessCluster

    n = 10_000 if args.quick else 100_000
    samples: list[dict[str, float]] = []
    # The scheduler and workers run as `dask` subprocesses, which do not inherit sys.path;
    # distributed pickles the task's plugin by reference, so they import `workloads`.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
    )
    # A temporary folder as the store (the workers write to it too): what a real store costs.
    with (
        SubprocessCluster(n_workers=2, threads_per_worker=25, dashboard_address=":0") as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
        tempfile.TemporaryDirectory(prefix="morphml-perf-") as folder,
    ):
        client.wait_for_workers(2)
        scheduler = psutil.Process(client.run_on_scheduler(os.getpid))
        driver = psutil.Process()
        done = threading.Event()
        search = Search(
            wl.ScheduledSearch(n),
            wl.SleepTask([0.0]),
            store=os.path.join(folder, "store"),
            client=client,
            name="many",
        )

        def sample() -> None:
            start = time.perf_counter()
            while not done.is_set():
                samples.append(
                    {
                        "t_s": round(time.perf_counter() - start, 2),
                        "done": search.status().done,
                        "driver_rss_mb": round(driver.memory_info().rss / 2**20, 1),
                        "scheduler_rss_mb": round(scheduler.memory_info().rss / 2**20, 1),
                    }
                )
                done.wait(2.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        table = search.run()
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    assert len(table) == n and table["trial_id"].is_unique
    ends = np.sort(table["end_time"].to_numpy(float))
    window = n // 10
    rates = [
        round(float(window / (ends[i + window - 1] - ends[i])), 1)
        for i in range(0, n - window + 1, window)
    ]
    settled = samples[len(samples) // 5 :] or samples
    summary = {
        "many_trials": n,
        "many_trials_per_s": round(n / wall, 1),
        "many_rate_last_over_first_window": round(rates[-1] / rates[0], 3),
        "many_driver_rss_mb_max": max(s["driver_rss_mb"] for s in samples),
        "many_scheduler_rss_mb_max": max(s["scheduler_rss_mb"] for s in samples),
        "many_driver_rss_growth_mb": round(
            settled[-1]["driver_rss_mb"] - settled[0]["driver_rss_mb"], 1
        ),
        "many_scheduler_rss_growth_mb": round(
            settled[-1]["scheduler_rss_mb"] - settled[0]["scheduler_rss_mb"], 1
        ),
    }
    print(f"  {n} trials in {wall:.1f} s; per-window trials/s {rates}")
    print(f"  memory samples (t, done, driver MB, scheduler MB): {len(samples)}")
    for s in samples[:: max(1, len(samples) // 10)]:
        print(f"    {s}")
    return {
        "results": {"run_wall_s": round(wall, 2), "window_trials_per_s": rates, "memory": samples},
        "summary": summary,
    }


# -- the command line ----------------------------------------------------------------------

BENCHMARKS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "utilisation": utilisation,
    "overhead": overhead,
    "scaling": scaling,
    "training": training,
    "many": many,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("benchmark", choices=BENCHMARKS)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repeat")
    parser.add_argument("--repeat", type=int, default=None, help="default: 3 (--quick: 1)")
    parser.add_argument("--reference-repeat", type=int, default=None, help="default: --repeat")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="training")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.reference_repeat is None:
        args.reference_repeat = args.repeat
    print(f"{args.benchmark}{' (quick)' if args.quick else ''}:", flush=True)
    started = time.perf_counter()
    document = {
        "benchmark": args.benchmark,
        "quick": args.quick,
        **BENCHMARKS[args.benchmark](args),
        "seconds": round(time.perf_counter() - started, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "argv": sys.argv[1:],
    }
    path = args.json or RESULTS / f"perf_{args.benchmark}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(json.dumps(document["summary"], indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
