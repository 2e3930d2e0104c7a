"""Network morphisms for `DagSpace`: children that start from their parent's function.

A morphism changes an architecture so that the child, given weights derived from its
parent's (`morphml_dask.models.inherit_weights`), computes the same function before any
training (Net2Net, Chen et al., ICLR 2016): wider convolutions, identity-initialised new
nodes, zero-initialised skip connections and zero-padded kernels. LEMONADE (Elsken et al.,
ICLR 2019) adds approximate shrinking moves: removing a node, narrowing a convolution and
cropping a kernel, whose children only start near their parent.

This module is pure: it decides the change and the channel maps, and the torch side applies
them to tensors. Node indices are topological positions (0 the input, ``k + 1`` the output),
the indices `morphml_dask.models.DagNetwork` gives its modules when built from
``arch.pruned()`` of a `DagSpace` architecture.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from morphml_dask.exceptions import SearchSpaceError
from morphml_dask.space._dag import DagSpace, Layout, _build, _layout
from morphml_dask.space._graph import ArchGraph, Node

__all__ = ["APPROXIMATE_KINDS", "EXACT_KINDS", "Morphism", "morph", "node_widths"]

EXACT_KINDS = ("widen", "insert", "skip", "kernel")
APPROXIMATE_KINDS = ("narrow", "remove", "shrink_kernel")
_KINDS = EXACT_KINDS + APPROXIMATE_KINDS
_WEIGHTED = ("conv", "sep_conv")
_WEIGHTLESS = ("identity", "max_pool", "avg_pool")
_FORMAT = "morphml.morphism"
_VERSION = 1

ChannelMap = tuple[int, ...]
"""Child channel -> parent channel of one value; ``None`` in a list of maps means unchanged."""
Maps = tuple[ChannelMap | None, ...]
_Result = tuple[Layout, "Morphism"]
_Move = Callable[[np.random.Generator], _Result]


@dataclass(frozen=True)
class Morphism:
    """One change from a parent architecture to a child, with what its weights need.

    Attributes
    ----------
    kind
        ``"widen"``, ``"insert"``, ``"skip"``, ``"kernel"`` (function-preserving) or
        ``"narrow"``, ``"remove"``, ``"shrink_kernel"`` (approximate).
    node_map
        Per child node index, the parent node it continues, or ``None`` for a new node.
    exact
        Whether the child computes the parent's function after inheriting its weights.
    node
        The parent node acted on (widen, kernel, narrow, shrink_kernel, remove), or the
        child's new node (insert, and skip through a new convolution).
    edge
        The parent edge acted on: where a node was inserted, or the new skip's ends.
    op, kernel, channels
        The new node's op, kernel and width (insert, skip); the node's new kernel or width.
    previous
        The node's old width (widen, narrow) or kernel (kernel, shrink_kernel).
    value_maps, sum_maps
        For widen: per child node, the channel map of its output and of its summed input
        (``None`` where unchanged). Empty for the other kinds.
    """

    kind: str
    node_map: tuple[int | None, ...]
    exact: bool
    node: int | None = None
    edge: tuple[int, int] | None = None
    op: str | None = None
    kernel: int | None = None
    channels: int | None = None
    previous: int | None = None
    value_maps: Maps = ()
    sum_maps: Maps = ()

    @property
    def label(self) -> str:
        """A short text for reports, e.g. ``widen n3 16->32`` or ``skip 1->4``."""
        if self.kind in ("widen", "narrow"):
            return f"{self.kind} n{self.node} {self.previous}->{self.channels}"
        if self.kind in ("kernel", "shrink_kernel"):
            return f"{self.kind} n{self.node} {self.previous}->{self.kernel}"
        if self.kind == "remove":
            return f"remove n{self.node}"
        assert self.edge is not None  # insert and skip act on an edge
        ends = f"{self.edge[0]}->{self.edge[1]}"
        new = f"{self.op}{self.kernel}x{self.kernel}"
        if self.kind == "insert":
            return f"insert {new} on {ends}"
        return f"skip {ends}" if self.node is None else f"skip {ends} via {new}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, read back by `from_dict`."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "kind": self.kind,
            "node_map": list(self.node_map),
            "exact": self.exact,
            "node": self.node,
            "edge": None if self.edge is None else list(self.edge),
            "op": self.op,
            "kernel": self.kernel,
            "channels": self.channels,
            "previous": self.previous,
            "value_maps": [None if m is None else list(m) for m in self.value_maps],
            "sum_maps": [None if m is None else list(m) for m in self.sum_maps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Morphism:
        """Rebuild a morphism written by `to_dict`."""
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise _malformed("not a morphism document", f'"format": "{_FORMAT}"', data)
        if data.get("version") != _VERSION or isinstance(data.get("version"), bool):
            raise _malformed("unsupported morphism version", f"version {_VERSION}", data)
        if data.get("kind") not in _KINDS:
            raise _malformed("unknown morphism kind", f"a kind from {list(_KINDS)}", data)
        try:
            edge = data["edge"]
            return cls(
                kind=str(data["kind"]),
                node_map=tuple(None if i is None else int(i) for i in data["node_map"]),
                exact=bool(data["exact"]),
                node=_optional_int(data["node"]),
                edge=None if edge is None else (int(edge[0]), int(edge[1])),
                op=None if data["op"] is None else str(data["op"]),
                kernel=_optional_int(data["kernel"]),
                channels=_optional_int(data["channels"]),
                previous=_optional_int(data["previous"]),
                value_maps=_maps(data["value_maps"]),
                sum_maps=_maps(data["sum_maps"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise _malformed("malformed morphism document", "the keys to_dict writes", data) from (
                error
            )


def node_widths(arch: ArchGraph, input_width: int = 16) -> tuple[int, ...]:
    """Each node's output width, as `morphml_dask.models.DagNetwork` builds it.

    Parameters
    ----------
    arch
        A `DagSpace` architecture.
    input_width
        The input node's width: the stem's, ``STEM_WIDTH`` times 2 per reduction stage.

    Returns
    -------
    tuple of int
        Per node index. A node's summed input is as wide as its widest input (narrower ones
        are projected); convolutions output their ``channels``, every other op keeps the
        sum's width, and the output node's entry is its sum's width.
    """
    widths = [0] * len(arch.nodes)
    for index in arch.topological_order():
        preds = arch.predecessors(index)
        if not preds:
            widths[index] = input_width
            continue
        node = arch.nodes[index]
        widest = max(widths[p] for p in preds)
        widths[index] = int(node.param("channels")) if node.op in _WEIGHTED else widest
    return tuple(widths)


def morph(
    space: DagSpace,
    arch: ArchGraph,
    rng: np.random.Generator,
    *,
    input_width: int = 16,
    exact_only: bool = True,
    kinds: Sequence[str] | None = None,
) -> tuple[ArchGraph, Morphism]:
    """A random morphism of ``arch`` whose child stays in ``space``.

    Parameters
    ----------
    space
        The space parent and child belong to.
    arch
        The parent.
    rng
        The random generator; the same seed gives the same child.
    input_width
        The width of the graph's input (``STEM_WIDTH`` times 2 per reduction stage).
    exact_only
        Draw only function-preserving kinds; ``False`` also draws the approximate ones.
    kinds
        Draw only from these kinds (overrides ``exact_only``).

    Returns
    -------
    tuple of ArchGraph and Morphism
        The child, in canonical order (node index = topological position), and the change.

    Raises
    ------
    SearchSpaceError
        When ``arch`` is not in ``space``, a kind is unknown, or no morphism applies.

    Notes
    -----
    A kind is drawn uniformly among those with an applicable move, then a move uniformly.
    """
    wanted = _check_kinds(kinds, exact_only)
    _check_member(space, arch)
    context = _Context(space, _build(_layout(arch)), input_width)
    moves = {kind: _MOVES[kind](context) for kind in wanted}
    available = [kind for kind in wanted if moves[kind]]
    if not available:
        raise SearchSpaceError(
            "no morphism of this architecture stays in the space",
            expected=f"an architecture that admits one of {list(wanted)}",
            received=repr(arch)[:300],
            fix="widen the space (more widths, kernels, conv/sep_conv ops or max_nodes), or "
            "pass exact_only=False to allow the shrinking morphisms",
        )
    kind = available[int(rng.integers(len(available)))]
    options = moves[kind]
    layout, morphism = options[int(rng.integers(len(options)))](rng)
    child = _build(layout)
    # Every move is built to stay in the space; a failure here is a bug in this module.
    assert space.contains(child), (morphism, child)
    return child, morphism


# -- the state of one morph call -------------------------------------------------------------


class _Context:
    """The parent in canonical order with its widths, and what the space allows."""

    def __init__(self, space: DagSpace, parent: ArchGraph, input_width: int) -> None:
        self.space = space
        self.parent = parent
        self.layout = _layout(parent)
        self.input_width = input_width
        self.widths = node_widths(parent, input_width)
        self.output = len(parent.nodes) - 1
        self.sums = tuple(
            max((self.widths[p] for p in parent.predecessors(i)), default=input_width)
            for i in range(len(parent.nodes))
        )
        self.new_ops = [op for op in _WEIGHTED if op in space.ops]
        self.room = len(self.layout[0]) < space.max_nodes

    def op_nodes(self) -> list[int]:
        return [i for i in range(1, self.output) if self.parent.nodes[i].op in _WEIGHTED]

    def param(self, index: int, name: str) -> int:
        return int(self.parent.nodes[index].param(name))

    def identity_map(self) -> tuple[int | None, ...]:
        return tuple(range(len(self.parent.nodes)))

    def non_negative(self) -> list[bool]:
        """Which node values are >= 0: the input (the stem ends in ReLU), and weightless
        ops that read only non-negative values unprojected."""
        flags = [True] + [False] * self.output
        for i in range(1, self.output):
            preds = self.parent.predecessors(i)
            flags[i] = self.parent.nodes[i].op in _WEIGHTLESS and all(
                flags[p] and self.widths[p] == self.sums[i] for p in preds
            )
        return flags


def _with_node(layout: Layout, at: int, node: Node) -> tuple[Layout, tuple[int | None, ...]]:
    """``layout`` with ``node`` at position ``at`` (later nodes move up one), no edges of its
    own yet, and the child -> parent node map."""
    nodes, edges = layout

    def moved(i: int) -> int:
        return i + (i >= at)

    child = [*nodes[: at - 1], node, *nodes[at - 1 :]]
    node_map = tuple(None if i == at else i - (i > at) for i in range(len(nodes) + 3))
    return (child, {(moved(s), moved(d)) for s, d in edges}), node_map


def _replace(layout: Layout, index: int, node: Node) -> Layout:
    nodes, edges = layout
    return [*nodes[: index - 1], node, *nodes[index:]], set(edges)


def _resized(node: Node, **change: int) -> Node:
    return Node(node.op, **{**dict(node.params), **change})


# -- function-preserving kinds ---------------------------------------------------------------


def _propagate(context: _Context, node: int, channel_map: ChannelMap) -> tuple[Maps, Maps] | None:
    """Channel maps of every value and sum after widening ``node`` to ``channel_map``, or
    ``None`` where a sum would add a widened value unprojected to a value it cannot match
    (another map, or one the parent projected)."""
    parent, widths, sums = context.parent, context.widths, context.sums
    values: list[ChannelMap | None] = [None] * len(parent.nodes)
    totals: list[ChannelMap | None] = [None] * len(parent.nodes)

    def width(p: int) -> int:
        value = values[p]
        return widths[p] if value is None else len(value)

    for j in range(1, len(parent.nodes)):
        preds = parent.predecessors(j)
        widest = max(width(p) for p in preds)
        unprojected = [p for p in preds if width(p) == widest]
        if len({values[p] for p in unprojected}) > 1 or any(
            widths[p] != sums[j] for p in unprojected
        ):
            return None
        totals[j] = values[unprojected[0]]
        if j == node:
            values[j] = channel_map
        elif j == context.output or parent.nodes[j].op in _WEIGHTLESS:
            values[j] = totals[j]
    return tuple(values), tuple(totals)


def _widen_moves(context: _Context) -> list[_Move]:
    moves: list[_Move] = []
    for i in context.op_nodes():
        old = context.param(i, "channels")
        for new in (w for w in context.space.widths if w > old):
            probe = (*range(old), *([0] * (new - old)))
            if _propagate(context, i, probe) is not None:
                moves.append(functools.partial(_widen, context, i, new))
    return moves


def _widen(context: _Context, index: int, new: int, rng: np.random.Generator) -> _Result:
    old = context.param(index, "channels")
    # The first channels keep their place, so a widened node is its parent's plus copies.
    channel_map = (*range(old), *(int(c) for c in rng.integers(old, size=new - old)))
    maps = _propagate(context, index, channel_map)
    assert maps is not None  # the move was offered because the probe map propagates
    layout = _replace(context.layout, index, _resized(context.parent.nodes[index], channels=new))
    return layout, Morphism(
        "widen",
        context.identity_map(),
        True,
        node=index,
        channels=new,
        previous=old,
        value_maps=maps[0],
        sum_maps=maps[1],
    )


def _insert_moves(context: _Context) -> list[_Move]:
    if not context.room:
        return []
    flags = context.non_negative()
    edges = sorted(context.layout[1])
    return [
        functools.partial(_insert, context, edge, op, kernel)
        for edge in edges
        if flags[edge[0]] and context.widths[edge[0]] in context.space.widths
        for op in context.new_ops
        for kernel in context.space.kernels
    ]


def _insert(
    context: _Context, edge: tuple[int, int], op: str, kernel: int, rng: np.random.Generator
) -> _Result:
    u, v = edge
    width = context.widths[u]
    (nodes, edges), node_map = _with_node(
        context.layout, u + 1, Node(op, kernel=kernel, channels=width)
    )
    # u is before the new node, so its index did not move; v's did.
    edges = (edges - {(u, v + 1)}) | {(u, u + 1), (u + 1, v + 1)}
    morphism = Morphism(
        "insert", node_map, True, node=u + 1, edge=edge, op=op, kernel=kernel, channels=width
    )
    return (nodes, edges), morphism


def _skip_moves(context: _Context) -> list[_Move]:
    moves: list[_Move] = []
    edges = context.layout[1]
    for v in range(1, context.output + 1):
        for w in range(v):
            if (w, v) in edges:
                continue
            if context.widths[w] < context.sums[v]:
                moves.append(functools.partial(_skip, context, (w, v), None))
                continue
            below = [c for c in context.space.widths if c <= context.sums[v]]
            if not (context.room and below):
                continue
            moves.extend(
                functools.partial(_skip, context, (w, v), Node(op, kernel=k, channels=below[-1]))
                for op in context.new_ops
                for k in context.space.kernels
            )
    return moves


def _skip(
    context: _Context, edge: tuple[int, int], node: Node | None, rng: np.random.Generator
) -> _Result:
    """A new input of ``v`` whose contribution starts at zero: ``w`` projected by a zeroed
    BN, or through a new convolution whose BN is zeroed."""
    w, v = edge
    if node is None:
        nodes, edges = context.layout
        return (list(nodes), edges | {edge}), Morphism(
            "skip", context.identity_map(), True, edge=edge
        )
    (nodes, edges), node_map = _with_node(context.layout, v, node)
    morphism = Morphism(
        "skip",
        node_map,
        True,
        node=v,
        edge=edge,
        op=node.op,
        kernel=int(node.param("kernel")),
        channels=int(node.param("channels")),
    )
    return (nodes, edges | {(w, v), (v, v + 1)}), morphism


def _kernel_moves(context: _Context) -> list[_Move]:
    return [
        functools.partial(_resize_kernel, context, i, k, "kernel")
        for i in context.op_nodes()
        for k in context.space.kernels
        if k > context.param(i, "kernel")
    ]


def _resize_kernel(
    context: _Context, index: int, kernel: int, kind: str, rng: np.random.Generator
) -> _Result:
    """A larger kernel is exact (zero-padded weights, 'same' padding keeps the centre); a
    smaller one (``shrink_kernel``, approximate) keeps the centre of the old weights."""
    layout = _replace(context.layout, index, _resized(context.parent.nodes[index], kernel=kernel))
    previous = context.param(index, "kernel")
    exact = kind == "kernel"
    return layout, Morphism(
        kind, context.identity_map(), exact, node=index, kernel=kernel, previous=previous
    )


# -- approximate kinds -----------------------------------------------------------------------


def _narrow_moves(context: _Context) -> list[_Move]:
    return [
        functools.partial(_narrow, context, i, c)
        for i in context.op_nodes()
        for c in context.space.widths
        if c < context.param(i, "channels")
    ]


def _narrow(context: _Context, index: int, channels: int, rng: np.random.Generator) -> _Result:
    """Approximate: fewer output channels, keeping the first ones (their readers keep the
    matching slices of their weights)."""
    layout = _replace(
        context.layout, index, _resized(context.parent.nodes[index], channels=channels)
    )
    previous = context.param(index, "channels")
    return layout, Morphism(
        "narrow", context.identity_map(), False, node=index, channels=channels, previous=previous
    )


def _shrink_kernel_moves(context: _Context) -> list[_Move]:
    return [
        functools.partial(_resize_kernel, context, i, k, "shrink_kernel")
        for i in context.op_nodes()
        for k in context.space.kernels
        if k < context.param(i, "kernel")
    ]


def _remove_moves(context: _Context) -> list[_Move]:
    if len(context.layout[0]) <= context.space.min_nodes:
        return []
    return [functools.partial(_remove, context, i) for i in range(1, context.output)]


def _remove(context: _Context, gone: int, rng: np.random.Generator) -> _Result:
    """Approximate: drop a node; its readers read its inputs instead."""
    nodes, edges = context.layout
    preds = [s for s, d in edges if d == gone]
    succs = [d for s, d in edges if s == gone]
    kept = {(s, d) for s, d in edges if gone not in (s, d)}
    kept.update((p, s) for p in preds for s in succs)
    renumbered = {(s - (s > gone), d - (d > gone)) for s, d in kept}
    node_map = tuple(i + (i >= gone) for i in range(len(nodes) + 1))
    child = [n for i, n in enumerate(nodes, start=1) if i != gone]
    return (child, renumbered), Morphism("remove", node_map, False, node=gone)


_MOVES: dict[str, Callable[[_Context], list[_Move]]] = {
    "widen": _widen_moves,
    "insert": _insert_moves,
    "skip": _skip_moves,
    "kernel": _kernel_moves,
    "narrow": _narrow_moves,
    "remove": _remove_moves,
    "shrink_kernel": _shrink_kernel_moves,
}


# -- validation ------------------------------------------------------------------------------


def _check_kinds(kinds: Sequence[str] | None, exact_only: bool) -> tuple[str, ...]:
    if kinds is None:
        return EXACT_KINDS if exact_only else _KINDS
    unknown = [k for k in kinds if k not in _KINDS]
    if unknown or isinstance(kinds, str) or not kinds:
        raise SearchSpaceError(
            "unknown morphism kinds",
            expected=f"a non-empty list of kinds from {list(_KINDS)}",
            received=repr(kinds)[:200],
            fix='pass kinds such as ["widen", "insert"], or None for all kinds',
        )
    return tuple(dict.fromkeys(kinds))


def _check_member(space: DagSpace, arch: ArchGraph) -> None:
    if not (isinstance(space, DagSpace) and space.contains(arch)):
        raise SearchSpaceError(
            "cannot morph an architecture outside the space",
            expected="a DagSpace and an architecture of it"
            + (f" ({space.to_dict()})" if isinstance(space, DagSpace) else ""),
            received=repr(arch)[:300],
            fix="morph architectures sampled from or mutated in this DagSpace",
        )


def _malformed(problem: str, expected: str, data: object) -> SearchSpaceError:
    return SearchSpaceError(
        problem,
        expected=f"a dict written by Morphism.to_dict() with {expected}",
        received=repr(data)[:200],
        fix="pass the dict produced by Morphism.to_dict()",
    )


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _maps(data: Sequence[Sequence[int] | None]) -> Maps:
    return tuple(None if m is None else tuple(int(c) for c in m) for m in data)
