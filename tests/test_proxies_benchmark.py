"""`benchmarks/proxies.py`: the quick run writes a finite correlation per proxy, and the
rank correlation it falls back on without scipy matches scipy's.

The full run (1,000 NAS-Bench-201 cells, 60 digits networks) is the script itself.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def bench(benchmark_module: Callable[[str], ModuleType]) -> ModuleType:
    return benchmark_module("proxies")


@pytest.mark.slow
def test_quick_run_writes_a_correlation_per_proxy(
    tmp_path: Path, run_benchmark: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    out = tmp_path / "proxies.json"
    done = run_benchmark("proxies", "--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "s per cell" in done.stdout
    records = json.loads(out.read_text())
    assert {"synflow", "params", "flops"} <= set(records)
    assert {f"digits/{name}" for name in ("naswot", "jacob_cov", "snip", "grad_norm")} <= set(
        records
    )
    for name, record in records.items():
        assert {"spearman", "cells", "published", "within_0.05"} <= set(record), name
        assert isinstance(record["spearman"], float), name
        assert math.isfinite(record["spearman"]) and -1 <= record["spearman"] <= 1, name
        assert record["cells"] == (10 if name.startswith("digits/") else 50)
    assert records["synflow"]["published"] == 0.74
    assert isinstance(records["synflow"]["within_0.05"], bool)
    assert isinstance(records["params"]["within_0.05"], bool)
    # Our parameter counts equal the benchmark's, so they rank the sample identically.
    assert records["params"]["spearman"] == pytest.approx(
        records["params"]["table_spearman_on_sample"]
    )


def test_rank_correlation_with_ties(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    x = [1.0, 2.0, 2.0, 3.0, -math.inf]
    y = [10.0, 30.0, 20.0, 40.0, 0.0]
    # Ranks (2, 3.5, 3.5, 5, 1) and (2, 4, 3, 5, 1): centred (-1, .5, .5, 2, -2) and
    # (-1, 1, 0, 2, -2); covariance 9.5, variances 9.5 and 10.
    expected = 9.5 / math.sqrt(9.5 * 10)
    assert bench.rank_correlation(x, y) == pytest.approx(expected)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # the fallback, as without scipy
    assert bench.rank_correlation(x, y) == pytest.approx(expected)
