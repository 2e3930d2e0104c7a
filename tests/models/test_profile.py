"""Parameter and FLOP counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from morphml_dask.exceptions import ModelBuildError
from morphml_dask.models import build_model, count_flops, count_parameters
from morphml_dask.space import ArchGraph, Node


def conv_model(channels: int) -> nn.Module:
    arch = ArchGraph(
        ["input", Node("conv", kernel=3, channels=channels), "output"], [(0, 1), (1, 2)]
    )
    return build_model(arch, 10, in_channels=1)


def test_parameters_exclude_buffers() -> None:
    bn = nn.BatchNorm2d(4)
    assert count_parameters(bn) == 8  # weight and bias; running mean, var and count are buffers


def test_shared_parameters_count_once() -> None:
    layer = nn.Linear(3, 2)
    assert count_parameters(nn.Sequential(layer, nn.ReLU(), layer)) == 3 * 2 + 2


def test_flops_by_hand() -> None:
    # A multiply-add counts as two FLOPs; only convolutions and the linear layer count.
    pixels = 8 * 8
    stem = 2 * 1 * 16 * 9 * pixels
    op = 2 * 16 * 8 * 9 * pixels
    classifier = 2 * 8 * 10
    assert count_flops(conv_model(8), (1, 1, 8, 8)) == stem + op + classifier
    assert count_flops(conv_model(8), (3, 1, 8, 8)) == 3 * (stem + op + classifier)


def test_wider_conv_costs_more() -> None:
    narrow, wide = (
        count_flops(conv_model(8), (1, 1, 8, 8)),
        count_flops(conv_model(32), (1, 1, 8, 8)),
    )
    assert 0 < narrow < wide


@pytest.mark.parametrize("training", [True, False])
def test_flops_leave_the_model_as_it_was(training: bool) -> None:
    model = conv_model(8)
    model.train(training)
    head = model.get_submodule("head")
    head.train(not training)  # a mixed state, restored module by module
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_flops(model, (2, 1, 8, 8))
    assert model.training is training
    assert head.training is not training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched


@pytest.mark.parametrize("shape", [(), [1, 1, 8, 8], (1, 0, 8, 8), (1, -1), (1, 1.5)])
def test_rejects_bad_input_shape(shape: object) -> None:
    with pytest.raises(ModelBuildError, match=r"(?s)invalid input shape.*expected: a non-empty"):
        count_flops(conv_model(8), shape)  # type: ignore[arg-type]
