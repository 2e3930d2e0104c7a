"""Quality at lower cost: the pruners of `morphml_dask.prune` against Optuna and Ray Tune.

    bash benchmarks/peers-env.sh                       # once: .bench-venv, Optuna, Ray Tune
    .venv/bin/python benchmarks/pruning.py             # 5 seeds; MLP 24 x 10, CNN 16 x 6
    .venv/bin/python benchmarks/pruning.py --quick     # 1 seed of small searches
    .venv/bin/python benchmarks/pruning.py --summarize # the table again from the JSON

The workloads are the real examples of the own-model guide: the MLP on wine
(``examples/mlp_wine.py``) and the ResNet-style CNN on digits (``examples/resnet_digits.py``),
their own ``space`` and ``fit`` functions, on 4 slots. For every seed, the configurations
are the first ``trials`` of `RandomSearch` with that seed, so every contender trains the same
configurations with the same per-trial seeds (``ctx.seed``) to the same budget; the only
difference is who stops what, and when.

Contenders, one row each:

- ``none``: morphml_dask, no pruner: every trial trains its full budget (the reference);
- ``median``, ``successive-halving``, ``hyperband``: morphml_dask with `MedianStopping`,
  `SuccessiveHalving` and `Hyperband` (`PRUNER_SETTINGS`), decided in the driver from the
  live reports, reaching the trial through ``ctx.should_stop()``;
- ``optuna-sh``: Optuna's ``SuccessiveHalvingPruner``, 4 processes on one journal storage
  (``benchmarks/pruning_optuna.py``);
- ``ray-asha``: Ray Tune's ``ASHAScheduler``, 4 concurrent trials
  (``benchmarks/pruning_raytune.py``).

Ours runs here, on a `LocalCluster` of 4 worker processes of 1 thread each, started once,
warmed up by a search that is not counted, and shared by all its searches; the peers run in
``.bench-venv`` (they are no dependency of the package), each in its own process that starts
its framework once for all the seeds, and call the example's ``fit`` with a `PeerContext`.
Per search: the best objective (the largest validation accuracy any trial ended with: the
last value a pruned trial reported), the epochs trained (the last epoch each trial
reported, summed), for ours the epochs trained after the pruner's decision and before the
trial learnt of it (``late``), and the wall time of the search call. Over the seeds: mean
and sample standard deviation, the change of the best objective against ``none`` on the
same seed, and whether the issue's goal is met: the best within 0.5 points of ``none`` with
at most 40 % of its epochs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or loaded by path
from _meta import versions

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BENCHMARKS = Path(__file__).resolve().parent
BENCH_PYTHON = ROOT / ".bench-venv" / "bin" / "python"
DEFAULT_JSON = BENCHMARKS / "results" / "pruning.json"
OBJECTIVE = "val_accuracy"
SLOTS = 4
# The goal: the best objective within this many points of no pruning ...
GOAL_POINTS = 0.5
# ... with at most this share of its epochs.
GOAL_EPOCHS = 0.4
# Rungs at epochs 1, 3, 9 (eta 3) wherever the budget reaches them, for ours and the peers.
MIN_BUDGET, ETA = 1, 3
PRUNER_SETTINGS: dict[str, dict[str, Any]] = {
    "median": {"warmup_steps": 1, "min_trials": 4},
    "successive-halving": {"min_budget": MIN_BUDGET, "eta": ETA},
    "hyperband": {"min_budget": MIN_BUDGET, "eta": ETA},
}
PEERS = {"optuna-sh": "pruning_optuna.py", "ray-asha": "pruning_raytune.py"}


@dataclass(frozen=True)
class Workload:
    """One example searched: its module in ``examples/``, trials per search, epochs each."""

    key: str
    module: str
    trials: int
    epochs: int

    @property
    def full_epochs(self) -> int:
        """The epochs of a search without pruning."""
        return self.trials * self.epochs


FULL = (Workload("mlp", "mlp_wine", 24, 10), Workload("cnn", "resnet_digits", 16, 6))
QUICK = (Workload("mlp", "mlp_wine", 8, 4), Workload("cnn", "resnet_digits", 6, 3))


# -- what the peers share with this script -----------------------------------------------------


class PeerContext:
    """What the example's ``fit(config, ctx)`` is given under Optuna or Ray Tune, in place of
    a `TrialContext`: each ``ctx.report`` goes to ``on_report``, which answers whether the
    peer stopped the trial; ``ctx.should_stop()`` returns that answer.

    Nothing is restored (``trained_epochs`` is 0) and ``save`` keeps nothing: the peers'
    trials never continue from a saved state here.
    """

    device = "cpu"
    trained_epochs = 0

    def __init__(self, seed: int, budget: int, on_report: Callable[[int, float], bool]) -> None:
        self.seed = seed
        self.budget = budget
        self.epochs = 0
        self.objective = math.nan
        self.stopped = False
        self._on_report = on_report

    def report(self, step: int, **metrics: float) -> None:
        self.epochs, self.objective = step, float(metrics[OBJECTIVE])
        self.stopped = self.stopped or self._on_report(step, self.objective)

    def should_stop(self) -> bool:
        return self.stopped

    def restore(self) -> None:
        return None

    def save(self, state: Mapping[str, Any], *, step: int | None = None) -> None:
        pass


def fit_function(module: str) -> Callable[[dict[str, Any], Any], Any]:
    """The ``fit`` of ``examples/<module>.py``."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    fit: Callable[[dict[str, Any], Any], Any] = importlib.import_module(module).fit
    return fit


def trial_row(
    trial_id: str, epochs: int, objective: float, state: str, decided_at: int | None = None
) -> dict[str, Any]:
    """One trial of a search as every contender reports it: the epochs it trained, the
    objective it ended with, its state and, for ours, the step whose report the pruner
    stopped it at (None: not stopped)."""
    return {
        "trial_id": trial_id,
        "epochs": epochs,
        "objective": objective,
        "state": state,
        "decided_at": decided_at,
    }


def peer_main(run_job: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """A peer script's entry point: ``--job`` (what to run) in, ``--out`` (results) out."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--job", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results = run_job(json.loads(args.job.read_text(encoding="utf-8")))
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


# -- morphml_dask's searches -------------------------------------------------------------------


@contextmanager
def our_cluster() -> Iterator[Any]:
    """4 worker processes of 1 thread: one trial at a time per process, so that a trial's
    batch order (torch's global generator) is the same whoever stops what."""
    from morphml_dask.testing import local_client

    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))  # before the workers start: they inherit it
    with local_client(n_workers=SLOTS, threads_per_worker=1) as client:
        yield client


def our_pruner(name: str, workload: Workload) -> Any:
    """The pruner of row ``name`` (None for ``none``); rungs stop at the budget, as in an
    experiment file."""
    from morphml_dask.prune import Hyperband, MedianStopping, SuccessiveHalving

    kinds: dict[str, Any] = {
        "median": MedianStopping,
        "successive-halving": SuccessiveHalving,
        "hyperband": Hyperband,
    }
    if name == "none":
        return None
    settings = dict(PRUNER_SETTINGS[name])
    if name != "median":
        settings["max_budget"] = workload.epochs
    return kinds[name](**settings)


def _optimizer(workload: Workload, seed: int) -> Any:
    from morphml_dask.optim import RandomSearch
    from morphml_dask.space import FunctionSpace

    space = importlib.import_module(workload.module).space
    return RandomSearch(
        FunctionSpace(space), budget=workload.epochs, max_trials=workload.trials, seed=seed
    )


def _task(workload: Workload) -> Any:
    from morphml_dask.tasks import FunctionTask

    return FunctionTask(fit_function(workload.module), objective=OBJECTIVE, direction="maximize")


def trials_of(workload: Workload, seed: int) -> list[dict[str, Any]]:
    """The trials every contender trains for ``seed``: id, per-trial seed and configuration,
    as `RandomSearch` with that seed asks for them."""
    from morphml_dask.tasks import trial_seed

    task_seed = _task(workload).seed
    return [
        {"trial_id": trial.id, "seed": trial_seed(task_seed, trial.id), "config": trial.arch.value}
        for trial in _optimizer(workload, seed).ask(workload.trials)
    ]


def run_ours(client: Any, workload: Workload, seed: int, pruner_name: str) -> dict[str, Any]:
    """One search of ours in a fresh store: its wall time and its trials."""
    from morphml_dask.driver import Search

    pruner = our_pruner(pruner_name, workload)
    with tempfile.TemporaryDirectory(prefix="pruning-") as folder:
        search = Search(
            _optimizer(workload, seed), _task(workload), store=folder, client=client, pruner=pruner
        )
        start = time.perf_counter()
        table = search.run()
        wall = time.perf_counter() - start
        curves = search.store.curves()[OBJECTIVE]
        decided_at = dict(search.pruning[1])
        rows = []
        for trial_id, objective, state in zip(
            table["trial_id"], table[OBJECTIVE], table["state"], strict=True
        ):
            reported = curves.sel(trial=trial_id).dropna("epoch")["epoch"].values
            epochs = int(reported.max()) if len(reported) else 0
            decided = decided_at.get(str(trial_id))
            rows.append(trial_row(str(trial_id), epochs, float(objective), str(state), decided))
    return {"seed": seed, "wall_s": round(wall, 2), "trials": rows}


def warm_up(client: Any, workload: Workload) -> None:
    """One search of a trial of one epoch per slot, not counted: every worker process has
    imported torch and the example, and run it once, before the clock starts."""
    run_ours(client, Workload(workload.key, workload.module, SLOTS, 1), 0, "none")


# -- the peers ---------------------------------------------------------------------------------


def run_peer(script: str, job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run a peer script in ``.bench-venv`` on ``job``; its results, or why there are none."""
    if not BENCH_PYTHON.exists():
        return {"error": "no .bench-venv: run bash benchmarks/peers-env.sh"}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCHMARKS), str(EXAMPLES)])}
    with tempfile.TemporaryDirectory(prefix="pruning-peer-") as folder:
        job_path, out_path = Path(folder) / "job.json", Path(folder) / "out.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        command = [str(BENCH_PYTHON), str(BENCHMARKS / script), "--job", str(job_path)]
        try:
            done = subprocess.run(
                [*command, "--out", str(out_path)],
                cwd=folder,  # Ray and Optuna write their files here, deleted after
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if done.returncode != 0 or not out_path.exists():
            tail = "\n".join(done.stderr.strip().splitlines()[-6:])
            return {"error": f"exit status {done.returncode}: {tail}"}
        results: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    return results


# -- figures -----------------------------------------------------------------------------------


def search_figures(run: Mapping[str, Any]) -> dict[str, Any]:
    """Best objective, epochs trained and pruned trials of one search, and the epochs
    trained after the pruner's decision, before the trial learnt of it (``late``)."""
    trials = run["trials"]
    objectives = [t["objective"] for t in trials if not math.isnan(t["objective"])]
    decided = [t for t in trials if t.get("decided_at") is not None]
    return {
        "seed": run["seed"],
        "best": max(objectives, default=math.nan),
        "epochs": sum(t["epochs"] for t in trials),
        "late": sum(t["epochs"] - t["decided_at"] for t in decided),
        "pruned": sum(t["state"] == "pruned" for t in trials),
        "trials": len(trials),
        "wall_s": run["wall_s"],
    }


def _spread(values: Sequence[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(mean, 3), "sd": round(sd, 3)}


def summary(
    figures: Sequence[Mapping[str, Any]],
    reference: Sequence[Mapping[str, Any]],
    full_epochs: int,
) -> dict[str, Any]:
    """Mean and spread over the seeds, the change against ``none`` seed by seed, the goal;
    ``full_epochs``: the epochs of a search without pruning."""
    baseline = {f["seed"]: f["best"] for f in reference}
    deltas = [f["best"] - baseline[f["seed"]] for f in figures]
    epochs = _spread([f["epochs"] for f in figures])
    late = _spread([f["late"] for f in figures])
    delta = _spread(deltas)
    share = epochs["mean"] / full_epochs
    return {
        "seeds": len(figures),
        "best": _spread([f["best"] for f in figures]),
        "best_change": {**delta, "worst": round(min(deltas), 3)},
        "epochs": epochs,
        "epochs_share": round(share, 3),
        "late_epochs": late,
        # Had every stop reached its trial at once: the pruner's rule, apart from delivery.
        "epochs_share_if_instant": round((epochs["mean"] - late["mean"]) / full_epochs, 3),
        "pruned": _spread([f["pruned"] for f in figures]),
        "wall_s": _spread([f["wall_s"] for f in figures]),
        "meets_goal": delta["mean"] >= -GOAL_POINTS and share <= GOAL_EPOCHS,
    }


def table(results: Mapping[str, Any]) -> str:
    """The printed table: one line per example and contender."""
    head = (
        f"{'example':<7} {'contender':<19} {'best %':>14} {'change':>13} {'epochs':>15}"
        f" {'share':>6} {'late':>5} {'pruned':>6} {'wall s':>13}  goal"
    )
    seeds = {len(example["seeds"]) for example in results["examples"].values()}
    lines = [f"mean ± sd over {', '.join(map(str, sorted(seeds)))} seed(s)", head, "-" * len(head)]
    for key, example in results["examples"].items():
        for name, entry in example["contenders"].items():
            if "summary" not in entry:
                lines.append(f"{key:<7} {name:<19} {entry.get('error', 'not run')}")
                continue
            s = entry["summary"]
            lines.append(
                f"{key:<7} {name:<19} {_pm(s['best'], 2):>14} {_pm(s['best_change'], 2):>13}"
                f" {_pm(s['epochs'], 1):>15} {s['epochs_share']:>6.0%}"
                f" {s['late_epochs']['mean']:>5.1f} {s['pruned']['mean']:>6.1f}"
                f" {_pm(s['wall_s'], 1):>13}  {_goal(name, s)}"
            )
    return "\n".join(lines)


def _goal(name: str, summary: Mapping[str, Any]) -> str:
    if name == "none":
        return "(reference)"
    return "met" if summary["meets_goal"] else "missed"


def _pm(spread: Mapping[str, float], digits: int) -> str:
    return f"{spread['mean']:.{digits}f} ± {spread['sd']:.{digits}f}"


# -- the run -----------------------------------------------------------------------------------


def benchmark_example(
    client: Any, workload: Workload, seeds: Sequence[int], peers: Sequence[str], timeout: float
) -> dict[str, Any]:
    """Every contender on ``workload``, seed by seed: their searches and their figures."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ("none", *PRUNER_SETTINGS)}
    warm_up(client, workload)
    for seed in seeds:
        for name in runs:
            runs[name].append(run_ours(client, workload, seed, name))
            print(f"  {workload.key} seed {seed} {name}: {runs[name][-1]['wall_s']} s", flush=True)
    contenders: dict[str, dict[str, Any]] = {name: {"runs": r} for name, r in runs.items()}
    job = {
        "module": workload.module,
        "epochs": workload.epochs,
        "slots": SLOTS,
        "min_budget": MIN_BUDGET,
        "eta": ETA,
        "runs": [{"seed": seed, "trials": trials_of(workload, seed)} for seed in seeds],
    }
    for name in peers:
        contenders[name] = run_peer(PEERS[name], job, timeout)
        print(f"  {workload.key} {name}: {contenders[name].get('error', 'done')}", flush=True)
    example = {
        "module": f"examples/{workload.module}.py",
        "trials": workload.trials,
        "epochs": workload.epochs,
        "full_epochs": workload.full_epochs,
        "seeds": list(seeds),
        "contenders": contenders,
    }
    add_figures(example)
    return example


def add_figures(example: dict[str, Any]) -> None:
    """Each contender's figures per search and their summary, from its searches."""
    contenders = example["contenders"]
    reference = [search_figures(run) for run in contenders["none"]["runs"]]
    for entry in contenders.values():
        if "runs" in entry:
            entry["figures"] = [search_figures(run) for run in entry["runs"]]
            entry["summary"] = summary(entry["figures"], reference, example["full_epochs"])


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed of small searches")
    parser.add_argument("--seeds", type=int, help="seeds 0 .. n-1 (5; 1 with --quick)")
    parser.add_argument("--examples", nargs="+", choices=("mlp", "cnn"), default=["mlp", "cnn"])
    parser.add_argument("--peers", nargs="*", choices=tuple(PEERS), default=list(PEERS))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per peer script")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument(
        "--summarize",
        action="store_true",
        help="run nothing: recompute the figures and the table of the searches in --json",
    )
    return parser.parse_args(argv)


def summarize(path: Path) -> None:
    """Recompute the figures of the searches stored in ``path``, print the table, rewrite."""
    results = json.loads(path.read_text(encoding="utf-8"))
    for example in results["examples"].values():
        add_figures(example)
    print(table(results))
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    if args.summarize:
        summarize(args.json)
        return
    seeds = range(args.seeds or (1 if args.quick else 5))
    workloads = [w for w in (QUICK if args.quick else FULL) if w.key in args.examples]
    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "pruning",
        "argv": sys.argv[1:],
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "slots": SLOTS,
        "versions": versions("morphml_dask", "dask", "distributed", "torch"),
        "pruner_settings": PRUNER_SETTINGS,
        "max_budget": "the example's epochs, for successive-halving and hyperband",
        "goal": {"best_within_points": GOAL_POINTS, "epochs_share_at_most": GOAL_EPOCHS},
        "examples": {},
    }
    with our_cluster() as client:
        for workload in workloads:
            results["examples"][workload.key] = benchmark_example(
                client, workload, list(seeds), args.peers, args.timeout
            )
    results["total_s"] = round(time.perf_counter() - started, 1)
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.json} after {results['total_s']} s")


if __name__ == "__main__":
    main()
