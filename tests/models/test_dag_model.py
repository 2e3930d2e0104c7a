"""Generic DAG networks: every sampled graph builds and runs; widths and counts by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morphml_dask.exceptions import ModelBuildError
from morphml_dask.models import build_model, count_parameters
from morphml_dask.space import ArchGraph, CellSpace, DagSpace, Node

# Hand counts below, for in_channels=1 and 10 classes.
STEM = 1 * 16 * 9 + 2 * 16  # Conv3x3(1 -> 16) and its BN


def conv(kernel: int, channels: int) -> Node:
    return Node("conv", kernel=kernel, channels=channels)


def chain(*ops: Node | str) -> ArchGraph:
    """input -> ops... -> output."""
    return ArchGraph(["input", *ops, "output"], [(i, i + 1) for i in range(len(ops) + 1)])


SPACES = {
    "default": DagSpace(),
    "wide-kernels": DagSpace(max_nodes=10, widths=(8, 24), kernels=(1, 7)),
    "dense": DagSpace(min_nodes=5, max_nodes=8, widths=(4, 12), skip_prob=1.0),
}
SAMPLES = {"default": 50, "wide-kernels": 50, "dense": 10}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_sampled_graphs_build_and_run(name: str) -> None:
    space, rng = SPACES[name], np.random.default_rng(7)
    torch.manual_seed(7)
    grey, rgb = torch.randn(2, 1, 8, 8), torch.randn(2, 3, 32, 32)
    for _ in range(SAMPLES[name]):
        arch = space.sample(rng)
        for images, channels in ((grey, 1), (rgb, None)):
            logits = build_model(arch, num_classes=5, in_channels=channels)(images)
            assert logits.shape == (2, 5), arch
            assert torch.isfinite(logits).all(), arch


def test_gradients_reach_every_parameter() -> None:
    # Widths 8, 24 and the stem's 16 meet twice, so projections are exercised too.
    sep_conv = Node("sep_conv", kernel=5, channels=24)
    arch = ArchGraph(
        ["input", conv(3, 8), sep_conv, Node("max_pool", kernel=3), "output"],
        [(0, 1), (1, 2), (0, 2), (2, 3), (1, 4), (3, 4)],
    )
    model = build_model(arch, 3, in_channels=1)
    model(torch.randn(4, 1, 8, 8)).logsumexp(1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_tiny_graph_parameters_by_hand() -> None:
    model = build_model(chain(conv(3, 8)), 10, in_channels=1)
    op = 16 * 8 * 9 + 2 * 8  # ReLU-Conv3x3(16 -> 8)-BN
    head = 2 * 8 + 8 * 10 + 10  # BN(8), Linear(8 -> 10)
    assert count_parameters(model) == STEM + op + head


def test_separable_conv_parameters_by_hand() -> None:
    model = build_model(chain(Node("sep_conv", kernel=3, channels=8)), 10, in_channels=1)
    op = 16 * 9 + 16 * 8 + 2 * 8  # depthwise 3x3, pointwise 16 -> 8, BN(8)
    assert count_parameters(model) == STEM + op + 2 * 8 + 8 * 10 + 10


def test_narrower_inputs_are_projected_to_the_widest() -> None:
    # The output sums the conv (8 channels) and the stem (16): the conv's 8 are projected.
    arch = ArchGraph(["input", conv(3, 8), "output"], [(0, 1), (1, 2), (0, 2)])
    model = build_model(arch, 10, in_channels=1)
    op = 16 * 8 * 9 + 2 * 8
    projection = 8 * 16 + 2 * 16  # Conv1x1(8 -> 16), BN(16)
    head = 2 * 16 + 16 * 10 + 10
    assert count_parameters(model) == STEM + op + projection + head
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_dead_ends_get_no_parameters() -> None:
    # Node 2 (a conv) feeds nothing; node 4 reads only a `none` op.
    arch = ArchGraph(
        ["input", conv(3, 8), conv(5, 32), "output", "none", conv(3, 64)],
        [(0, 1), (1, 3), (0, 2), (0, 4), (4, 5), (5, 3)],
    )
    pruned = chain(conv(3, 8))
    assert arch.pruned() == pruned
    built = count_parameters(build_model(arch, 10, in_channels=1))
    assert built == count_parameters(build_model(pruned, 10, in_channels=1))


def test_zero_graph_builds_and_runs() -> None:
    model = build_model(chain("none"), 10, in_channels=1)
    assert count_parameters(model) == STEM + 2 * 16 + 16 * 10 + 10
    assert torch.isfinite(model(torch.randn(2, 1, 8, 8))).all()


def test_pass_through_and_nb201_ops_in_a_generic_graph() -> None:
    ops = ["nor_conv_3x3", "avg_pool_3x3", "skip_connect", "identity", "add", "nor_conv_1x1"]
    arch = chain(*ops, Node("max_pool", kernel=5), Node("avg_pool", kernel=3))
    assert not CellSpace().contains(arch)
    model = build_model(arch, 10, in_channels=1)
    assert count_parameters(model) == STEM + (16 * 16 * 9 + 32) + (16 * 16 + 32) + 32 + 170
    assert model(torch.randn(2, 1, 5, 5)).shape == (2, 10)


@pytest.mark.parametrize("num_classes", [1, 0, -3, True, 2.5, "10"])
def test_rejects_bad_num_classes(num_classes: object) -> None:
    with pytest.raises(
        ModelBuildError, match=r"(?s)invalid num_classes.*expected: an integer >= 2"
    ):
        build_model(chain(conv(3, 8)), num_classes)  # type: ignore[arg-type]


@pytest.mark.parametrize("in_channels", [0, -1, False, 3.0])
def test_rejects_bad_in_channels(in_channels: object) -> None:
    with pytest.raises(ModelBuildError, match=r"(?s)invalid in_channels.*fix: pass the number"):
        build_model(chain(conv(3, 8)), 10, in_channels=in_channels)  # type: ignore[arg-type]


def test_rejects_what_is_not_a_graph() -> None:
    arch_str = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    with pytest.raises(ModelBuildError, match=r"(?s)needs an architecture graph.*received: str"):
        build_model(arch_str, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize(("side", "stages"), [(8, 0), (9, 1), (16, 1), (32, 2), (64, 3), (224, 5)])
def test_reduction_stages_bring_large_images_down_to_the_graphs_resolution(
    side: int, stages: int
) -> None:
    from morphml_dask.models import reductions_for

    assert reductions_for(side, side) == stages
    arch = DagSpace(max_nodes=4).sample(np.random.default_rng(3))
    model = build_model(arch, num_classes=5, in_channels=3, reductions=stages)
    features: list[torch.Tensor] = []
    stem = model.stem
    assert isinstance(stem, torch.nn.Module)
    handle = stem.register_forward_hook(lambda _m, _i, out: features.append(out))
    logits = model(torch.randn(2, 3, side, side))
    handle.remove()
    assert logits.shape == (2, 5)
    assert max(features[0].shape[-2:]) <= 8, "the graph runs above its resolution"
    assert features[0].shape[1] == 16 * 2**stages


def test_reductions_must_be_a_count() -> None:
    arch = DagSpace(max_nodes=3).sample(np.random.default_rng(0))
    with pytest.raises(ModelBuildError, match=r"(?s)invalid reductions.*an integer >= 0.*-1"):
        build_model(arch, reductions=-1)
