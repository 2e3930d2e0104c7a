"""`DagNetwork`: a CNN for any `ArchGraph`, with channel widths inferred along the graph.

Every op keeps the spatial size (stride 1, 'same' padding), so only widths need inferring: a
node sums its inputs after projecting the narrower ones to the widest, then applies its op.
Larger images first pass strided reduction stages after the stem, each halving the height and
width and doubling the channels, so that the graph runs at a small resolution whatever the
input's (`reductions_for`).
"""

from __future__ import annotations

import torch
from torch import nn

from morphml_dask.exceptions import ModelBuildError
from morphml_dask.models._nb201 import Zero, nb201_op, relu_conv_bn
from morphml_dask.space import ArchGraph, Node

__all__ = ["GRAPH_RESOLUTION", "STEM_WIDTH", "DagNetwork", "reductions_for"]

STEM_WIDTH = 16
GRAPH_RESOLUTION = 8
"""The height and width the graph's ops run at, at most, after the reduction stages."""
_NB201_COMPUTE_OPS = ("nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def _int_param(node: Node, name: str) -> int:
    return int(node.param(name))


def sep_conv(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """ReLU, depthwise ``kernel x kernel`` conv, pointwise 1x1 conv to ``c_out``, BN."""
    return nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(c_in, c_in, kernel, padding=kernel // 2, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
    )


def build_op(node: Node, width: int) -> tuple[nn.Module, int]:
    """The module for ``node`` applied to ``width`` channels, and its output width."""
    if node.kind in ("identity", "structural"):
        return nn.Identity(), width
    if node.kind == "zero":
        return Zero(), width
    if node.op in _NB201_COMPUTE_OPS:
        return nb201_op(node.op, width), width
    if node.op in ("conv", "sep_conv"):
        kernel, channels = _int_param(node, "kernel"), _int_param(node, "channels")
        if node.op == "conv":
            return relu_conv_bn(width, channels, kernel), channels
        return sep_conv(width, channels, kernel), channels
    if node.op in ("max_pool", "avg_pool"):
        kernel = _int_param(node, "kernel")
        if node.op == "max_pool":
            return nn.MaxPool2d(kernel, stride=1, padding=kernel // 2), width
        return nn.AvgPool2d(kernel, stride=1, padding=kernel // 2, count_include_pad=False), width
    # Reached only if the op vocabulary grows without a builder here.
    raise ModelBuildError(
        f"no torch module for op {node.op!r}",
        expected="an op that morphml_dask.models knows how to build",
        received=node.label,
        fix="add a builder for this op to morphml_dask/models/_dag.py",
    )


class DagNetwork(nn.Module):
    """Stem, the graph's ops in topological order, then a global-pooling classifier.

    Parameters
    ----------
    arch
        The architecture. Build from ``arch.pruned()`` so that dead ends get no parameters;
        every node of the graph given gets its modules.
    num_classes
        Outputs of the classifier.
    in_channels
        Image channels.
    reductions
        Strided stages between the stem and the graph, each a Conv3x3 of stride 2 that halves
        height and width and doubles the channels, then BN and ReLU (`reductions_for` picks
        them from the image size; 0 for the 8x8 digits).

    Notes
    -----
    The stem is Conv3x3(``in_channels`` -> 16)-BN-ReLU and, after the reduction stages,
    feeds the input node. Where a
    node's inputs differ in width, the narrower ones pass through a 1x1 conv and BN to the
    widest width before the sum. Pooling is stride 1 with 'same' padding, and average pooling
    leaves the padding out of its means, as NAS-Bench-201's does. The output node's sum goes
    through BN, ReLU, global average pooling and a linear layer.
    """

    def __init__(
        self, arch: ArchGraph, num_classes: int, in_channels: int = 3, reductions: int = 0
    ) -> None:
        super().__init__()
        stages = [conv_bn_relu_stem(in_channels, STEM_WIDTH)]
        width = STEM_WIDTH
        for _ in range(reductions):
            stages.append(reduction_stage(width, 2 * width))
            width *= 2
        self.stem = nn.Sequential(*stages) if reductions else stages[0]
        self.ops = nn.ModuleDict()
        self.projections = nn.ModuleDict()
        self.order = tuple(arch.topological_order())
        self.inputs = {i: arch.predecessors(i) for i in self.order}
        self.input_index = arch.input_index
        self.output_index = arch.output_index
        widths: dict[int, int] = {self.input_index: width}
        for index in self.order:
            if index == self.input_index:
                continue
            width = self._add_projections(index, [widths[p] for p in self.inputs[index]])
            if index == self.output_index:
                widths[index] = width
                continue
            self.ops[str(index)], widths[index] = build_op(arch.nodes[index], width)
        width = widths[self.output_index]
        self.head = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(width, num_classes)

    def _add_projections(self, index: int, in_widths: list[int]) -> int:
        """Create the 1x1 projections of node ``index``'s narrower inputs; the sum's width."""
        widest = max(in_widths)
        for pred, width in zip(self.inputs[index], in_widths, strict=True):
            if width < widest:
                self.projections[_key(pred, index)] = nn.Sequential(
                    nn.Conv2d(width, widest, 1, bias=False), nn.BatchNorm2d(widest)
                )
        return widest

    def _summed_inputs(self, index: int, values: dict[int, torch.Tensor]) -> torch.Tensor:
        total: torch.Tensor | None = None
        for pred in self.inputs[index]:
            key = _key(pred, index)
            value = self.projections[key](values[pred]) if key in self.projections else values[pred]
            total = value if total is None else total + value
        assert total is not None  # ArchGraph guarantees every non-input node has an input
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[int, torch.Tensor] = {self.input_index: self.stem(x)}
        for index in self.order:
            if index == self.input_index:
                continue
            summed = self._summed_inputs(index, values)
            if index == self.output_index:
                features: torch.Tensor = self.head(summed)
                logits: torch.Tensor = self.classifier(features.flatten(1))
                return logits
            values[index] = self.ops[str(index)](summed)
        raise AssertionError("unreachable: the output node is in the topological order")


def conv_bn_relu_stem(c_in: int, c_out: int) -> nn.Sequential:
    """Conv3x3-BN-ReLU: the stem that turns images into the input node's features."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


def reduction_stage(c_in: int, c_out: int) -> nn.Sequential:
    """Conv3x3 of stride 2, BN, ReLU: half the height and width, ``c_out`` channels."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


def reductions_for(height: int, width: int) -> int:
    """The reduction stages that bring an image of ``height`` x ``width`` down to at most
    `GRAPH_RESOLUTION` on its shorter side: 0 for 8x8, 2 for 32x32, 3 for 64x64."""
    side, stages = min(height, width), 0
    while side > GRAPH_RESOLUTION:
        side = (side + 1) // 2
        stages += 1
    return stages


def _key(source: int, target: int) -> str:
    return f"{source}_{target}"
