"""Property tests: the fingerprint is invariant to node order and separates different graphs.

The oracle for "different" is networkx's isomorphism test on the same canonical form (pruned,
pass-through nodes contracted, edge multiplicities kept).
"""

from __future__ import annotations

from collections import Counter

import networkx as nx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from morphml_dask.space import ArchGraph, Node
from morphml_dask.space._graph import _canonical_multigraph

OP_POOL = [
    Node("conv", kernel=3, channels=16),
    Node("conv", kernel=5, channels=16),
    Node("sep_conv", kernel=3, channels=32),
    Node("max_pool", kernel=3),
    Node("avg_pool", kernel=3),
    Node("identity"),
    Node("skip_connect"),
    Node("none"),
]


def random_graph(rng: np.random.Generator) -> ArchGraph:
    """A random valid DAG in topological order: input 0, output last."""
    inner = int(rng.integers(1, 9))
    nodes: list[Node | str] = [
        "input",
        *(OP_POOL[int(i)] for i in rng.integers(len(OP_POOL), size=inner)),
        "output",
    ]
    n = len(nodes)
    edges = {(i - 1, i) for i in range(1, n)}  # a spine keeps the output reachable
    for dst in range(1, n):
        for src in range(dst - 1):
            if rng.random() < 0.3:
                edges.add((src, dst))
    # Some dead ends: drop a few spine edges that are not the only way forward.
    for i in range(1, n - 1):
        if rng.random() < 0.15 and any(s == i and d != i + 1 for s, d in edges):
            edges.discard((i, i + 1))
    try:
        return ArchGraph(nodes, sorted(edges))
    except ValueError:
        return ArchGraph(nodes, sorted(edges | {(i - 1, i) for i in range(1, n)}))


def permuted(graph: ArchGraph, rng: np.random.Generator) -> ArchGraph:
    order = rng.permutation(len(graph.nodes))
    new_of_old = {int(old): new for new, old in enumerate(order)}
    return ArchGraph(
        [graph.nodes[int(old)] for old in order],
        [(new_of_old[s], new_of_old[d]) for s, d in graph.edges],
    )


def canonical_nx(graph: ArchGraph) -> nx.DiGraph:
    labels, edges = _canonical_multigraph(graph.pruned())
    g = nx.DiGraph()
    g.add_nodes_from((i, {"label": label}) for i, label in enumerate(labels) if label)
    g.add_edges_from((s, d, {"count": c}) for (s, d), c in edges.items())
    return g


def isomorphic(a: ArchGraph, b: ArchGraph) -> bool:
    return bool(
        nx.is_isomorphic(
            canonical_nx(a),
            canonical_nx(b),
            node_match=lambda x, y: x["label"] == y["label"],
            edge_match=lambda x, y: x["count"] == y["count"],
        )
    )


def test_permutations_keep_the_fingerprint_over_1000_random_graphs() -> None:
    rng = np.random.default_rng(2020)
    for _ in range(1000):
        graph = random_graph(rng)
        for _ in range(3):
            other = permuted(graph, rng)
            assert other.fingerprint == graph.fingerprint
            assert other.pruned().fingerprint == graph.fingerprint


def test_fingerprints_agree_with_an_isomorphism_oracle_over_2000_pairs() -> None:
    rng = np.random.default_rng(7)
    graphs = [random_graph(rng) for _ in range(400)]
    different = same = 0
    for _ in range(2000):
        a, b = (graphs[int(i)] for i in rng.integers(len(graphs), size=2))
        if rng.random() < 0.5:  # near misses: one op changed
            i = int(rng.integers(1, len(a.nodes) - 1)) if len(a.nodes) > 2 else 0
            ops = list(a.nodes)
            ops[i] = OP_POOL[int(rng.integers(len(OP_POOL)))]
            b = ArchGraph(ops, a.edges)
        iso = isomorphic(a, b)
        assert (a.fingerprint == b.fingerprint) == iso, (a, b)
        same += iso
        different += not iso
    assert different > 1000 and same > 50  # both branches were exercised


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), perm_seed=st.integers(0, 2**32 - 1))
def test_fingerprint_is_permutation_invariant(seed: int, perm_seed: int) -> None:
    graph = random_graph(np.random.default_rng(seed))
    assert permuted(graph, np.random.default_rng(perm_seed)).fingerprint == graph.fingerprint


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_json_round_trip_keeps_everything(seed: int) -> None:
    graph = random_graph(np.random.default_rng(seed))
    back = ArchGraph.from_dict(graph.to_dict())
    assert back == graph and back.fingerprint == graph.fingerprint


def test_edge_multiplicity_is_seen_by_the_oracle_and_the_fingerprint() -> None:
    conv = Node("conv", kernel=3, channels=16)
    once = ArchGraph(["input", conv, "identity", "output"], [(0, 1), (1, 2), (2, 3)])
    twice = ArchGraph(["input", conv, "identity", "output"], [(0, 1), (1, 2), (2, 3), (1, 3)])
    assert Counter(canonical_nx(twice).edges) != Counter()
    assert not isomorphic(once, twice)
    assert once.fingerprint != twice.fingerprint
