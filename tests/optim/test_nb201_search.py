"""The benchmark protocol, small: RS and REA land near the published NAS-Bench-201 numbers.

The full run (500 searches per optimizer) is `benchmarks/nb201_search.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from morphml_dask.space import CellSpace


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
