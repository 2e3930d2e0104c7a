"""Optimizer overhead: microseconds per ask and per tell as a search grows.

    python benchmarks/optimizer_overhead.py --sizes 1000 10000 100000 \
        --json benchmarks/results/optimizer_overhead.json

Each optimizer runs on `CellSpace` driven serially, ``ask(1)`` then ``tell`` of a synthetic
result (`morphml_dask.testing.synthetic_result`), for ``n`` tells from a fresh start. The
clock (`time.perf_counter`) is read around each ask and each tell and summed over the loop,
so computing the synthetic result is not charged to the optimizer; the whole loop is also
timed. Each size runs ``--repeat`` times after a short warm-up and the fastest run counts (as
`timeit` does: slower runs measure other load on the machine, not the optimizer). A search
whose bookkeeping stays flat has the same per-call cost at every ``n``: the last column is
the per-call (ask + tell) cost at ``n`` over that at the smallest ``n``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from morphml_dask.optim._asha import ASHA
from morphml_dask.optim._base import BaseOptimizer
from morphml_dask.optim._random import RandomSearch
from morphml_dask.space import CellSpace
from morphml_dask.testing import synthetic_result

Factory = Callable[[CellSpace, int], BaseOptimizer]
DEFAULT_JSON = Path(__file__).parent / "results" / "optimizer_overhead.json"


def factories() -> tuple[dict[str, Factory], list[str]]:
    """The optimizers to measure, and notes on any that are missing."""
    found: dict[str, Factory] = {
        "random-search": lambda space, seed: RandomSearch(space, budget=12, seed=seed),
        "asha": lambda space, seed: ASHA(space, min_budget=1, max_budget=27, eta=3, seed=seed),
    }
    notes = []
    try:
        from morphml_dask.optim._evolution import RegularizedEvolution
    except ImportError as error:
        notes.append(f"regularized-evolution skipped: {error}")
    else:
        found["regularized-evolution"] = lambda space, seed: RegularizedEvolution(
            space, population_size=10, sample_size=3, budget=12, seed=seed
        )
    return found, notes


def measure(make: Factory, n: int, seed: int) -> dict[str, float]:
    """Drive a fresh optimizer for ``n`` ask(1)/tell rounds; seconds spent in each."""
    optimizer = make(CellSpace(), seed)
    clock = time.perf_counter
    asking = telling = 0.0
    start = clock()
    for _ in range(n):
        t0 = clock()
        (trial,) = optimizer.ask(1)
        t1 = clock()
        result = synthetic_result(trial, fail_rate=0.05)
        t2 = clock()
        optimizer.tell(result)
        t3 = clock()
        asking += t1 - t0
        telling += t3 - t2
    loop = clock() - start
    return {"ask_s": asking, "tell_s": telling, "loop_s": loop}


def fastest(make: Factory, n: int, seed: int, repeat: int) -> dict[str, float]:
    """The run of `measure` with the least time in ask and tell, out of ``repeat``."""
    runs = [measure(make, n, seed) for _ in range(repeat)]
    return min(runs, key=lambda t: t["ask_s"] + t["tell_s"])


def run(sizes: list[int], seed: int, repeat: int) -> tuple[list[dict[str, Any]], list[str]]:
    found, notes = factories()
    rows: list[dict[str, Any]] = []
    for name, make in found.items():
        measure(make, 200, seed)  # warm-up: imports, caches, allocator
        base: float | None = None
        for n in sizes:
            times = fastest(make, n, seed, repeat)
            ask_us = 1e6 * times["ask_s"] / n
            tell_us = 1e6 * times["tell_s"] / n
            base = ask_us + tell_us if base is None else base
            rows.append(
                {
                    "optimizer": name,
                    "n": n,
                    "us_per_ask": round(ask_us, 3),
                    "us_per_tell": round(tell_us, 3),
                    "loop_s": round(times["loop_s"], 4),
                    "ratio_vs_smallest": round((ask_us + tell_us) / base, 3),
                }
            )
            print(_format_row(rows[-1]), flush=True)
    return rows, notes


def _format_row(row: dict[str, Any]) -> str:
    return (
        f"{row['optimizer']:<24}{row['n']:>9,}{row['us_per_ask']:>11.2f}"
        f"{row['us_per_tell']:>12.2f}{row['ratio_vs_smallest']:>13.2f}x"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Microseconds per ask and per tell.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the fastest counts")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args(argv)
    sizes = sorted(args.sizes)
    print(
        f"{'optimizer':<24}{'n tells':>9}{'us/ask':>11}{'us/tell':>12}{'vs n=' + str(sizes[0]):>14}"
    )
    rows, notes = run(sizes, args.seed, args.repeat)
    for note in notes:
        print(f"note: {note}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "optimizer_overhead",
        "sizes": sizes,
        "seed": args.seed,
        "repeat": args.repeat,
        "space": CellSpace.name,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "results": rows,
        "notes": notes,
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
