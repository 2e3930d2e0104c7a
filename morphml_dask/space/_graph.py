"""`ArchGraph`: an architecture as an immutable, validated DAG of operations.

Nodes carry ops (`morphml_dask.space._ops`); a node sums its inputs and applies its op.
The graph keeps exactly what it was built from (a NAS-Bench-201 cell keeps its six edges, so
that it round-trips with the benchmark's strings), and offers a pruned form and a fingerprint
that identify graphs computing the same function up to isomorphism.
"""

from __future__ import annotations

import functools
import hashlib
import numbers
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from morphml_dask.exceptions import InvalidArchitectureError
from morphml_dask.space._ops import OPS, ParamValue, check_op
from morphml_dask.validation import is_int

__all__ = ["ArchGraph", "Node"]

FORMAT = "morphml.arch"
FORMAT_VERSION = 1
DEFAULT_MAX_NODES = 64
_DOCUMENT_KEYS = ("format", "version", "nodes", "edges")


class Node:
    """One op of an `ArchGraph`: its name and hyper-parameters, immutable and hashable.

    Examples
    --------
    >>> Node("conv", kernel=3, channels=16).label
    'conv(channels=16,kernel=3)'
    """

    __slots__ = ("_key", "op", "params")

    op: str
    params: tuple[tuple[str, ParamValue], ...]
    _key: tuple[str, tuple[tuple[str, ParamValue], ...]]

    def __init__(self, op: str, /, **params: ParamValue) -> None:
        if not isinstance(op, str):
            raise InvalidArchitectureError(
                "a node's op must be a string",
                expected="an op name such as 'conv'",
                received=f"{type(op).__name__} {op!r}",
                fix="pass the op name as a string",
            )
        check_op(op, params)
        # NumPy integers pass the check but are no JSON: store plain ints.
        plain = {k: int(v) if isinstance(v, numbers.Integral) else v for k, v in params.items()}
        object.__setattr__(self, "op", op)
        object.__setattr__(self, "params", tuple(sorted(plain.items())))
        object.__setattr__(self, "_key", (op, self.params))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Node is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        # Dask ships trials to workers by pickling; rebuild through the validating constructor.
        return (_node, (self.op, dict(self.params)))

    def __copy__(self) -> Node:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Node:
        return self  # immutable: a copy would only cost a validation

    @property
    def label(self) -> str:
        """The op with its parameters, e.g. ``conv(channels=16,kernel=3)``."""
        if not self.params:
            return self.op
        return f"{self.op}({','.join(f'{k}={v}' for k, v in self.params)})"

    @property
    def kind(self) -> str:
        """The op's kind: structural, zero, identity or compute."""
        return OPS[self.op].kind

    def param(self, name: str) -> ParamValue:
        """The value of hyper-parameter ``name``."""
        return dict(self.params)[name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params)
        return f"Node({self.op!r}{args})"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, **dict(self.params)}


class ArchGraph:
    """An immutable DAG of ops with one ``input`` and one ``output`` node.

    Parameters
    ----------
    nodes
        The ops, as `Node` objects or bare op names for ops without parameters.
    edges
        ``(source, target)`` pairs of node indices.
    max_nodes
        Upper bound on the number of nodes.

    Raises
    ------
    InvalidArchitectureError
        When an op is unknown, an edge is malformed, the graph has a cycle, the output cannot
        be reached from the input, or the graph exceeds its size limit.

    Notes
    -----
    Equality compares the graph as built. Use `fingerprint` to ask whether two graphs compute
    the same function: it is invariant to node order and ignores ``none`` ops, dead ends and
    weightless pass-through nodes.
    """

    __slots__ = ("_fingerprint", "_preds", "_succs", "edges", "nodes")

    nodes: tuple[Node, ...]
    edges: tuple[tuple[int, int], ...]
    _preds: tuple[tuple[int, ...], ...]
    _succs: tuple[tuple[int, ...], ...]
    _fingerprint: str | None

    def __init__(
        self,
        nodes: Sequence[Node | str],
        edges: Iterable[Sequence[int]],
        *,
        max_nodes: int = DEFAULT_MAX_NODES,
    ) -> None:
        node_tuple = tuple(n if isinstance(n, Node) else Node(n) for n in nodes)
        if not 2 <= len(node_tuple) <= max_nodes:
            raise InvalidArchitectureError(
                "the graph has the wrong number of nodes",
                expected=f"between 2 and {max_nodes} nodes (an input, an output, ops between)",
                received=f"{len(node_tuple)} nodes",
                fix="remove nodes, or raise max_nodes if the graph is meant to be this large",
            )
        edge_tuple = _check_edges(edges, len(node_tuple))
        object.__setattr__(self, "nodes", node_tuple)
        object.__setattr__(self, "edges", edge_tuple)
        preds: list[list[int]] = [[] for _ in node_tuple]
        succs: list[list[int]] = [[] for _ in node_tuple]
        for src, dst in edge_tuple:
            preds[dst].append(src)
            succs[src].append(dst)
        object.__setattr__(self, "_preds", tuple(tuple(p) for p in preds))
        object.__setattr__(self, "_succs", tuple(tuple(s) for s in succs))
        object.__setattr__(self, "_fingerprint", None)
        self._check_structure()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ArchGraph is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (ArchGraph, (self.nodes, self.edges))

    def __copy__(self) -> ArchGraph:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ArchGraph:
        return self  # immutable: a copy would only cost a validation

    # -- structure -------------------------------------------------------------------------

    @property
    def input_index(self) -> int:
        return next(i for i, n in enumerate(self.nodes) if n.op == "input")

    @property
    def output_index(self) -> int:
        return next(i for i, n in enumerate(self.nodes) if n.op == "output")

    def predecessors(self, index: int) -> tuple[int, ...]:
        return self._preds[index]

    def successors(self, index: int) -> tuple[int, ...]:
        return self._succs[index]

    def topological_order(self) -> list[int]:
        """Node indices with every edge pointing forward; ties broken by index."""
        order = _topological_order(len(self.nodes), self.edges)
        assert order is not None  # checked acyclic at construction
        return order

    def _check_structure(self) -> None:
        for role in ("input", "output"):
            count = sum(n.op == role for n in self.nodes)
            if count != 1:
                raise InvalidArchitectureError(
                    f"the graph needs exactly one {role} node",
                    expected=f"one node with op {role!r}",
                    received=f"{count}",
                    fix=f"keep a single {role!r} node",
                )
        if self._preds[self.input_index]:
            raise InvalidArchitectureError(
                "the input node has incoming edges",
                expected="no edge into the input node",
                received=f"edges from nodes {list(self._preds[self.input_index])}",
                fix="remove the edges that point at the input node",
            )
        if self._succs[self.output_index]:
            raise InvalidArchitectureError(
                "the output node has outgoing edges",
                expected="no edge out of the output node",
                received=f"edges to nodes {list(self._succs[self.output_index])}",
                fix="remove the edges that leave the output node",
            )
        if _topological_order(len(self.nodes), self.edges) is None:
            raise InvalidArchitectureError(
                "the graph has a cycle",
                expected="a directed acyclic graph",
                received=f"edges {[list(e) for e in self.edges]}",
                fix="remove an edge of the cycle so that every edge points forward",
            )
        if self.output_index not in _reachable(self.input_index, self._succs):
            raise InvalidArchitectureError(
                "the output node is not connected to the input node",
                expected="a path of edges from the input node to the output node",
                received=f"edges {[list(e) for e in self.edges]}",
                fix="add edges so that the output depends on the input",
            )

    # -- canonical form --------------------------------------------------------------------

    def pruned(self) -> ArchGraph:
        """The graph with ``none`` ops, nodes fed only by zeros, and dead ends removed.

        Nodes are renumbered in topological order. When nothing non-zero reaches the output,
        the result is the zero graph ``input -> none -> output``.
        """
        succs = [[s for s in ss if self.nodes[s].kind != "zero"] for ss in self._succs]
        live_from_input = _reachable(self.input_index, succs)
        preds = [[p for p in ps if self.nodes[p].kind != "zero"] for ps in self._preds]
        feeds_output = _reachable(self.output_index, preds)
        keep = [
            i
            for i in self.topological_order()
            if i in live_from_input and i in feeds_output and self.nodes[i].kind != "zero"
        ]
        if self.output_index not in keep:
            return ArchGraph(["input", "none", "output"], [(0, 1), (1, 2)])
        new_index = {old: new for new, old in enumerate(keep)}
        edges = [(new_index[s], new_index[d]) for s, d in self.edges if s in keep and d in keep]
        return ArchGraph([self.nodes[i] for i in keep], edges)

    @property
    def fingerprint(self) -> str:
        """A 32-hex-digit key equal for graphs that compute the same function.

        Computed on `pruned` with weightless pass-through nodes (``skip_connect``,
        ``identity``, ``add``) contracted into edges that remember their multiplicity and
        identical pools over the same inputs merged, by a Weisfeiler-Lehman hash over op
        labels and in/out neighbourhoods (as NAS-Bench-101's ``hash_module``). It does not
        depend on the order of the nodes.
        """
        if self._fingerprint is None:
            object.__setattr__(self, "_fingerprint", _known_fingerprint(self))
        assert self._fingerprint is not None
        return self._fingerprint

    # -- values ----------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ArchGraph) and self.nodes == other.nodes and self.edges == other.edges
        )

    def __hash__(self) -> int:
        return hash((self.nodes, self.edges))

    def __repr__(self) -> str:
        ops = ", ".join(n.label for n in self.nodes)
        return f"ArchGraph(nodes=[{ops}], edges={[list(e) for e in self.edges]})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, read back by `from_dict`."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [list(e) for e in self.edges],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchGraph:
        """Rebuild a graph written by `to_dict`, validating it as the constructor does."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            received = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise InvalidArchitectureError(
                "not an architecture document",
                expected=f'a mapping with "format": "{FORMAT}"',
                received=repr(received),
                fix="pass the dict produced by ArchGraph.to_dict()",
            )
        version = data.get("version")
        # True == 1 in Python: a boolean version is a malformed document, not version 1.
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise InvalidArchitectureError(
                "unsupported architecture document version",
                expected=f"version {FORMAT_VERSION}",
                received=repr(version),
                fix="upgrade morphml_dask to read documents written by a newer release",
            )
        unknown = sorted(set(data) - set(_DOCUMENT_KEYS), key=repr)
        if unknown:
            # A misspelt "edges" would otherwise read as a graph without edges.
            raise InvalidArchitectureError(
                "unknown keys in the architecture document",
                expected=f"only the keys {list(_DOCUMENT_KEYS)}",
                received=f"keys {unknown!r}"[:200],
                fix="remove or correct the unknown keys; ArchGraph.to_dict() writes the format",
            )
        nodes = data.get("nodes")
        if not isinstance(nodes, list) or not all(
            isinstance(n, Mapping) and "op" in n and all(isinstance(k, str) for k in n)
            for n in nodes
        ):
            raise InvalidArchitectureError(
                "malformed node list",
                expected='a list of objects like {"op": "conv", "kernel": 3, "channels": 16}'
                " with string keys",
                received=repr(nodes)[:200],
                fix='give every node an "op" key and its hyper-parameters',
            )
        parsed = [Node(n["op"], **{k: v for k, v in n.items() if k != "op"}) for n in nodes]
        return cls(parsed, data.get("edges", []))


def _node(op: str, params: dict[str, ParamValue]) -> Node:
    return Node(op, **params)


def _check_edges(edges: Iterable[Sequence[int]], n: int) -> tuple[tuple[int, int], ...]:
    if isinstance(edges, str | bytes | Mapping) or not isinstance(edges, Iterable):
        raise InvalidArchitectureError(
            "malformed edge list",
            expected="a list of [source, target] pairs of node indices",
            received=f"{type(edges).__name__} {edges!r}"[:200],
            fix="write the edges as a list, e.g. [[0, 1], [1, 2]]",
        )
    seen: set[tuple[int, int]] = set()
    for edge in edges:
        if not isinstance(edge, Sequence) or len(edge) != 2 or not all(is_int(v) for v in edge):
            raise InvalidArchitectureError(
                "malformed edge",
                expected="a pair of node indices (source, target)",
                received=repr(edge),
                fix="write each edge as [source_index, target_index]",
            )
        src, dst = int(edge[0]), int(edge[1])
        if not (0 <= src < n and 0 <= dst < n):
            raise InvalidArchitectureError(
                "edge refers to a node that does not exist",
                expected=f"indices between 0 and {n - 1}",
                received=f"edge ({src}, {dst})",
                fix="use indices of the node list (they start at 0)",
            )
        if src == dst:
            raise InvalidArchitectureError(
                "the graph has a self-loop",
                expected="edges between distinct nodes",
                received=f"edge ({src}, {dst})",
                fix="remove the edge from the node to itself",
            )
        if (src, dst) in seen:
            raise InvalidArchitectureError(
                "edge listed twice",
                expected="each edge once",
                received=f"edge ({src}, {dst}) repeated",
                fix="remove the duplicate edge",
            )
        seen.add((src, dst))
    return tuple(sorted(seen))


def _topological_order(n: int, edges: Iterable[tuple[int, int]]) -> list[int] | None:
    indegree = [0] * n
    succs: list[list[int]] = [[] for _ in range(n)]
    for src, dst in edges:
        indegree[dst] += 1
        succs[src].append(dst)
    ready = sorted(i for i in range(n) if indegree[i] == 0)
    order: list[int] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for nxt in succs[node]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
                ready.sort()
    return order if len(order) == n else None


def _reachable(start: int, neighbours: Sequence[Sequence[int]]) -> set[int]:
    seen = {start}
    stack = [start]
    while stack:
        for nxt in neighbours[stack.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _canonical_multigraph(graph: ArchGraph) -> tuple[list[str], Counter[tuple[int, int]]]:
    """Labels and edge multiset of the function ``graph`` computes.

    Pass-through nodes are replaced by their inputs, and pools of one kind over the same
    inputs are merged (they compute the same value; ops with weights are never merged, since
    separate weights make separate functions). A label of "" marks a removed node.
    """
    inputs: dict[int, Counter[int]] = {}
    representative: dict[int, int] = {}
    pools: dict[tuple[str, tuple[tuple[int, int], ...]], int] = {}
    for node in graph.topological_order():
        expanded: Counter[int] = Counter()
        for pred in graph.predecessors(node):
            if graph.nodes[pred].kind == "identity":
                expanded.update(inputs[pred])
            else:
                expanded[representative[pred]] += 1
        inputs[node] = expanded
        representative[node] = node
        if graph.nodes[node].kind == "pool":
            key = (graph.nodes[node].label, tuple(sorted(expanded.items())))
            representative[node] = pools.setdefault(key, node)
    kept = [i for i, n in enumerate(graph.nodes) if n.kind != "identity" and representative[i] == i]
    edges: Counter[tuple[int, int]] = Counter()
    for node in kept:
        for pred, count in inputs[node].items():
            edges[(pred, node)] += count
    return [graph.nodes[i].label if i in kept else "" for i in range(len(graph.nodes))], edges


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=8192)
def _known_fingerprint(graph: ArchGraph) -> str:
    """`ArchGraph.fingerprint` of graphs built alike: searches propose the same graph again
    and again (evolution converges), and hashing it costs a driver about a third of a
    millisecond each time."""
    return _fingerprint(graph.pruned())


def _fingerprint(graph: ArchGraph) -> str:
    labels, edges = _canonical_multigraph(graph)
    nodes = [i for i, label in enumerate(labels) if label]
    ins: dict[int, list[tuple[int, int]]] = {i: [] for i in nodes}
    outs: dict[int, list[tuple[int, int]]] = {i: [] for i in nodes}
    for (src, dst), count in edges.items():
        ins[dst].append((src, count))
        outs[src].append((dst, count))
    hashes = {
        i: _digest(f"{labels[i]}|{sum(c for _, c in ins[i])}|{sum(c for _, c in outs[i])}")
        for i in nodes
    }
    for _ in range(len(nodes)):
        hashes = {
            i: _digest(
                "|".join(sorted(f"{hashes[s]}*{c}" for s, c in ins[i]))
                + ">"
                + "|".join(sorted(f"{hashes[d]}*{c}" for d, c in outs[i]))
                + ">"
                + hashes[i]
            )
            for i in nodes
        }
    return _digest(f"{FORMAT}/{FORMAT_VERSION}:" + "".join(sorted(hashes.values())))[:32]
