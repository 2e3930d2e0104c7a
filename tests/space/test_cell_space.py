from __future__ import annotations

import csv
from collections import Counter, defaultdict
from importlib import resources

import numpy as np
import pytest

from morphml_dask import CellSpace, SearchSpaceError
from morphml_dask.space import NB201_OPS, ArchGraph, DagSpace
from morphml_dask.space._graph import _canonical_multigraph

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def benchmark_rows() -> list[tuple[int, str]]:
    table = resources.files("morphml_dask.data.nb201").joinpath("nb201_hp12_accuracy.csv")
    with table.open(encoding="utf-8") as handle:
        return [(int(r["index"]), r["arch_str"]) for r in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def all_cells() -> list[ArchGraph]:
    return list(CellSpace().enumerate())


def test_enumerates_all_15625_cells_in_benchmark_order(
    all_cells: list[ArchGraph], benchmark_rows: list[tuple[int, str]]
) -> None:
    space = CellSpace()
    assert len(all_cells) == len(space) == 15_625 == 5**6
    assert len(set(all_cells)) == 15_625
    by_index = dict(benchmark_rows)
    for index, arch in enumerate(all_cells):
        assert space.to_arch_str(arch) == by_index[index]
        assert space.to_index(arch) == index
        assert space.from_index(index) == arch
        assert space.contains(arch)


def _flattened_expression(ops: tuple[str, ...]) -> tuple[str, ...]:
    """An independent oracle: each cell node as a sorted multiset of terms, with sums
    flattened, zeros dropped and skip connections passing their input through."""
    it = iter(ops)
    nodes: dict[int, tuple[str, ...]] = {0: ("x",)}
    for target in (1, 2, 3):
        terms: list[str] = []
        for source in range(target):
            op = next(it)
            if op == "none" or not nodes[source]:
                continue
            if op == "skip_connect":
                terms.extend(nodes[source])
            else:
                terms.append(f"{op}({'+'.join(nodes[source])})")
        nodes[target] = tuple(sorted(terms))
    return nodes[3]


def test_distinct_fingerprints_over_the_benchmark(all_cells: list[ArchGraph]) -> None:
    """5,260 distinct functions; the paper counts 6,466 with another rule (docs/nb201.md)."""
    space = CellSpace()
    fingerprints = {arch.fingerprint for arch in all_cells}
    assert len(fingerprints) == 5_260
    # Every fingerprint class computes one expression: the fingerprint never merges cells
    # that compute different functions. The expression is coarser because it cannot see
    # whether a term reuses one op (shared weights) or two separate ops.
    expressions: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for arch in all_cells:
        expressions[arch.fingerprint].add(_flattened_expression(space.to_ops(arch)))
    assert all(len(e) == 1 for e in expressions.values())
    assert len({e for es in expressions.values() for e in es}) == 4_930


def _benchmark_unique_string(ops: tuple[str, ...]) -> str:
    """The rule behind the paper's 6,466: zero terms kept as '#', nested sums not flattened."""
    it = iter(ops)
    nodes = {0: "0"}
    for target in (1, 2, 3):
        terms = []
        for source in range(target):
            op = next(it)
            if op == "none" or nodes[source] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(nodes[source])
            else:
                terms.append(f"({nodes[source]})@{op}")
        nodes[target] = "+".join(sorted(terms))
    return nodes[3]


def _convolutions(arch: ArchGraph) -> tuple[tuple[str, int], ...]:
    labels, _ = _canonical_multigraph(arch.pruned())
    return tuple(sorted(Counter(x for x in labels if x.startswith("nor_conv")).items()))


def test_how_the_papers_count_differs(all_cells: list[ArchGraph]) -> None:
    space = CellSpace()
    fingerprints_of: dict[str, dict[str, tuple[tuple[str, int], ...]]] = defaultdict(dict)
    strings_of: dict[str, set[str]] = defaultdict(set)
    for arch in all_cells:
        string = _benchmark_unique_string(space.to_ops(arch))
        fingerprints_of[string][arch.fingerprint] = _convolutions(arch)
        strings_of[arch.fingerprint].add(string)
    assert len(fingerprints_of) == 6_466
    # Where the paper's rule merges cells that the fingerprint keeps apart, the cells hold
    # different numbers of convolutions (one op read twice, or two ops): different networks.
    split = [group for group in fingerprints_of.values() if len(group) > 1]
    assert len(split) == 430
    assert all(len(set(group.values())) == len(group) for group in split)
    # Where the fingerprint merges the paper's classes, the paper kept a zero term or a
    # nested sum apart: the expressions are equal once flattened.
    merged = [fp for fp, strings in strings_of.items() if len(strings) > 1]
    assert len(merged) == 688


def test_cells_that_differ_only_in_dead_or_zero_edges_share_a_fingerprint() -> None:
    space = CellSpace()
    # Node 3 reads only node 0: whatever happens on edges into node 1 and 2 is dead.
    a = space.from_arch_str(
        "|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|nor_conv_1x1~0|none~1|none~2|"
    )
    b = space.from_arch_str(
        "|none~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_1x1~0|none~1|none~2|"
    )
    assert a != b and a.fingerprint == b.fingerprint
    assert a.fingerprint != space.from_arch_str(BEST).fingerprint


def test_mutation_changes_exactly_one_edge_to_a_different_op() -> None:
    space, rng = CellSpace(), np.random.default_rng(0)
    arch = space.sample(rng)
    for _ in range(500):
        child = space.mutate(arch, rng)
        changed = [
            (x, y) for x, y in zip(space.to_ops(arch), space.to_ops(child), strict=True) if x != y
        ]
        assert len(changed) == 1 and changed[0][1] in NB201_OPS
        arch = child


def test_sampling_is_seeded_and_covers_the_ops() -> None:
    space = CellSpace()
    first = [space.sample(np.random.default_rng(3)) for _ in range(2)]
    assert first[0] == first[1]
    seen = {op for _ in range(200) for op in space.to_ops(space.sample(np.random.default_rng(_)))}
    assert seen == set(NB201_OPS)


def test_crossover_takes_each_edge_from_a_parent() -> None:
    space, rng = CellSpace(), np.random.default_rng(1)
    for _ in range(200):
        a, b = space.sample(rng), space.sample(rng)
        child = space.to_ops(space.crossover(a, b, rng))
        assert all(
            c in (x, y) for c, x, y in zip(child, space.to_ops(a), space.to_ops(b), strict=True)
        )


def test_encoding_is_one_hot_per_edge() -> None:
    space = CellSpace()
    code = space.encode(space.from_arch_str(BEST))
    assert code.shape == (30,)
    assert code.reshape(6, 5).sum(axis=1).tolist() == [1.0] * 6
    assert code.reshape(6, 5)[5].tolist() == [0, 0, 0, 1, 0]


def test_cells_survive_node_permutation() -> None:
    space = CellSpace()
    arch = space.from_arch_str(BEST)
    order = [9, 3, 0, 7, 2, 5, 1, 8, 4, 6]
    new = {old: i for i, old in enumerate(order)}
    shuffled = ArchGraph([arch.nodes[o] for o in order], [(new[s], new[d]) for s, d in arch.edges])
    assert space.to_arch_str(shuffled) == BEST
    assert shuffled.fingerprint == arch.fingerprint


@pytest.mark.parametrize(
    "bad",
    [
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|",
        "|conv~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        "|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        "nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        "",
    ],
)
def test_malformed_arch_str(bad: str) -> None:
    with pytest.raises(
        SearchSpaceError,
        match=r"(?s)malformed NAS-Bench-201 arch_str.*expected: three '\+'-joined groups.*"
        r"received: .*fix: copy the string from the benchmark",
    ):
        CellSpace().from_arch_str(bad)


def test_other_errors() -> None:
    space = CellSpace()
    with pytest.raises(
        SearchSpaceError, match=r"(?s)index out of range.*from 0 to 15624.*received: 15625"
    ):
        space.from_index(15_625)
    with pytest.raises(
        SearchSpaceError, match=r"(?s)not a NAS-Bench-201 cell.*fix: build cells with CellSpace"
    ):
        space.to_arch_str(DagSpace().sample(np.random.default_rng(0)))
    with pytest.raises(SearchSpaceError, match=r"(?s)not a NAS-Bench-201 op list.*6 ops"):
        space.from_ops(["none"] * 5)
