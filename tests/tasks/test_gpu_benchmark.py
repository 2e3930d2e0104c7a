"""`benchmarks/gpu.py` stays runnable: its dry run on the CPU takes every path the GPU run
takes (threads sharing a device, the worker path against a plain loop, a search, bf16)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.mark.slow
def test_the_gpu_benchmark_dry_run_on_the_cpu(
    tmp_path: Path, run_benchmark: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    out = tmp_path / "gpu.json"
    done = run_benchmark("gpu", "--device", "cpu", "--quick", "--json", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["errors"] == {}
    for network in ("sharing_nb201", "sharing_dag"):
        rows = document[network]["rows"]
        assert [row["trials"] for row in rows] == [1, 2]
        assert all(row["images_per_s_per_gpu"] > 0 for row in rows)
        assert rows[0]["speedup"] == 1.0
    assert document["overhead"]["overhead"] > -1.0
    assert document["search"]["complete"] == document["search"]["trials"] == 2
    assert document["search"]["trials_per_hour"] > 0
    assert document["precision"]["bf16"]["images_per_s"] > 0
    proxies = document["proxies"]
    assert set(proxies) == {f"{n}/cpu/batch{b}" for n in ("nb201", "dag") for b in (1, 8)}
    assert all(row["latency_ms"] > 0 and row["peak_memory_mb"] > 0 for row in proxies.values())
    assert set(document["goals"]) == {"sharing_speedup_4", "utilisation_4", "overhead"}
    assert all(goal["met"] is None for goal in document["goals"].values())  # not on a CPU
    assert "img/s/GPU" in done.stdout


def test_the_gpu_benchmark_says_when_there_is_no_gpu(
    tmp_path: Path, run_benchmark: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = run_benchmark("gpu", "--json", str(tmp_path / "gpu.json"), timeout=120)
    assert done.returncode == 2
    assert "no CUDA GPU here: run with --device cpu --quick" in done.stderr
