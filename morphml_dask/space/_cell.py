"""`CellSpace`: the NAS-Bench-201 cell search space (Dong & Yang, ICLR 2020).

A cell has 4 nodes; node ``j`` is the sum of one op per earlier node ``i`` (edge ``i -> j``),
6 edges in all, 5 ops per edge: 15,625 cells. As an `ArchGraph`, the input is cell node 0,
``add`` nodes are cell nodes 1 and 2, the output is cell node 3, and every edge is an op node
between its two cell nodes, kept even when it is ``none`` so that the cell round-trips.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask.exceptions import SearchSpaceError
from morphml_dask.registry import register_kind
from morphml_dask.space._base import BaseSearchSpace
from morphml_dask.space._graph import ArchGraph
from morphml_dask.validation import is_int

if TYPE_CHECKING:
    from morphml_dask.space._config import Candidate

__all__ = ["NB201_EDGES", "NB201_OPS", "NUM_CELLS", "CellSpace"]

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (source, target) of each edge, in the order the benchmark's arch_str lists them.
NB201_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_CELLS: int = len(NB201_OPS) ** len(NB201_EDGES)
_ARCH_STR_EXAMPLE = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
)
_CELL_NODE_OPS = ("input", "add", "add", "output")


@functools.cache
def _benchmark_arch_strs() -> tuple[str, ...]:
    """The benchmark's arch strings, position = NAS-Bench-201 index."""
    table = resources.files("morphml_dask.data.nb201").joinpath("nb201_hp12_accuracy.csv")
    with table.open(encoding="utf-8") as handle:
        rows = sorted((int(r["index"]), r["arch_str"]) for r in csv.DictReader(handle))
    return tuple(s for _, s in rows)


@functools.cache
def _index_of_arch_str() -> dict[str, int]:
    return {s: i for i, s in enumerate(_benchmark_arch_strs())}


class CellSpace(BaseSearchSpace):
    """The NAS-Bench-201 cell space.

    Examples
    --------
    >>> space = CellSpace()
    >>> arch = space.from_arch_str("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    >>> space.from_index(space.to_index(arch)) == arch
    True
    """

    name = "nb201-cell"
    ops = NB201_OPS
    edges = NB201_EDGES

    def __len__(self) -> int:
        return NUM_CELLS

    # -- conversions -----------------------------------------------------------------------

    def from_ops(self, ops: tuple[str, ...] | list[str]) -> ArchGraph:
        """The cell with ``ops[k]`` on edge `NB201_EDGES[k]`."""
        if (
            not isinstance(ops, list | tuple)
            or len(ops) != len(NB201_EDGES)
            or any(not isinstance(op, str) or op not in NB201_OPS for op in ops)
        ):
            raise SearchSpaceError(
                "not a NAS-Bench-201 op list",
                expected=f"6 ops, each one of {list(NB201_OPS)}",
                received=repr(ops),
                fix="give one op per edge in the order (0,1),(0,2),(1,2),(0,3),(1,3),(2,3)",
            )
        nodes = [*_CELL_NODE_OPS, *ops]
        graph_edges = []
        for k, (src, dst) in enumerate(NB201_EDGES):
            graph_edges += [(src, 4 + k), (4 + k, dst)]
        return ArchGraph(nodes, graph_edges)

    def to_ops(self, arch: Candidate) -> tuple[str, ...]:
        """The op on each edge of a cell, in `NB201_EDGES` order."""
        ops = _cell_ops(arch) if isinstance(arch, ArchGraph) else None
        if ops is None:
            raise SearchSpaceError(
                "the architecture is not a NAS-Bench-201 cell",
                expected="a graph made by CellSpace (4 cell nodes, one op node per edge)",
                received=repr(arch)[:300],
                fix="build cells with CellSpace().from_arch_str(...) or .sample(rng)",
            )
        return ops

    def from_arch_str(self, arch_str: str) -> ArchGraph:
        """Parse the benchmark's string, e.g. ``|nor_conv_3x3~0|+|...|+|...|``."""
        groups = arch_str.split("+") if isinstance(arch_str, str) else []
        ops: list[str] = []
        ok = len(groups) == 3
        for target, group in enumerate(groups, start=1):
            parts = group.split("|")
            if len(parts) != target + 2 or parts[0] or parts[-1]:
                ok = False
                break
            for source, token in enumerate(parts[1:-1]):
                op, _, src = token.partition("~")
                if src != str(source) or op not in NB201_OPS:
                    ok = False
                ops.append(op)
        if not ok:
            raise SearchSpaceError(
                "malformed NAS-Bench-201 arch_str",
                expected=f"three '+'-joined groups of |op~source| tokens, e.g. {_ARCH_STR_EXAMPLE}"
                f", ops from {list(NB201_OPS)}",
                received=repr(arch_str),
                fix="copy the string from the benchmark, or build it with CellSpace.to_arch_str",
            )
        return self.from_ops(ops)

    def to_arch_str(self, arch: Candidate) -> str:
        ops = iter(self.to_ops(arch))
        groups = []
        for target in (1, 2, 3):
            groups.append("|" + "".join(f"{next(ops)}~{s}|" for s in range(target)))
        return "+".join(groups)

    def from_index(self, index: int) -> ArchGraph:
        """The cell with NAS-Bench-201 index ``index`` (0 to 15,624)."""
        if not (is_int(index) and 0 <= index < NUM_CELLS):
            raise SearchSpaceError(
                "NAS-Bench-201 index out of range",
                expected=f"an integer from 0 to {NUM_CELLS - 1}",
                received=repr(index),
                fix="use an index from the benchmark table",
            )
        return self.from_arch_str(_benchmark_arch_strs()[int(index)])

    def to_index(self, arch: Candidate) -> int:
        """The NAS-Bench-201 index of a cell."""
        return _index_of_arch_str()[self.to_arch_str(arch)]

    def enumerate(self) -> Iterator[ArchGraph]:
        """All 15,625 cells, in NAS-Bench-201 index order."""
        for arch_str in _benchmark_arch_strs():
            yield self.from_arch_str(arch_str)

    # -- search moves ----------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> ArchGraph:
        return self.from_ops([NB201_OPS[i] for i in rng.integers(len(NB201_OPS), size=6)])

    def mutate(self, arch: Candidate, rng: np.random.Generator) -> ArchGraph:
        """Set one random edge to a different op (the paper's REA mutation)."""
        ops = list(self.to_ops(arch))
        edge = int(rng.integers(len(ops)))
        choices = [op for op in NB201_OPS if op != ops[edge]]
        ops[edge] = choices[int(rng.integers(len(choices)))]
        return self.from_ops(ops)

    def crossover(self, a: Candidate, b: Candidate, rng: np.random.Generator) -> ArchGraph:
        """Each edge's op from either parent with equal probability."""
        pick = rng.random(len(NB201_EDGES)) < 0.5
        ops_a, ops_b = self.to_ops(a), self.to_ops(b)
        return self.from_ops([x if p else y for p, x, y in zip(pick, ops_a, ops_b, strict=True)])

    def contains(self, arch: Candidate) -> bool:
        return isinstance(arch, ArchGraph) and _cell_ops(arch) is not None

    def encode(self, arch: Candidate) -> np.ndarray[Any, np.dtype[np.float64]]:
        """One-hot op per edge: 30 values."""
        onehot = np.zeros((len(NB201_EDGES), len(NB201_OPS)))
        for k, op in enumerate(self.to_ops(arch)):
            onehot[k, NB201_OPS.index(op)] = 1.0
        return onehot.ravel()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}


def _cell_ops(arch: ArchGraph) -> tuple[str, ...] | None:
    """The six edge ops of a cell in any node order, or None if ``arch`` is not a cell."""
    nodes = arch.nodes
    adds = [i for i, n in enumerate(nodes) if n.op == "add"]
    edge_nodes = [i for i, n in enumerate(nodes) if n.op in NB201_OPS]
    if len(adds) != 2 or len(edge_nodes) != 6 or len(nodes) != 10 or len(arch.edges) != 12:
        return None
    inp, out = arch.input_index, arch.output_index
    # Cell node 2 is the add node that takes an edge from the other add node.
    first, second = adds
    if any(
        arch.predecessors(e) == (first,) and arch.successors(e) == (second,) for e in edge_nodes
    ):
        cell_index = {inp: 0, first: 1, second: 2, out: 3}
    else:
        cell_index = {inp: 0, second: 1, first: 2, out: 3}
    ops: dict[tuple[int, int], str] = {}
    for e in edge_nodes:
        preds, succs = arch.predecessors(e), arch.successors(e)
        if len(preds) != 1 or len(succs) != 1:
            return None
        key = (cell_index.get(preds[0], -1), cell_index.get(succs[0], -1))
        if key not in NB201_EDGES or key in ops:
            return None
        ops[key] = nodes[e].op
    return tuple(ops[edge] for edge in NB201_EDGES)


register_kind("space", CellSpace.name, CellSpace)
