from __future__ import annotations

import numpy as np
import pytest

from morphml_dask import DagSpace, SearchSpaceError
from morphml_dask.space import ArchGraph, CellSpace, Node, space_from_dict


@pytest.mark.parametrize(
    "space",
    [
        DagSpace(),
        DagSpace(max_nodes=10, ops=("conv", "identity"), kernels=(1, 7), widths=(8,)),
        DagSpace(max_nodes=2, min_nodes=2, skip_prob=1.0),
    ],
)
def test_moves_stay_in_the_space(space: DagSpace) -> None:
    rng = np.random.default_rng(11)
    lengths = set()
    arch = space.sample(rng)
    for _ in range(300):
        other = space.sample(rng)
        child = space.mutate(arch, rng)
        mixed = space.crossover(arch, other, rng)
        for g in (other, child, mixed):
            assert space.contains(g), g
            assert space.encode(g).shape == space.encode(arch).shape
        assert child != arch
        arch = child
        lengths.add(len(other.nodes) - 2)
    assert lengths == set(range(space.min_nodes, space.max_nodes + 1))


def test_sampling_is_reproducible_from_the_seed() -> None:
    space = DagSpace()
    a = [space.sample(np.random.default_rng(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    assert space.sample(np.random.default_rng(6)) != a[0]


def test_contains_rejects_foreign_architectures() -> None:
    space = DagSpace(widths=(16,), kernels=(3,))
    assert not space.contains(CellSpace().from_index(0))
    wide = ArchGraph(["input", _conv(64), "output"], [(0, 1), (1, 2)])
    assert not space.contains(wide)
    assert space.contains(ArchGraph(["input", _conv(16), "output"], [(0, 1), (1, 2)]))


def _conv(channels: int) -> Node:
    return Node("conv", kernel=3, channels=channels)


def test_mutating_a_foreign_architecture_says_why() -> None:
    with pytest.raises(
        SearchSpaceError,
        match=r"(?s)not in this DAG space.*expected: 1 to 6 op nodes.*fix: sample architectures from this space",
    ):
        DagSpace().mutate(CellSpace().from_index(0), np.random.default_rng(0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"max_nodes": 0},
            r"(?s)invalid DagSpace setting max_nodes\n.*an integer from 1 to 32.*received: 0 \(int\)",
        ),
        (
            {"min_nodes": 5, "max_nodes": 4},
            r"(?s)max_nodes/min_nodes.*1 <= min_nodes <= max_nodes <= 32.*min_nodes=5, max_nodes=4",
        ),
        (
            {"ops": ("conv", "lstm")},
            r"(?s)invalid DagSpace setting ops\[1\].*one of \['conv', 'sep_conv'.*"
            r"received: 'lstm' \(str\)",
        ),
        (
            {"kernels": (2,)},
            r"(?s)setting kernels\[0\].*a kernel size, one of \[1, 3, 5, 7\].*received: 2 \(int\)",
        ),
        ({"widths": ()}, r"(?s)setting widths.*channel counts"),
        (
            {"skip_prob": 2.0},
            r"(?s)skip_prob.*a probability from 0 to 1.*received: 2.0 \(float\)",
        ),
    ],
)
def test_bad_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        DagSpace(**kwargs)  # type: ignore[arg-type]


def test_spaces_round_trip_through_dicts() -> None:
    space = DagSpace(max_nodes=4, widths=(8, 16))
    again = space_from_dict(space.to_dict())
    assert isinstance(again, DagSpace) and again.to_dict() == space.to_dict()
    assert isinstance(space_from_dict(CellSpace().to_dict()), CellSpace)
    with pytest.raises(SearchSpaceError, match=r"(?s)unknown search space.*received: 'resnet'"):
        space_from_dict({"name": "resnet"})
