"""Network morphisms on DagSpace, pure side: children stay in the space, records round-trip,
widths mirror the torch model, errors are specific."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from morphml_dask.exceptions import SearchSpaceError
from morphml_dask.space import ArchGraph, DagSpace, Morphism, Node, morph, node_widths
from morphml_dask.space._morph import APPROXIMATE_KINDS, EXACT_KINDS

SPACE = DagSpace(max_nodes=5, widths=(4, 8, 16), kernels=(1, 3, 5))


def conv(kernel: int, channels: int) -> Node:
    return Node("conv", kernel=kernel, channels=channels)


def chain(*ops: Node | str) -> ArchGraph:
    return ArchGraph(["input", *ops, "output"], [(i, i + 1) for i in range(len(ops) + 1)])


def _children(exact_only: bool, count: int = 150) -> list[tuple[ArchGraph, ArchGraph, Morphism]]:
    rng = np.random.default_rng(3)
    found: list[tuple[ArchGraph, ArchGraph, Morphism]] = []
    while len(found) < count:
        parent = SPACE.sample(rng)
        try:
            child, morphism = morph(SPACE, parent, rng, exact_only=exact_only)
        except SearchSpaceError:
            continue  # e.g. five pools with all edges: nothing exact applies
        found.append((parent, child, morphism))
    return found


@pytest.mark.parametrize("exact_only", [True, False])
def test_children_stay_in_the_space_and_differ(exact_only: bool) -> None:
    kinds = set()
    for parent, child, morphism in _children(exact_only):
        assert SPACE.contains(child)
        assert child != parent
        assert morphism.exact == (morphism.kind in EXACT_KINDS)
        assert len(morphism.node_map) == len(child.nodes)
        kinds.add(morphism.kind)
    assert kinds == set(EXACT_KINDS if exact_only else EXACT_KINDS + APPROXIMATE_KINDS)


def test_morphism_json_round_trip() -> None:
    for _, _, morphism in _children(False, 60):
        document = json.loads(json.dumps(morphism.to_dict()))
        assert Morphism.from_dict(document) == morphism


def test_same_seed_same_child() -> None:
    parent = SPACE.sample(np.random.default_rng(0))
    first = morph(SPACE, parent, np.random.default_rng(5), exact_only=False)
    second = morph(SPACE, parent, np.random.default_rng(5), exact_only=False)
    assert first == second


def test_labels() -> None:
    parent = chain(conv(3, 8), Node("max_pool", kernel=3))
    rng = np.random.default_rng(0)
    assert morph(SPACE, parent, rng, kinds=["widen"])[1].label == "widen n1 8->16"
    assert morph(SPACE, parent, rng, kinds=["kernel"])[1].label == "kernel n1 3->5"
    assert morph(SPACE, parent, rng, kinds=["remove"])[1].label.startswith("remove n")
    inserted = morph(SPACE, parent, rng, kinds=["insert"])[1]
    assert inserted.label.startswith(("insert conv", "insert sep_conv"))
    assert inserted.label.endswith("on 0->1")


def test_widen_propagates_through_weightless_nodes_to_the_head() -> None:
    parent = chain(conv(3, 4), Node("max_pool", kernel=3), "identity")
    child, morphism = morph(SPACE, parent, np.random.default_rng(0), kinds=["widen"])
    width = child.nodes[1].param("channels")
    assert node_widths(child) == (16, width, width, width, width)
    assert len(morphism.value_maps[1] or ()) == width
    assert morphism.value_maps[1] == morphism.value_maps[2] == morphism.sum_maps[4]
    assert (morphism.value_maps[1] or ())[:4] == (0, 1, 2, 3)


def test_widen_not_offered_where_an_unprojected_sum_cannot_match() -> None:
    # Node 3 adds node 1 (8 wide, projected to 16) and node 2 (16): widening node 1 to 16
    # would add it unprojected to a value it cannot match.
    parent = ArchGraph(
        ["input", conv(3, 8), conv(3, 16), "identity", "output"],
        [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)],
    )
    space = DagSpace(max_nodes=3, widths=(8, 16), kernels=(3,), ops=("conv", "identity"))
    with pytest.raises(SearchSpaceError, match="no morphism of this architecture stays"):
        morph(space, parent, np.random.default_rng(0), kinds=["widen"])


def test_insert_only_after_non_negative_values() -> None:
    # conv -> insert is not exact (its BN output can be negative); the input edge qualifies
    # only where the stem's width is an allowed width.
    parent = chain(conv(3, 8))
    space = DagSpace(max_nodes=3, widths=(8,), kernels=(3,))
    with pytest.raises(SearchSpaceError, match="no morphism of this architecture stays"):
        morph(space, parent, np.random.default_rng(0), kinds=["insert"])
    _, morphism = morph(SPACE, parent, np.random.default_rng(0), kinds=["insert"])
    assert morphism.edge == (0, 1)
    assert morphism.node_map == (0, None, 1, 2)


def test_node_widths_by_hand() -> None:
    arch = ArchGraph(
        ["input", conv(3, 4), Node("avg_pool", kernel=3), conv(1, 8), "output"],
        [(0, 1), (1, 2), (0, 2), (2, 3), (1, 4), (3, 4)],
    )
    assert node_widths(arch, 16) == (16, 4, 16, 8, 8)
    assert node_widths(arch, 2) == (2, 4, 4, 8, 8)


def test_node_widths_agree_with_dag_network() -> None:
    torch = pytest.importorskip("torch")
    from morphml_dask.models._dag import DagNetwork

    rng = np.random.default_rng(11)
    for _ in range(30):
        arch = SPACE.sample(rng).pruned()
        model = DagNetwork(arch, 10, in_channels=3, reductions=1).eval()
        seen = _op_widths(model, torch.randn(1, 3, 16, 16))
        widths = node_widths(arch, 32)
        assert seen == {i: widths[i] for i in seen}
        assert widths[arch.output_index] == model.classifier.in_features


def _op_widths(model: Any, images: Any) -> dict[int, int]:
    """Each op module's output channels in a forward pass."""
    seen: dict[int, int] = {}
    for key, module in model.ops.items():
        module.register_forward_hook(
            lambda _m, _i, out, index=int(key): seen.__setitem__(index, out.shape[1])
        )
    model(images)
    return seen


def test_no_morphism_applies() -> None:
    space = DagSpace(max_nodes=1, ops=("identity",), widths=(4,))
    with pytest.raises(SearchSpaceError, match="no morphism of this architecture stays"):
        morph(space, chain("identity"), np.random.default_rng(0))


def test_unknown_kind() -> None:
    with pytest.raises(SearchSpaceError, match="unknown morphism kinds"):
        morph(SPACE, chain(conv(3, 4)), np.random.default_rng(0), kinds=["deepen"])


def test_arch_outside_the_space() -> None:
    with pytest.raises(SearchSpaceError, match="cannot morph an architecture outside the space"):
        morph(SPACE, chain(conv(7, 4)), np.random.default_rng(0))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other"}, "not a morphism document"),
        ({"version": 2}, "unsupported morphism version"),
        ({"kind": "deepen"}, "unknown morphism kind"),
        ({"node": "3"}, "malformed morphism document"),
    ],
)
def test_malformed_documents(change: dict[str, object], message: str) -> None:
    _, _, morphism = _children(True, 1)[0]
    with pytest.raises(SearchSpaceError, match=message):
        Morphism.from_dict({**morphism.to_dict(), **change})
