"""`DagSpace`: a general DAG CNN search space for image classification on users' data.

An architecture is a chain of up to ``max_nodes`` op nodes in topological order; node ``i``
reads one or more earlier nodes (the input included), and every node without a consumer
feeds the output. Model builders put a stem before the graph and a classifier after it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask.exceptions import SearchSpaceError
from morphml_dask.registry import register_kind
from morphml_dask.space._base import BaseSearchSpace
from morphml_dask.space._graph import ArchGraph, Node, _reachable
from morphml_dask.space._ops import KERNEL_SIZES, MAX_CHANNELS
from morphml_dask.validation import (
    check_choice,
    check_int,
    check_items,
    check_number,
    invalid,
    is_int,
)

if TYPE_CHECKING:
    from morphml_dask.space._config import Candidate

__all__ = ["DagSpace"]

DAG_OPS = ("conv", "sep_conv", "max_pool", "avg_pool", "identity")
_POOL_KERNELS = (3, 5)
_MUTATIONS = ("op", "add_edge", "remove_edge", "add_node", "remove_node")

_MOST_NODES = 32
# Settings errors read "invalid DagSpace setting <key>".
_OWNER: dict[str, Any] = {"error": SearchSpaceError, "owner": "DagSpace"}

Layout = tuple[list[Node], set[tuple[int, int]]]


class DagSpace(BaseSearchSpace):
    """Variable-size DAGs of convolutions, separable convolutions, pooling and identities.

    Parameters
    ----------
    max_nodes
        Most op nodes in a graph (input and output not counted).
    min_nodes
        Fewest op nodes.
    ops
        Allowed ops, a subset of ``("conv", "sep_conv", "max_pool", "avg_pool", "identity")``.
    kernels
        Kernel sizes for convolutions (and pooling, where 3 or 5).
    widths
        Output channels a convolution may have.
    skip_prob
        Probability that a sampled node also reads each earlier node (skip connections).
    """

    name = "dag-cnn"

    def __init__(
        self,
        max_nodes: int = 6,
        min_nodes: int = 1,
        ops: tuple[str, ...] | list[str] = DAG_OPS,
        kernels: tuple[int, ...] | list[int] = (3, 5),
        widths: tuple[int, ...] | list[int] = (16, 32, 64),
        skip_prob: float = 0.3,
    ) -> None:
        self.max_nodes, self.min_nodes = _check_node_counts(max_nodes, min_nodes)
        self.ops = check_items("ops", ops, _check_op, what="op names", **_OWNER)
        self.kernels = tuple(
            sorted(check_items("kernels", kernels, _check_kernel, what="kernel sizes", **_OWNER))
        )
        self.widths = tuple(
            sorted(check_items("widths", widths, _check_width, what="channel counts", **_OWNER))
        )
        self.skip_prob = check_number(
            "skip_prob", skip_prob, low=0, high=1, expected="a probability from 0 to 1", **_OWNER
        )
        self._pool_kernels = tuple(k for k in self.kernels if k in _POOL_KERNELS) or (3,)

    # -- search moves ----------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> ArchGraph:
        count = int(rng.integers(self.min_nodes, self.max_nodes + 1))
        nodes = [self._sample_node(rng) for _ in range(count)]
        edges: set[tuple[int, int]] = set()
        for i in range(1, count + 1):
            edges.add((int(rng.integers(i)), i))
            edges.update((j, i) for j in range(i) if rng.random() < self.skip_prob)
        return _build((nodes, edges))

    def mutate(self, arch: Candidate, rng: np.random.Generator) -> ArchGraph:
        """A random op change, edge addition or removal, or node insertion or removal."""
        layout = _layout(self._checked(arch))
        for _ in range(100):
            move = _MUTATIONS[int(rng.integers(len(_MUTATIONS)))]
            candidate = getattr(self, f"_mutate_{move}")(layout, rng)
            if candidate is not None:
                child = _build(candidate)
                if child != arch and self.contains(child):
                    return child
        raise SearchSpaceError(
            "no mutation of this architecture stays in the space",
            expected="a space with more than one op choice or room for more nodes",
            received=repr(arch)[:300],
            fix="widen the space (ops, kernels, widths or max_nodes)",
        )

    def crossover(self, a: Candidate, b: Candidate, rng: np.random.Generator) -> ArchGraph:
        """``a``'s wiring, each op taken from ``b``'s node at the same depth half the time."""
        nodes_a, edges = _layout(self._checked(a))
        nodes_b, _ = _layout(self._checked(b))
        mixed = [
            nodes_b[i] if i < len(nodes_b) and rng.random() < 0.5 else node
            for i, node in enumerate(nodes_a)
        ]
        return _build((mixed, edges))

    def contains(self, arch: Candidate) -> bool:
        if not isinstance(arch, ArchGraph):
            return False
        inner = [n for n in arch.nodes if n.kind != "structural"]
        if not self.min_nodes <= len(inner) <= self.max_nodes:
            return False
        if not all(self._allows(node) for node in inner):
            return False
        succs = [arch.successors(i) for i in range(len(arch.nodes))]
        preds = [arch.predecessors(i) for i in range(len(arch.nodes))]
        everything = set(range(len(arch.nodes)))
        return (
            _reachable(arch.input_index, succs) == everything
            and _reachable(arch.output_index, preds) == everything
        )

    def encode(self, arch: Candidate) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Upper-triangular adjacency over padded slots, then per slot a one-hot op, the
        kernel size and the width (scaled to [0, 1])."""
        nodes, edges = _layout(self._checked(arch))
        slots = self.max_nodes + 2
        adjacency = np.zeros((slots, slots))
        last = len(nodes) + 1
        for src, dst in edges:
            adjacency[src, slots - 1 if dst == last else dst] = 1.0
        features = np.zeros((self.max_nodes, len(self.ops) + 2))
        for i, node in enumerate(nodes):
            features[i, self.ops.index(node.op)] = 1.0
            params = dict(node.params)
            features[i, -2] = float(params.get("kernel", 0)) / max(KERNEL_SIZES)
            features[i, -1] = float(params.get("channels", 0)) / max(self.widths)
        return np.concatenate([adjacency[np.triu_indices(slots, 1)], features.ravel()])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_nodes": self.max_nodes,
            "min_nodes": self.min_nodes,
            "ops": list(self.ops),
            "kernels": list(self.kernels),
            "widths": list(self.widths),
            "skip_prob": self.skip_prob,
        }

    # -- helpers ---------------------------------------------------------------------------

    def _sample_node(self, rng: np.random.Generator) -> Node:
        op = self.ops[int(rng.integers(len(self.ops)))]
        if op in ("conv", "sep_conv"):
            kernel = self.kernels[int(rng.integers(len(self.kernels)))]
            width = self.widths[int(rng.integers(len(self.widths)))]
            return Node(op, kernel=kernel, channels=width)
        if op in ("max_pool", "avg_pool"):
            return Node(op, kernel=self._pool_kernels[int(rng.integers(len(self._pool_kernels)))])
        return Node(op)

    def _allows(self, node: Node) -> bool:
        if node.op not in self.ops:
            return False
        params = dict(node.params)
        if node.op in ("conv", "sep_conv"):
            return params["kernel"] in self.kernels and params["channels"] in self.widths
        if node.op in ("max_pool", "avg_pool"):
            return params["kernel"] in self._pool_kernels
        return True

    def _checked(self, arch: Candidate) -> ArchGraph:
        if not (isinstance(arch, ArchGraph) and self.contains(arch)):
            raise SearchSpaceError(
                "the architecture is not in this DAG space",
                expected=f"1 to {self.max_nodes} op nodes from {list(self.ops)}, kernels "
                f"{list(self.kernels)}, widths {list(self.widths)}, no dead ends",
                received=repr(arch)[:300],
                fix="sample architectures from this space, or widen the space's settings",
            )
        return arch

    def _mutate_op(self, layout: Layout, rng: np.random.Generator) -> Layout | None:
        nodes, edges = layout
        i = int(rng.integers(len(nodes)))
        new = self._sample_node(rng)
        if new == nodes[i]:
            return None
        return [*nodes[:i], new, *nodes[i + 1 :]], set(edges)

    def _mutate_add_edge(self, layout: Layout, rng: np.random.Generator) -> Layout | None:
        nodes, edges = layout
        dst = int(rng.integers(1, len(nodes) + 2))
        src = int(rng.integers(dst))
        if (src, dst) in edges:
            return None
        return list(nodes), edges | {(src, dst)}

    def _mutate_remove_edge(self, layout: Layout, rng: np.random.Generator) -> Layout | None:
        nodes, edges = layout
        inner = sorted(e for e in edges if e[1] <= len(nodes))
        src, dst = inner[int(rng.integers(len(inner)))]
        if sum(1 for e in inner if e[1] == dst) < 2:
            return None  # dst would lose its only input
        return list(nodes), edges - {(src, dst)}

    def _mutate_add_node(self, layout: Layout, rng: np.random.Generator) -> Layout | None:
        nodes, edges = layout
        if len(nodes) >= self.max_nodes:
            return None
        at = int(rng.integers(1, len(nodes) + 2))  # new node's position
        shifted = {(s + (s >= at), d + (d >= at)) for s, d in edges}
        shifted.add((int(rng.integers(at)), at))
        return [*nodes[: at - 1], self._sample_node(rng), *nodes[at - 1 :]], shifted

    def _mutate_remove_node(self, layout: Layout, rng: np.random.Generator) -> Layout | None:
        nodes, edges = layout
        if len(nodes) <= self.min_nodes:
            return None
        gone = int(rng.integers(1, len(nodes) + 1))
        preds = [s for s, d in edges if d == gone]
        succs = [d for s, d in edges if s == gone]
        kept = {(s, d) for s, d in edges if gone not in (s, d)}
        kept.update((p, s) for p in preds for s in succs)
        renumber = {(s - (s > gone), d - (d > gone)) for s, d in kept}
        return [n for i, n in enumerate(nodes, start=1) if i != gone], renumber


def _layout(arch: ArchGraph) -> Layout:
    """Op nodes in topological order (positions 1..k; 0 is the input, k+1 the output) and
    the edges between positions."""
    order = arch.topological_order()
    position = {node: i for i, node in enumerate(order)}
    nodes = [arch.nodes[i] for i in order[1:-1]]
    return nodes, {(position[s], position[d]) for s, d in arch.edges}


def _build(layout: Layout) -> ArchGraph:
    """The graph for op nodes and their edges; nodes nobody reads feed the output."""
    nodes, edges = layout
    output = len(nodes) + 1
    readers = {s for s, _ in edges}
    to_output = {(i, output) for i in range(1, output) if i not in readers}
    return ArchGraph(["input", *nodes, "output"], sorted(edges | to_output))


def _check_node_counts(max_nodes: object, min_nodes: object) -> tuple[int, int]:
    biggest = check_int("max_nodes", max_nodes, low=1, high=_MOST_NODES, **_OWNER)
    fewest = check_int("min_nodes", min_nodes, low=1, high=_MOST_NODES, **_OWNER)
    if fewest > biggest:
        raise SearchSpaceError(
            "invalid DagSpace setting max_nodes/min_nodes",
            expected=f"integers with 1 <= min_nodes <= max_nodes <= {_MOST_NODES}",
            received=f"min_nodes={min_nodes!r}, max_nodes={max_nodes!r}",
            fix=f"lower min_nodes to {biggest} or less, or raise max_nodes to {fewest} or more",
        )
    return biggest, fewest


def _check_op(name: str, op: object) -> str:
    return check_choice(name, op, DAG_OPS, **_OWNER)


def _check_kernel(name: str, kernel: object) -> int:
    if not (is_int(kernel) and kernel in KERNEL_SIZES):
        expected = f"a kernel size, one of {list(KERNEL_SIZES)}"
        raise invalid(SearchSpaceError, name, kernel, expected=expected, owner="DagSpace")
    return int(kernel)


def _check_width(name: str, width: object) -> int:
    return check_int(
        name,
        width,
        low=1,
        high=MAX_CHANNELS,
        expected=f"a channel count, an integer from 1 to {MAX_CHANNELS}",
        **_OWNER,
    )


register_kind("space", DagSpace.name, DagSpace)
