"""Bayesian optimisation against random search on a mixed space with a known optimum.

    python benchmarks/bo_mixed.py --seeds 100 --trials 40 --json benchmarks/results/bo_mixed.json

The space is `morphml_dask.testing.branin_space`: Branin over two floats (``x1`` in
[-5, 10], ``x2`` in [0, 15]) and a categorical ``shift`` in {none, left, right}; "left" and
"right" move Branin by 3 along ``x1`` and add 1 and 2, so only "none" reaches the global
minimum, 0.397887 (`morphml_dask.testing.branin_result`, minimized). Each optimizer runs
``--trials`` sequential trials per seed, with its default settings
(`BayesianOptimization`: 10 random trials, then a Gaussian process over the configs'
encodings ranking mutations of the best ones, expected improvement). The figure is the
best value a search found; the table gives its mean ± standard deviation over the seeds,
its median, and the share of searches whose best config has ``shift="none"``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from morphml_dask.optim import BaseOptimizer, BayesianOptimization, RandomSearch
from morphml_dask.space import Config, FunctionSpace
from morphml_dask.testing import BRANIN_MINIMUM, branin_result, branin_space, run_optimizer

DEFAULT_JSON = Path(__file__).parent / "results" / "bo_mixed.json"

Factory = Callable[[int], BaseOptimizer]


def factories(trials: int) -> dict[str, Factory]:
    space = FunctionSpace(branin_space)
    common: dict[str, Any] = {"objective": "branin", "direction": "minimize"}
    return {
        "random search": lambda seed: RandomSearch(space, max_trials=trials, seed=seed, **common),
        "Bayesian optimisation": lambda seed: BayesianOptimization(
            space, max_trials=trials, seed=seed, **common
        ),
    }


def best_of_search(optimizer: BaseOptimizer) -> tuple[float, str]:
    """The best value a sequential search found, and the shift of its config."""
    told = run_optimizer(optimizer, branin_result, workers=1)
    trial, result = min(told, key=lambda pair: pair[1].metrics["branin"])
    assert isinstance(trial.arch, Config)
    return result.metrics["branin"], str(trial.arch["shift"])


def measure(make: Factory, seeds: int) -> dict[str, Any]:
    started = time.perf_counter()
    runs = [best_of_search(make(seed)) for seed in range(seeds)]
    values = [value for value, _ in runs]
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "median": statistics.median(values),
        "share_none": sum(shift == "none" for _, shift in runs) / len(runs),
        "seconds": time.perf_counter() - started,
        "best": values,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="searches per optimizer")
    parser.add_argument("--trials", type=int, default=40, help="trials per search")
    parser.add_argument("--json", type=Path, default=None, help=f"e.g. {DEFAULT_JSON}")
    args = parser.parse_args(argv)
    results = {name: measure(make, args.seeds) for name, make in factories(args.trials).items()}
    print(f"shifted Branin, optimum {BRANIN_MINIMUM:.6f}; {args.seeds} seeds x {args.trials}")
    print("| optimizer | best value, mean ± std | median | best has shift=none | s |")
    print("|---|---|---|---|---|")
    for name, row in results.items():
        print(
            f"| {name} | {row['mean']:.2f} ± {row['std']:.2f} | {row['median']:.2f} "
            f"| {row['share_none']:.0%} | {row['seconds']:.1f} |"
        )
    if args.json is not None:
        document = {
            "benchmark": "bo_mixed",
            "seeds": args.seeds,
            "trials": args.trials,
            "optimum": BRANIN_MINIMUM,
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "results": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
