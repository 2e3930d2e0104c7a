"""Compute saved by Lamarckian inheritance: epochs to a target accuracy, with and without.

    .venv/bin/python benchmarks/lamarckian.py                      # 10 seeds, 96 epochs
    .venv/bin/python benchmarks/lamarckian.py --plot lamarckian.png
    .venv/bin/python benchmarks/lamarckian.py --quick --workloads dag --json /tmp/out.json

Two workloads on scikit-learn's 8x8 digits: ``dag``, `TrainingTask` (learning rate 0.1)
over ``DagSpace(max_nodes=5, widths=(16, 32, 48), kernels=(1, 3, 5))`` as in
``examples/lamarckian_digits.yaml``, and ``resnet``, the user's own model of
``examples/resnet_digits.py`` (its ``space`` and ``fit``) as a `FunctionTask`. Two methods
each, `RegularizedEvolution` (population 8, sample 3, budget 4) in both:

- ``scratch``: every trial trains 4 epochs from scratch;
- ``inherit``: ``inherit_weights=True, child_budget=1``: the first 8 trials train 4 epochs
  from scratch, every later one is a child that starts from its parent's weights (Real et
  al. 2017; Elsken et al., LEMONADE, ICLR 2019) and trains 1 epoch on top.

Every run gets the same compute: trials are asked, trained and told one at a time, in
process, until the epochs trained (the sum of ``trial.budget``) reach ``--epochs``; a trial
that would take the total past it is not trained. The optimizer and the task are seeded
with the run's seed; runs go to a pool of ``--processes`` processes of 1 torch thread each.

Per run: the best-so-far validation accuracy after every trial against the epochs trained,
and the test accuracy of the best-by-validation trial (``dag`` only: the ResNet example
has no test split). Per workload: the final best validation accuracy of each method; the
target, the mean final best of ``scratch``; per run the epochs at which its best-so-far
first reaches the target (or not reached); the mean epochs-to-target of each method over
the runs that reach it, and the ratio scratch / inherit: the compute inheritance saves.

``--quick`` (2 seeds of 24 epochs) uses a population of 4, so that the inheriting runs
breed children within 24 epochs (a population of 8 spends the first 32 epochs sampling).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or loaded by path
from _meta import versions, write_json

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "lamarckian.json"
OBJECTIVE = "val_accuracy"
WORKLOADS = ("dag", "resnet")
METHODS = ("scratch", "inherit")
LEARNING_RATE = 0.1  # examples/lamarckian_digits.yaml
CHILD_BUDGET = 1


@dataclass(frozen=True)
class Settings:
    """What every run of a benchmark shares."""

    epochs: int
    population_size: int
    sample_size: int
    budget: int


@dataclass(frozen=True)
class Job:
    """One run: a workload searched by a method with a seed."""

    workload: str
    method: str
    seed: int
    settings: Settings


# -- one run -----------------------------------------------------------------------------------


def _setup_worker() -> None:
    """Each pool process: one torch thread, and the examples importable."""
    import torch

    torch.set_num_threads(1)
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))


def _space_and_task(workload: str, seed: int) -> tuple[Any, Any]:
    from morphml_dask.space import DagSpace, FunctionSpace
    from morphml_dask.tasks import FunctionTask, TrainingTask

    if workload == "dag":
        space = DagSpace(max_nodes=5, widths=(16, 32, 48), kernels=(1, 3, 5))
        return space, TrainingTask(dataset="digits", learning_rate=LEARNING_RATE, seed=seed)
    example = importlib.import_module("resnet_digits")
    task = FunctionTask(example.fit, objective=OBJECTIVE, direction="maximize", seed=seed)
    return FunctionSpace(example.space), task


def _optimizer(job: Job, space: Any) -> Any:
    from morphml_dask.optim import RegularizedEvolution

    s = job.settings
    inherit = job.method == "inherit"
    return RegularizedEvolution(
        space,
        population_size=s.population_size,
        sample_size=s.sample_size,
        budget=s.budget,
        inherit_weights=inherit,
        child_budget=CHILD_BUDGET if inherit else None,
        seed=job.seed,
    )


def _train(task: Any, trial: Any, store: Any) -> dict[str, float] | None:
    """The trial's metrics, trained in a `TrialContext` on ``store``; None when it failed or
    its objective came out NaN or infinite (the driver's rule: a failed trial)."""
    from morphml_dask.tasks import TrialContext

    try:
        evaluation = task.run(trial, TrialContext(trial, seed=task.seed, store=store))
    except Exception as error:  # the search goes on, as in a driver
        print(f"  trial {trial.id} failed: {error!r}", file=sys.stderr, flush=True)
        return None
    metrics = {k: float(v) for k, v in evaluation.metrics.items()}
    return metrics if math.isfinite(metrics.get(OBJECTIVE, math.nan)) else None


def run(job: Job) -> dict[str, Any]:
    """One search to ``job.settings.epochs`` epochs: every trial trained, in order."""
    import fsspec

    from morphml_dask.storage import open_store
    from morphml_dask.trial import TrialResult

    space, task = _space_and_task(job.workload, job.seed)
    optimizer = _optimizer(job, space)
    url = f"memory://lamarckian-{job.workload}-{job.method}-{job.seed}-{uuid.uuid4().hex}"
    store = open_store(url)
    started = time.perf_counter()
    trials: list[dict[str, Any]] = []
    spent, best = 0, -math.inf
    try:
        while True:
            (trial,) = optimizer.ask(1)
            if spent + trial.budget > job.settings.epochs:
                break
            metrics = _train(task, trial, store)
            spent += trial.budget  # a failed trial spent its epochs too
            if metrics is None:
                optimizer.tell(TrialResult.failed(trial.id, "failed or diverged"))
            else:
                best = max(best, metrics[OBJECTIVE])
                optimizer.tell(TrialResult.complete(trial.id, metrics))
            trials.append(_trial_row(trial, metrics, spent, best))
    finally:
        memory = fsspec.filesystem("memory")
        if memory.exists(url):
            memory.rm(url, recursive=True)
    return {
        "workload": job.workload,
        "method": job.method,
        "seed": job.seed,
        "epochs": spent,
        "wall_s": round(time.perf_counter() - started, 2),
        "trials": trials,
    }


def _trial_row(
    trial: Any, metrics: dict[str, float] | None, spent: int, best: float
) -> dict[str, Any]:
    """One trial of a run: who it is, what it scored and the epochs spent after it."""
    metrics = metrics or {}
    test = metrics.get("test_accuracy")
    return {
        "id": trial.id,
        "parent": trial.parent,
        "inherits": bool(trial.inherits),
        "budget": trial.budget,
        "val_accuracy": metrics.get(OBJECTIVE),
        "test_accuracy": test,
        "epochs": spent,
        "best_val": best if math.isfinite(best) else None,
    }


# -- figures -----------------------------------------------------------------------------------


def run_figures(run: dict[str, Any], target: float) -> dict[str, Any]:
    """A run's final best, its test accuracy, its children and its epochs to ``target``."""
    scored = [t for t in run["trials"] if t["val_accuracy"] is not None]
    # The first of the best wins a tie, as the best-so-far curve does.
    pick = max(scored, key=lambda t: t["val_accuracy"], default=None)
    reached = next(
        (
            t["epochs"]
            for t in run["trials"]
            if t["best_val"] is not None and t["best_val"] >= target
        ),
        None,
    )
    return {
        "seed": run["seed"],
        "final_best": None if pick is None else pick["val_accuracy"],
        "best_trial": None if pick is None else pick["id"],
        "test_accuracy": None if pick is None else pick["test_accuracy"],
        "epochs_to_target": reached,
        "trials": len(run["trials"]),
        "children": sum(t["parent"] is not None for t in run["trials"]),
        "failed": len(run["trials"]) - len(scored),
        "wall_s": run["wall_s"],
    }


def _spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean and sample standard deviation of the values that are not None."""
    kept = [v for v in values if v is not None]
    if not kept:
        return {"mean": None, "std": None}
    std = statistics.stdev(kept) if len(kept) > 1 else 0.0
    return {"mean": round(statistics.fmean(kept), 3), "std": round(std, 3)}


def method_summary(runs: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Over the seeds: the final best, the pick's test accuracy and the epochs to target."""
    figures = [run_figures(run, target) for run in runs]
    to_target = [f["epochs_to_target"] for f in figures]
    return {
        "seeds": len(runs),
        "final_best": _spread([f["final_best"] for f in figures]),
        "test_accuracy": _spread([f["test_accuracy"] for f in figures]),
        "epochs_to_target": {
            **_spread(to_target),
            "reached": sum(e is not None for e in to_target),
            "not_reached": sum(e is None for e in to_target),
        },
        "trials": _spread([f["trials"] for f in figures]),
        "children": _spread([f["children"] for f in figures]),
        "wall_s": _spread([f["wall_s"] for f in figures]),
        "figures": figures,
    }


def workload_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Both methods of one workload, the target (the mean final best of ``scratch``) and
    the ratio of their mean epochs to it, scratch / inherit (None if a method never
    reaches it)."""
    finals = [run_figures(run, math.inf)["final_best"] for run in runs["scratch"]]
    scored = [f for f in finals if f is not None]
    if not scored:
        raise RuntimeError("no scratch run scored a trial: there is no target")
    # Not rounded: a rounded mean of equal finals could lie above all of them.
    target = statistics.fmean(scored)
    summaries = {method: method_summary(runs[method], target) for method in METHODS}
    for method in METHODS:
        summaries[method]["mean_curve_epochs"] = mean_curve_epochs(runs[method], target)
    crossings = [summaries[m]["mean_curve_epochs"] for m in METHODS]
    means = [summaries[m]["epochs_to_target"]["mean"] for m in METHODS]
    return {
        **{m: {**summaries[m], "runs": runs[m]} for m in METHODS},
        "target": target,
        "ratio": _ratio(crossings),
        "ratio_of_runs_that_reach": _ratio(means),
    }


def _ratio(pair: Sequence[float | None]) -> float | None:
    scratch, inherit = pair
    return None if scratch is None or not inherit else round(scratch / inherit, 3)


def mean_curve_epochs(runs: list[dict[str, Any]], target: float) -> int | None:
    """The first epoch at which the best-so-far averaged over the seeds reaches ``target``
    (None if it never does): the compute a method needs, counting every seed, also those
    whose own best never gets there."""
    import numpy as np

    grid = np.arange(1, max(run["epochs"] for run in runs) + 1)
    mean = np.array([step_curve(run, grid) for run in runs]).mean(axis=0)
    reached = grid[mean >= target - 1e-9]  # NaN (before a run's first result) never counts
    return int(reached[0]) if len(reached) else None


# -- output ------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    """One line per workload and method; the target and the ratio per workload."""
    head = (
        f"{'workload':<9}{'method':<9}{'final best val %':>18}{'test % of best':>17}"
        f"{'epochs to target':>19}{'not reached':>12}{'children':>9}{'wall s':>8}"
    )
    lines = [head, "-" * len(head)]
    for name, w in results["workloads"].items():
        for method in METHODS:
            s = w[method]
            e = s["epochs_to_target"]
            lines.append(
                f"{name:<9}{method:<9}{_pm(s['final_best']):>18}{_pm(s['test_accuracy']):>17}"
                f"{_pm(e, 1):>19}{e['not_reached']:>6} of {s['seeds']:<3}"
                f"{s['children']['mean']:>9.1f}{s['wall_s']['mean']:>8.1f}"
            )
        crossings = " vs ".join(str(w[m]["mean_curve_epochs"]) for m in METHODS)
        lines.append(
            f"{name:<9}target {w['target']:.2f} %; the mean best-so-far reaches it at "
            f"{crossings} epochs (scratch vs inherit): compute saved {_times(w['ratio'])}; "
            f"over the runs that reach it, {_times(w['ratio_of_runs_that_reach'])}"
        )
    return "\n".join(lines)


def _times(ratio: float | None) -> str:
    return "n/a (a method never reaches it)" if ratio is None else f"{ratio:.2f}x"


def _pm(spread: dict[str, Any], digits: int = 2) -> str:
    if spread["mean"] is None:
        return "-"
    return f"{spread['mean']:.{digits}f} ± {spread['std']:.{digits}f}"


def plot(results: dict[str, Any], path: Path) -> None:
    """Mean best-so-far validation accuracy against epochs trained, a panel per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    epochs = results["settings"]["epochs"]
    grid = np.arange(1, epochs + 1)
    names = list(results["workloads"])
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        workload = results["workloads"][name]
        for method in METHODS:
            curves = np.array([step_curve(run, grid) for run in workload[method]["runs"]])
            defined = ~np.isnan(curves).any(axis=0)  # from every run's first result on
            ax.step(grid[defined], curves[:, defined].mean(axis=0), where="post", label=method)
        ax.axhline(workload["target"], color="grey", linestyle=":", label="target")
        ax.set(title=name, xlabel="epochs trained", ylabel="best val accuracy (%)")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def step_curve(run: dict[str, Any], grid: Any) -> Any:
    """The run's best-so-far at each epoch of ``grid``: that after the last trial done by
    then (NaN before the first)."""
    import numpy as np

    points = [(t["epochs"], t["best_val"]) for t in run["trials"] if t["best_val"] is not None]
    done = np.array([e for e, _ in points])
    values = np.array([v for _, v in points], dtype=float)
    index = np.searchsorted(done, grid, side="right") - 1
    return np.where(index >= 0, values[np.clip(index, 0, None)], np.nan)


# -- the run -----------------------------------------------------------------------------------


def benchmark(
    workloads: Sequence[str], seeds: Sequence[int], settings: Settings, processes: int
) -> dict[str, Any]:
    """Every (workload, method, seed) run on a pool; the runs and summary per workload."""
    jobs = [Job(w, m, s, settings) for w in workloads for m in METHODS for s in seeds]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        w: {m: [] for m in METHODS} for w in workloads
    }
    context = multiprocessing.get_context("spawn")  # a fresh torch in every process
    with context.Pool(processes, initializer=_setup_worker) as pool:
        for done in pool.imap_unordered(run, jobs):
            runs[done["workload"]][done["method"]].append(done)
            print(
                f"  {done['workload']} {done['method']} seed {done['seed']}: "
                f"{len(done['trials'])} trials, {done['wall_s']} s",
                flush=True,
            )
    for by_method in runs.values():
        for method_runs in by_method.values():
            method_runs.sort(key=lambda r: r["seed"])
    return {name: workload_summary(by_method) for name, by_method in runs.items()}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds of 24 epochs, population 4")
    parser.add_argument("--seeds", type=int, help="seeds 0 .. n-1 (default 10; 2 with --quick)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default 96; 24 with --quick)")
    parser.add_argument("--population", type=int, help="population size (8; 4 with --quick)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--processes", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--plot", type=Path, help="a PNG of the best-so-far curves")
    parser.add_argument(
        "--summarize",
        type=Path,
        metavar="JSON",
        help="recompute the summary, table and plot from the runs of an earlier --json file",
    )
    args = parser.parse_args(argv)
    args.seeds = args.seeds or (2 if args.quick else 10)
    args.epochs = args.epochs or (24 if args.quick else 96)
    args.population = args.population or (4 if args.quick else 8)
    if args.seeds < 2:
        parser.error(f"--seeds must be at least 2 (for a standard deviation), got {args.seeds}")
    if args.population < 3:
        parser.error(f"--population must be at least 3 (the sample size), got {args.population}")
    if args.epochs < 4:
        parser.error(f"--epochs must be at least 4 (one trial's budget), got {args.epochs}")
    if args.processes < 1:
        parser.error(f"--processes must be at least 1, got {args.processes}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    if args.summarize is not None:
        saved: dict[str, Any] = json.loads(args.summarize.read_text(encoding="utf-8"))
        for name, workload in saved["workloads"].items():
            runs = {method: workload[method]["runs"] for method in METHODS}
            saved["workloads"][name] = workload_summary(runs)
        _report(saved, args)
        return
    settings = Settings(args.epochs, args.population, sample_size=3, budget=4)
    started = time.perf_counter()
    workloads = benchmark(args.workloads, range(args.seeds), settings, args.processes)
    results: dict[str, Any] = {
        "benchmark": "lamarckian",
        "argv": sys.argv[1:],
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "processes": args.processes,
        "versions": versions("morphml_dask", "torch"),
        "settings": {
            **asdict(settings),
            "child_budget": CHILD_BUDGET,
            "seeds": args.seeds,
            "learning_rate_dag": LEARNING_RATE,
            "target": "the mean final best validation accuracy of scratch",
            "ratio": "epochs at which the mean best-so-far over the seeds reaches the target, "
            "scratch / inherit",
            "ratio_of_runs_that_reach": "mean epochs to target of scratch / of inherit, over "
            "the runs that reach it",
        },
        "workloads": workloads,
        "total_s": round(time.perf_counter() - started, 1),
    }
    _report(results, args)


def _report(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(table(results))
    write_json(args.json, results)
    print(f"wrote {args.json} ({results['total_s']} s of runs)")
    if args.plot is not None:
        plot(results, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
