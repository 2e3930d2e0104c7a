"""The NAS-Bench-201 network: parameter counts equal the benchmark's, and it runs."""

from __future__ import annotations

import csv
import functools
from collections import Counter
from importlib import resources

import numpy as np
import pytest
import torch

from morphml_dask.models import build_model, count_parameters
from morphml_dask.space import CellSpace

BEST_ARCH_STR = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
# The benchmark's 200-epoch records of these 150 cells carry another network's cost figures
# (their 12-epoch records are right): a known upstream bug, D-X-Y/NATS-Bench#36 and
# D-X-Y/AutoDL-Projects#134. `test_only_misrecorded_rows_differ` pins the list.
_MISRECORDED_INDICES = """
    327 737 768 770 775 1151 2958 3034 3077 3103 3113 3400 3681 3899 4024 4070 4137 4165 4227
    4248 4464 4578 4650 4815 4982 5010 5065 5694 5751 5824 5835 6545 6547 6769 6877 6912 6977
    7263 7268 7326 7358 7396 7629 7717 7785 7793 7894 7950 7981 8181 8280 8322 8423 8447 8533
    8540 8557 8719 8809 8965 9043 9141 9172 9270 9296 9444 9473 9597 9632 9654 9735 10107
    10118 10162 10167 10207 10212 10281 10308 10340 10369 10597 10709 10821 10906 10947 10978
    11073 11096 11167 11222 11238 11259 11370 11374 11511 11514 11581 11676 11843 11911 11961
    11964 12016 12121 12187 12204 12271 12316 12317 12464 12540 12542 12568 12707 12748 12822
    12844 12939 13003 13223 13326 13479 13492 13599 13970 14264 14267 14293 14412 14419 14529
    14648 14661 14684 14689 14995 15033 15036 15040 15107 15347 15372 15386 15392 15403 15435
    15474 15484 15539
"""
MISRECORDED = frozenset(int(index) for index in _MISRECORDED_INDICES.split())
SAMPLED_CELLS = 64


@functools.cache
def benchmark_rows() -> tuple[dict[str, str], ...]:
    table = resources.files("morphml_dask.data.nb201").joinpath("nb201_200epoch.csv")
    with table.open(encoding="utf-8") as handle:
        rows = tuple(csv.DictReader(handle))
    assert [int(row["index"]) for row in rows] == list(range(len(rows)))
    return rows


def relative_error(parameters: int, model_size: str) -> float:
    # NAS-Bench-201's model_size is the parameter count in millions.
    return abs(parameters / 1e6 - float(model_size)) / float(model_size)


@pytest.mark.parametrize(("dataset", "num_classes"), [("cifar10", 10), ("cifar100", 100)])
def test_parameter_counts_match_the_benchmark(dataset: str, num_classes: int) -> None:
    rows = benchmark_rows()
    best = next(int(r["index"]) for r in rows if r["arch_str"] == BEST_ARCH_STR)
    picks = np.random.default_rng(201).choice(len(rows), size=SAMPLED_CELLS, replace=False)
    indices = sorted({best, *(int(i) for i in picks)} - MISRECORDED)
    space = CellSpace()
    errors = {}
    for index in indices:
        row = rows[index]
        model = build_model(space.from_arch_str(row["arch_str"]), num_classes)
        errors[index] = relative_error(count_parameters(model), row[f"{dataset}-model_size"])
    assert best in errors
    assert len(errors) >= 60
    assert max(errors.values()) <= 0.01, {i: e for i, e in errors.items() if e > 0.01}


@pytest.mark.slow
def test_only_misrecorded_rows_differ() -> None:
    # A cell's parameters depend only on how many of each op it has, not where; build one
    # network per op multiset (on the meta device: no memory, no initialisation).
    space = CellSpace()
    counts: dict[tuple[tuple[str, int], ...], int] = {}
    mismatches = set()
    for row in benchmark_rows():
        arch = space.from_arch_str(row["arch_str"])
        key = tuple(sorted(Counter(space.to_ops(arch)).items()))
        if key not in counts:
            with torch.device("meta"):
                counts[key] = count_parameters(build_model(arch, 10))
        if relative_error(counts[key], row["cifar10-model_size"]) > 1e-6:
            mismatches.add(int(row["index"]))
    assert mismatches == MISRECORDED


def test_a_misrecorded_cell_matches_its_12_epoch_record() -> None:
    # NATS-Bench#36 quotes this cell's 12-epoch parameter count: 0.802426 M.
    arch = CellSpace().from_arch_str(
        "|skip_connect~0|+|none~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    assert count_parameters(build_model(arch, 10)) == 802_426


def test_skeleton_parameters_by_hand() -> None:
    # With every edge `none`, only the skeleton has parameters.
    stem = 3 * 16 * 9 + 2 * 16
    reduction_1 = 16 * 32 * 9 + 2 * 32 + 32 * 32 * 9 + 2 * 32 + 16 * 32
    reduction_2 = 32 * 64 * 9 + 2 * 64 + 64 * 64 * 9 + 2 * 64 + 32 * 64
    head = 2 * 64 + 64 * 10 + 10
    arch = CellSpace().from_ops(["none"] * 6)
    assert count_parameters(build_model(arch, 10)) == stem + reduction_1 + reduction_2 + head


def test_dead_end_edges_keep_their_parameters() -> None:
    # Node 2 feeds nothing when edge 2->3 is `none`; the benchmark still counts its convs.
    space = CellSpace()
    dead = space.from_ops(
        ["skip_connect", "nor_conv_3x3", "nor_conv_3x3", "skip_connect"] + ["none"] * 2
    )
    alive = space.from_ops(["skip_connect", "none", "none", "nor_conv_3x3", "nor_conv_3x3", "none"])
    assert count_parameters(build_model(dead)) == count_parameters(build_model(alive))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cells_run_forward(seed: int) -> None:
    torch.manual_seed(seed)
    arch = CellSpace().sample(np.random.default_rng(seed))
    model = build_model(arch, num_classes=100)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 100)
    assert torch.isfinite(logits).all()


def test_cell_with_other_image_channels() -> None:
    arch = CellSpace().from_arch_str(BEST_ARCH_STR)
    rgb = count_parameters(build_model(arch, 10))
    assert count_parameters(build_model(arch, 10, in_channels=3)) == rgb
    grey = build_model(arch, 10, in_channels=1)
    # Only the stem convolution changes: 16 filters of 3x3 over 1 channel instead of 3.
    assert count_parameters(grey) == rgb - 2 * 16 * 9
    assert grey(torch.randn(2, 1, 16, 16)).shape == (2, 10)
