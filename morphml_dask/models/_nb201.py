"""The NAS-Bench-201 network (Dong & Yang, ICLR 2020) for a `CellSpace` cell.

The macro skeleton and the ops follow the benchmark's training code, so that parameter counts
equal the benchmark's ``model_size`` column: a stem, three stages of ``N = 5`` cells at widths
``C = 16, 32, 64`` joined by residual reduction blocks, then BN, ReLU, global average pooling
and a linear classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from morphml_dask.space import NB201_EDGES

__all__ = ["NB201Network", "Zero", "nb201_op"]

STEM_CHANNELS = 16
CELLS_PER_STAGE = 5


class Zero(nn.Module):
    """The ``none`` op: zeros shaped like its input, without parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def relu_conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """ReLU, then a bias-free ``kernel x kernel`` convolution with 'same' padding, then BN."""
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out, affine=True),
    )


def nb201_op(name: str, channels: int) -> nn.Module:
    """One NAS-Bench-201 edge op at ``channels`` channels, stride 1, shape preserving.

    Parameters
    ----------
    name
        One of ``none``, ``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3`` and
        ``avg_pool_3x3``.
    channels
        Input and output width.
    """
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return relu_conv_bn(channels, channels, 1)
    if name == "nor_conv_3x3":
        return relu_conv_bn(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    # The caller only passes CellSpace ops; anything else is a programming error.
    raise KeyError(name)


class NB201Cell(nn.Module):
    """A cell: node ``j`` sums ``op_{i->j}(node i)`` over ``i < j``; node 3 is the output.

    Every edge op is instantiated, dead ends included, as in the benchmark, whose parameter
    counts include them.
    """

    def __init__(self, ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(nb201_op(op, channels) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            total: torch.Tensor | None = None
            for edge, (source, dst) in zip(self.edges, NB201_EDGES, strict=True):
                if dst == target:
                    out: torch.Tensor = edge(nodes[source])
                    total = out if total is None else total + out
            assert total is not None  # every target has an incoming edge
            nodes.append(total)
        return nodes[3]


class ResidualReduction(nn.Module):
    """The ResNet basic block that halves resolution and changes width between stages."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = relu_conv_bn(c_in, c_out, 3, stride=2)
        self.conv_b = relu_conv_bn(c_out, c_out, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch: torch.Tensor = self.conv_b(self.conv_a(x))
        residual: torch.Tensor = self.shortcut(x)
        return residual + branch


class NB201Network(nn.Module):
    """The NAS-Bench-201 network with one cell repeated in every stage.

    Parameters
    ----------
    ops
        The six edge ops of the cell, in `morphml_dask.space.NB201_EDGES` order.
    num_classes
        Outputs of the classifier.
    in_channels
        Image channels. The benchmark uses 3; its parameter counts hold for 3 only.

    Notes
    -----
    Dong, X. and Yang, Y. "NAS-Bench-201: Extending the Scope of Reproducible Neural
    Architecture Search", ICLR 2020. The benchmark trains on 32x32 (CIFAR) or 16x16
    (ImageNet16-120) images; any size of at least 4x4 runs.
    """

    def __init__(self, ops: Sequence[str], num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        c = STEM_CHANNELS
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        )
        layers: list[nn.Module] = []
        for stage, width in enumerate((c, 2 * c, 4 * c)):
            if stage:
                layers.append(ResidualReduction(width // 2, width))
            layers.extend(NB201Cell(ops, width) for _ in range(CELLS_PER_STAGE))
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(4 * c), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.pool(self.head(self.cells(self.stem(x))))
        logits: torch.Tensor = self.classifier(features.flatten(1))
        return logits
