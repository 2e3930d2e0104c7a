from __future__ import annotations

import json

import pytest

from morphml_dask import ArchGraph, InvalidArchitectureError, MorphMLError, Node


def chain(*ops: Node | str) -> ArchGraph:
    nodes = ["input", *ops, "output"]
    return ArchGraph(nodes, [(i, i + 1) for i in range(len(nodes) - 1)])


def test_node_is_an_immutable_value() -> None:
    a = Node("conv", kernel=3, channels=16)
    assert a == Node("conv", channels=16, kernel=3)
    assert hash(a) == hash(Node("conv", channels=16, kernel=3))
    assert a.label == "conv(channels=16,kernel=3)"
    assert a.param("kernel") == 3
    with pytest.raises(AttributeError, match="immutable"):
        a.op = "identity"


def test_graph_is_immutable_and_compares_by_structure() -> None:
    g = chain(Node("conv", kernel=3, channels=8))
    assert g == chain(Node("conv", kernel=3, channels=8))
    assert g != chain(Node("conv", kernel=5, channels=8))
    assert len({g, chain(Node("conv", kernel=3, channels=8))}) == 1
    with pytest.raises(AttributeError, match="immutable"):
        g.nodes = ()


def test_unknown_op_says_what_is_known() -> None:
    with pytest.raises(
        InvalidArchitectureError,
        match=r"(?s)unknown op .conv3x3.*expected: one of \[.*.conv.*fix: use one of the known op names",
    ):
        chain("conv3x3")


def test_wrong_op_parameters() -> None:
    with pytest.raises(
        InvalidArchitectureError,
        match=r"op 'conv' has the wrong hyper-parameters(.|\n)*expected: exactly \['channels', 'kernel'\](.|\n)*received: \['kernel'\]",
    ):
        Node("conv", kernel=3)
    with pytest.raises(
        InvalidArchitectureError,
        match=r"invalid 'kernel'(.|\n)*expected: \(1, 3, 5, 7\)(.|\n)*received: 4",
    ):
        Node("conv", kernel=4, channels=8)
    with pytest.raises(
        InvalidArchitectureError,
        match=r"invalid 'channels'(.|\n)*an integer in 1..4096(.|\n)*received: 0",
    ):
        Node("conv", kernel=3, channels=0)


def test_cycle_is_rejected() -> None:
    with pytest.raises(
        InvalidArchitectureError,
        match=r"the graph has a cycle(.|\n)*expected: a directed acyclic graph(.|\n)*received: edges \[\[0, 1\], \[1, 2\], \[2, 1\], \[2, 3\]\](.|\n)*fix: remove an edge",
    ):
        ArchGraph(["input", "identity", "identity", "output"], [(0, 1), (1, 2), (2, 1), (2, 3)])


def test_disconnected_graph_is_rejected() -> None:
    with pytest.raises(
        InvalidArchitectureError,
        match=r"output node is not connected to the input(.|\n)*expected: a path of edges from the input node to the output node(.|\n)*fix: add edges",
    ):
        ArchGraph(["input", "identity", "identity", "output"], [(0, 1), (2, 3)])


@pytest.mark.parametrize(
    ("nodes", "edges", "message"),
    [
        (["input", "identity"], [(0, 1)], r"exactly one output node(.|\n)*received: 0"),
        (
            ["input", "input", "output"],
            [(0, 2), (1, 2)],
            r"exactly one input node(.|\n)*received: 2",
        ),
        (["input", "output"], [(0, 1), (1, 0)], r"input node has incoming edges"),
        (["input", "output", "identity"], [(0, 1), (1, 2)], r"output node has outgoing edges"),
        (["input", "output"], [(0, 1), (0, 1)], r"edge listed twice(.|\n)*\(0, 1\) repeated"),
        (["input", "output"], [(0, 0), (0, 1)], r"self-loop(.|\n)*edge \(0, 0\)"),
        (["input", "output"], [(0, 5)], r"node that does not exist(.|\n)*between 0 and 1"),
        (["input", "output"], [(0, 1, 2)], r"malformed edge(.|\n)*a pair of node indices"),
        (["input"], [], r"wrong number of nodes(.|\n)*received: 1 nodes"),
    ],
)
def test_structural_errors(nodes: list[str], edges: list[tuple[int, ...]], message: str) -> None:
    with pytest.raises(InvalidArchitectureError, match=message):
        ArchGraph(nodes, edges)


def test_size_limit() -> None:
    ops = ["identity"] * 70
    with pytest.raises(
        InvalidArchitectureError,
        match=r"between 2 and 64 nodes(.|\n)*received: 72 nodes(.|\n)*raise max_nodes",
    ):
        chain(*ops)
    assert (
        len(
            ArchGraph(
                ["input", *ops, "output"], [(i, i + 1) for i in range(71)], max_nodes=80
            ).nodes
        )
        == 72
    )


def test_errors_are_morphml_errors_and_value_errors() -> None:
    with pytest.raises(MorphMLError):
        chain("nope")
    with pytest.raises(ValueError, match="unknown op"):
        chain("nope")


def test_json_round_trip() -> None:
    g = ArchGraph(
        [
            "input",
            Node("conv", kernel=3, channels=16),
            Node("max_pool", kernel=3),
            "identity",
            "output",
        ],
        [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (1, 4)],
    )
    data = json.loads(json.dumps(g.to_dict()))
    assert data["format"] == "morphml.arch"
    assert data["version"] == 1
    back = ArchGraph.from_dict(data)
    assert back == g
    assert back.fingerprint == g.fingerprint


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nodes": [], "edges": []}, r"not an architecture document(.|\n)*received: None"),
        ([1, 2], r"not an architecture document(.|\n)*received: 'list'"),
        (
            {"format": "morphml.arch", "version": 99},
            r"unsupported(.|\n)*expected: version 1(.|\n)*received: 99",
        ),
        (
            {"format": "morphml.arch", "version": 1, "nodes": [{"kernel": 3}]},
            r"malformed node list",
        ),
    ],
)
def test_from_dict_errors(data: object, message: str) -> None:
    with pytest.raises(InvalidArchitectureError, match=message):
        ArchGraph.from_dict(data)  # type: ignore[arg-type]


def test_pruned_drops_none_dead_ends_and_zero_fed_nodes() -> None:
    conv = Node("conv", kernel=3, channels=8)
    g = ArchGraph(
        # 1: live conv; 2: dead end; 3: fed only by a none op (zero); 4: the none op
        ["input", conv, conv, "identity", "none", "output"],
        [(0, 1), (0, 2), (0, 4), (4, 3), (3, 5), (1, 5)],
    )
    p = g.pruned()
    assert [n.op for n in p.nodes] == ["input", "conv", "output"]
    assert p.edges == ((0, 1), (1, 2))
    assert p.fingerprint == g.fingerprint == chain(conv).fingerprint


def test_all_zero_graph_prunes_to_the_zero_graph() -> None:
    g = ArchGraph(["input", "none", "identity", "output"], [(0, 1), (1, 2), (2, 3)])
    assert [n.op for n in g.pruned().nodes] == ["input", "none", "output"]
    assert g.fingerprint == chain("none").fingerprint
    assert g.fingerprint != chain("identity").fingerprint


def test_identity_nodes_do_not_change_the_fingerprint_but_multiplicity_does() -> None:
    conv = Node("conv", kernel=3, channels=8)
    direct = chain(conv)
    through_identity = chain("identity", conv, "skip_connect")
    assert direct.fingerprint == through_identity.fingerprint
    # conv(x) + x differs from conv(x), and from conv(x) + x + x.
    residual = ArchGraph(["input", conv, "output"], [(0, 1), (1, 2), (0, 2)])
    double = ArchGraph(
        ["input", conv, "identity", "output"], [(0, 1), (1, 3), (0, 2), (2, 3), (0, 3)]
    )
    assert len({direct.fingerprint, residual.fingerprint, double.fingerprint}) == 3


def test_graphs_pickle_for_dask_transport() -> None:
    import pickle

    g = chain(Node("conv", kernel=3, channels=8), "identity")
    again = pickle.loads(pickle.dumps(g))
    assert again == g
    assert again.fingerprint == g.fingerprint
    assert pickle.loads(pickle.dumps(g.nodes[1])) == g.nodes[1]
