"""Zero-cost warm-up against none, on NAS-Bench-201 under the search protocol.

    python benchmarks/nb201_warmup.py --runs 500 --json benchmarks/results/nb201_warmup.json

The protocol of `benchmarks/nb201_search.py` (CIFAR-10, reward = 12-epoch validation accuracy,
12,000 simulated seconds a search, report the 200-epoch validation accuracy of the pick), for
regularized evolution and random search, each plain and with a zero-cost warm-up (Abdelfattah
et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021, section 5): ``warmup`` random cells
are scored by synflow, then REA's initial population is the best ``population_size`` of them
and random search trains them best first. Each score is charged to the budget at what it cost
when it was measured (`benchmarks/nb201_proxy_table.py`: building the freshly initialised
network and scoring it on one CPU thread); the training times are the benchmark's GPU times,
so the charge errs against the warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or loaded by path
from _meta import versions, write_json
from nb201_search import SEARCH_SECONDS, Factory, repeat_search

from morphml_dask.optim import RandomSearch, RegularizedEvolution
from morphml_dask.space import ArchGraph, CellSpace
from morphml_dask.tasks import NB201TabularTask

TABLE = Path(__file__).resolve().parent / "results" / "nb201_synflow.npz"


def variants(warmups: list[int]) -> dict[str, Factory]:
    """Optimizer factories by name: each algorithm plain, then with each warm-up size."""

    def rea(warmup: int) -> Factory:
        return lambda space, seed: RegularizedEvolution(
            space, population_size=10, sample_size=3, budget=12, seed=seed, warmup=warmup
        )

    def rs(warmup: int) -> Factory:
        return lambda space, seed: RandomSearch(space, budget=12, seed=seed, warmup=warmup)

    made = {}
    for algorithm, factory in (("regularized-evolution", rea), ("random-search", rs)):
        made[algorithm] = factory(0)
        for warmup in warmups:
            made[f"{algorithm} + warmup {warmup}"] = factory(warmup)
    return made


def synflow_lookup(table: Path) -> Any:
    """The synflow score of a cell and the seconds it cost, from the table of every cell."""
    data = np.load(table)
    scores, seconds = data["scores"], data["seconds"]
    missing = int(np.isnan(scores).sum())
    if missing:
        raise SystemExit(
            f"{table} lacks {missing} cells: run benchmarks/nb201_proxy_table.py to finish it"
        )
    space = CellSpace()

    def lookup(arch: ArchGraph) -> tuple[float, float]:
        index = space.to_index(arch)
        return float(scores[index]), float(seconds[index])

    return lookup


def benchmark(names: dict[str, Factory], runs: int, seed: int, table: Path) -> dict[str, Any]:
    task = NB201TabularTask("cifar10")
    proxy = synflow_lookup(table)
    results: dict[str, Any] = {}
    for name, make in names.items():
        started = time.perf_counter()
        per_run = repeat_search(make, task, runs, seed, SEARCH_SECONDS, proxy)
        accuracies = [r["val_accuracy_200"] for r in per_run]
        std = statistics.stdev(accuracies)
        results[name] = {
            "mean": statistics.fmean(accuracies),
            "std": std,
            "sem": std / runs**0.5,
            "mean_evaluations": statistics.fmean(r["evaluations"] for r in per_run),
            "mean_scored": statistics.fmean(r["scored"] for r in per_run),
            "seconds": time.perf_counter() - started,
            "accuracies": accuracies,
        }
    return results


def table_text(results: dict[str, Any], runs: int, charge: float) -> str:
    lines = [
        f"NAS-Bench-201 CIFAR-10, {runs} runs, 12,000 simulated s each (synflow charged "
        f"{charge:.3f} s a cell on average); 200-epoch validation accuracy of the pick (%)",
        f"{'search':<38}{'mean ± std':>16}{'± sem':>8}{'trained':>9}{'scored':>8}",
    ]
    for name, r in results.items():
        lines.append(
            f"{name:<38}{r['mean']:>9.2f} ± {r['std']:.2f}{r['sem']:>8.3f}"
            f"{r['mean_evaluations']:>9.1f}{r['mean_scored']:>8.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/nb201_warmup.json"))
    args = parser.parse_args()
    results = benchmark(variants(args.warmup), args.runs, args.seed, args.table)
    charge = float(np.nanmean(np.load(args.table)["seconds"]))
    print(table_text(results, args.runs, charge))
    document = {
        "protocol": {
            "dataset": "cifar10",
            "search_seconds": SEARCH_SECONDS,
            "runs": args.runs,
            "seed": args.seed,
            "proxy": "synflow",
            "mean_charge_seconds": charge,
            "table": str(args.table.name),
        },
        "versions": versions("torch", "numpy"),
        "searches": results,
    }
    write_json(args.json, document)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
