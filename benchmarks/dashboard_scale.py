"""Dashboard cost against the number of trials: what the scheduler's event loop pays.

    python benchmarks/dashboard_scale.py --json benchmarks/results/dashboard_scale.json

For 1,000, 10,000 and 100,000 finished trials, fed to a `SearchBoard` in batches of 500 (a
busy driver's message each second), reports the time of one batch update (what each
driver message costs the scheduler), of one page redraw (what each open page costs it
once a second), of one /metrics scrape, and the points the page sends to the browser.
Flat columns mean the page stays responsive however long the search runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import REGISTRY, generate_latest

from morphml_dask.dashboard import TrialSummary
from morphml_dask.dashboard._extension import boards_of
from morphml_dask.dashboard._page import SearchPage
from morphml_dask.status import SearchStatus

BATCH = 500
DEFAULT_JSON = Path(__file__).parent / "results" / "dashboard_scale.json"


class _Scheduler:
    """What the board and the page read of a scheduler: its extensions and workers."""

    def __init__(self) -> None:
        self.extensions: dict[str, Any] = {}
        self.workers: dict[str, Any] = {}


def _trials(count: int, seed: int) -> list[TrialSummary]:
    rng = np.random.default_rng(seed)
    values, params = rng.normal(80, 5, count), rng.lognormal(13, 1, count)
    return [
        (f"t{i:06d}", "complete" if i % 10 else "fail", float(values[i]), float(params[i]), 12, 0,
         f"tcp://10.0.0.{i % 50}:4000", "cuda:0", 1000.0 + i, 1030.0 + i, None, None)
        for i in range(count)
    ]  # fmt: skip


def measure(count: int, seed: int = 0) -> dict[str, float]:
    boards = boards_of(_Scheduler())  # registers the /metrics collector, as on a scheduler
    board = boards.board("run", f"bench-{count}", "val_accuracy", "maximize")
    trials = _trials(count, seed)
    status = SearchStatus(running=50)
    updates = []
    for start in range(0, count, BATCH):
        began = time.perf_counter()
        board.update(trials[start : start + BATCH], status)
        updates.append(time.perf_counter() - began)
    page = SearchPage(boards.latest)
    redraws = []
    for _ in range(5):
        board.version += 1  # as if new results came: the page redraws everything
        began = time.perf_counter()
        page.update()
        redraws.append(time.perf_counter() - began)
    began = time.perf_counter()
    generate_latest(REGISTRY)
    scrape = time.perf_counter() - began
    points = sum(len(next(iter(s.data.values()))) for s in _sources(page))
    return {
        "trials": count,
        "update_ms_per_batch": 1000 * statistics.median(updates),
        "redraw_ms": 1000 * statistics.median(redraws),
        "scrape_ms": 1000 * scrape,
        "points_on_page": points,
    }


def _sources(page: SearchPage) -> list[Any]:
    return [page.history, page.best_time, page.best_trials, page.scatter, page.front,
            page.rungs, page.timeline]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    rows = [measure(size) for size in args.sizes]
    print(f"{'trials':>8} {'update ms/500':>14} {'redraw ms':>10} {'scrape ms':>10} {'points':>7}")
    for row in rows:
        print(
            f"{row['trials']:>8} {row['update_ms_per_batch']:>14.2f} {row['redraw_ms']:>10.1f}"
            f" {row['scrape_ms']:>10.2f} {row['points_on_page']:>7}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"dashboard_scale": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
