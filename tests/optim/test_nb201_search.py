"""The benchmark protocol, small: RS and REA land near the published NAS-Bench-201 numbers.

The full run (500 searches per optimizer) is `benchmarks/nb201_search.py`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from morphml_dask.space import CellSpace

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench(benchmark_module: Callable[[str], ModuleType]) -> ModuleType:
    return benchmark_module("nb201_search")


def test_random_search_and_evolution_reproduce_the_paper(bench: ModuleType) -> None:
    results = bench.benchmark(["random-search", "regularized-evolution"], runs=150, seed=1)
    rs, rea = results["random-search"], results["regularized-evolution"]
    print(f"RS {rs['mean']:.3f} ± {rs['std']:.3f}  REA {rea['mean']:.3f} ± {rea['std']:.3f}")
    assert abs(rs["mean"] - 90.93) <= 0.25
    assert abs(rea["mean"] - 91.19) <= 0.25
    assert rea["mean"] > rs["mean"]
    for run in rs["runs"] + rea["runs"]:
        CellSpace().from_arch_str(run["arch_str"])
        assert 80 <= run["evaluations"] <= 140


@pytest.mark.parametrize("name", ["genetic-algorithm", "asha", "bayesian-optimization"])
def test_every_optimizer_runs_the_protocol(bench: ModuleType, name: str) -> None:
    result = bench.benchmark([name], runs=3, seed=0)[name]
    assert 85.0 < result["mean"] <= 91.61
    assert len(result["runs"]) == 3


def test_a_search_never_overspends(bench: ModuleType) -> None:
    from morphml_dask.optim import RandomSearch
    from morphml_dask.tasks import NB201TabularTask

    run = bench.run_search(RandomSearch(CellSpace(), seed=0), NB201TabularTask(), seconds=3_000)
    assert 15 <= run["evaluations"] <= 40


def test_a_warm_up_is_charged_to_the_search_budget(bench: ModuleType) -> None:
    from morphml_dask.optim import RegularizedEvolution
    from morphml_dask.tasks import NB201TabularTask

    def scored_at(cost: float) -> dict[str, float]:
        def proxy(arch: object) -> tuple[float, float]:
            return float(CellSpace().to_index(arch)), cost  # type: ignore[arg-type]

        optimizer = RegularizedEvolution(CellSpace(), warmup=200, seed=0)
        return bench.run_search(optimizer, NB201TabularTask(), seconds=3_000, proxy=proxy)  # type: ignore[no-any-return]

    free, costly = scored_at(0.0), scored_at(5.0)  # 200 scores at 5 s: a third of the budget
    assert free["scored"] == costly["scored"] == 200
    assert costly["evaluations"] < free["evaluations"] * 0.8


def test_the_committed_synflow_table_is_what_scoring_the_cells_gives(
    benchmark_module: Callable[[str], ModuleType],
) -> None:
    """`benchmarks/results/nb201_synflow.npz`, which the warm-up benchmark charges and ranks
    by, holds every cell, and recomputing a few gives the same scores."""
    import numpy as np

    table = benchmark_module("nb201_proxy_table")
    stored = np.load(BENCHMARKS / "results" / "nb201_synflow.npz")
    assert not np.isnan(stored["scores"]).any() and (stored["seconds"] > 0).all()
    picked = [0, 7_777, 15_624]
    fresh = table.scores_of(picked)
    assert np.allclose(fresh, stored["scores"][picked], rtol=1e-6)


def test_the_warm_up_benchmark_runs_its_protocol_small(
    run_benchmark: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """`benchmarks/nb201_warmup.py` with the committed synflow table: each warmed-up search
    scores its candidates (charged to its budget), the plain ones score none."""
    import json

    out = tmp_path / "warmup.json"
    done = run_benchmark("nb201_warmup", "--runs", "3", "--warmup", "200", "--json", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    searches = json.loads(out.read_text())["searches"]
    assert set(searches) == {
        "regularized-evolution",
        "regularized-evolution + warmup 200",
        "random-search",
        "random-search + warmup 200",
    }
    for name, result in searches.items():
        assert result["mean_scored"] == (200 if "warmup" in name else 0)
        assert len(result["accuracies"]) == 3 and 85 < result["mean"] <= 91.61
