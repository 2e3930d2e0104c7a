"""Weight inheritance: a child model starts from its parent's trained weights.

`copy_matching` copies what fits by name and shape into any module. `inherit_weights` applies
a `morphml_dask.space.Morphism` to a `DagNetwork`: for the exact kinds the child then
computes its parent's function (Net2Net, Chen et al., ICLR 2016), for the approximate ones
it starts near it (LEMONADE, Elsken et al., ICLR 2019).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from morphml_dask.models._dag import DagNetwork
from morphml_dask.space import Morphism
from morphml_dask.space._morph import ChannelMap

__all__ = ["Inherited", "copy_matching", "inherit_weights"]

State = Mapping[str, torch.Tensor]
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")
_OPS_KEY = re.compile(r"ops\.(\d+)\.(.*)")
_PROJECTION_KEY = re.compile(r"projections\.(\d+)_(\d+)\.(.*)")


@dataclass(frozen=True)
class Inherited:
    """What a model took from a parent's state.

    Attributes
    ----------
    copied
        Names of the model's state entries (parameters and buffers) filled from the parent.
    fraction
        Parameter elements derived from the parent over all the model's parameter elements
        (buffers not counted), from 0 to 1.
    """

    copied: tuple[str, ...]
    fraction: float


def copy_matching(model: nn.Module, state: State) -> Inherited:
    """Copy every tensor of ``state`` whose name and shape match one of ``model``'s.

    Parameters
    ----------
    model
        Any module; what ``state`` does not fill keeps its initialisation.
    state
        A state dict, e.g. the parent's ``model.state_dict()``.

    Returns
    -------
    Inherited
        The names copied and the fraction of parameter elements they make up.
    """
    return _fill(model, state, {}, {}, crop=False)


def inherit_weights(model: DagNetwork, parent_state: State, morphism: Morphism | None) -> Inherited:
    """Fill a child `DagNetwork` from its parent's state through the morphism that made it.

    Parameters
    ----------
    model
        The child, built from the child architecture that `morphml_dask.space.morph`
        returned (``DagNetwork(child.pruned(), ...)`` or ``build_model(child, ...)``).
    parent_state
        The parent network's ``state_dict()``.
    morphism
        The change from parent to child; ``None`` falls back to `copy_matching`.

    Returns
    -------
    Inherited
        The names filled from the parent; ``fraction`` counts the parameter elements derived
        from it (identity and zero initialisations of new parts are not counted).

    Notes
    -----
    Parent modules are renamed through ``morphism.node_map`` (``ops.{i}``,
    ``projections.{src}_{dst}``). Exact kinds then widen channels (duplicated outputs,
    inputs divided by their copies' count), initialise inserted nodes as the identity (Dirac
    kernels, identity BN), zero the BN of new skip paths and zero-pad kernels: in eval mode
    the child's logits equal the parent's. Approximate kinds copy the overlapping block of
    each tensor whose shape changed (the first channels, the centre of a kernel).
    """
    if morphism is None:
        return copy_matching(model, parent_state)
    renamed = _renamed(parent_state, morphism)
    derived: dict[str, torch.Tensor] = {}
    fresh: dict[str, torch.Tensor] = {}
    if morphism.kind == "widen":
        _Widening(model, parent_state, morphism, derived, fresh).run()
    elif morphism.kind == "insert":
        assert morphism.node is not None  # set by morph for inserts
        fresh.update(_identity_op(model, morphism.node))
    elif morphism.kind == "skip":
        fresh.update(_zeroed_skip(model, morphism))
    elif morphism.kind == "kernel":
        key = f"ops.{morphism.node}.1.weight"
        pad = ((morphism.kernel or 0) - (morphism.previous or 0)) // 2
        derived[key] = functional.pad(renamed[key], (pad, pad, pad, pad))
    return _fill(model, renamed, derived, fresh, crop=not morphism.exact)


def _fill(
    model: nn.Module,
    renamed: State,
    derived: State,
    fresh: State,
    *,
    crop: bool,
) -> Inherited:
    own = model.state_dict()
    copied: dict[str, int] = {}
    with torch.no_grad():
        for name, tensor in own.items():
            if name in fresh:
                tensor.copy_(fresh[name])
                continue
            source = derived.get(name, renamed.get(name))
            if source is None:
                continue
            if source.shape == tensor.shape:
                tensor.copy_(source)
                copied[name] = tensor.numel()
            elif crop and source.dim() == tensor.dim() and source.dim() > 0:
                copied[name] = _copy_overlap(tensor, source)
    return Inherited(tuple(copied), _fraction(model, copied))


def _fraction(model: nn.Module, copied: Mapping[str, int]) -> float:
    total = sum(p.numel() for p in model.parameters())
    inherited = sum(copied.get(name, 0) for name, _ in model.named_parameters())
    return inherited / total if total else 0.0


def _copy_overlap(target: torch.Tensor, source: torch.Tensor) -> int:
    """Copy the block both tensors share: leading channels; for a 4-D convolution weight
    the centre of the kernel (same padding keeps centres aligned). The elements copied."""
    into, out_of = [], []
    for dim, (t, s) in enumerate(zip(target.shape, source.shape, strict=True)):
        size = min(t, s)
        spatial = target.dim() == 4 and dim >= 2
        into.append(_span(t, size, spatial))
        out_of.append(_span(s, size, spatial))
    target[tuple(into)] = source[tuple(out_of)]
    return math.prod(min(t, s) for t, s in zip(target.shape, source.shape, strict=True))


def _span(length: int, size: int, centred: bool) -> slice:
    start = (length - size) // 2 if centred else 0
    return slice(start, start + size)


# -- renaming --------------------------------------------------------------------------------


def _child_of(morphism: Morphism) -> dict[int, int]:
    """Parent node index -> child node index, for the nodes the child kept."""
    return {p: c for c, p in enumerate(morphism.node_map) if p is not None}


def _renamed(state: State, morphism: Morphism) -> dict[str, torch.Tensor]:
    """The parent's tensors under the child's names (dropped where a node is gone)."""
    child_of = _child_of(morphism)
    moved_edge: dict[tuple[int, int], tuple[int, int]] = {}
    if morphism.kind == "insert" and morphism.edge is not None and morphism.node is not None:
        u, v = morphism.edge
        moved_edge[(u, v)] = (morphism.node, child_of[v])
    result: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        op = _OPS_KEY.fullmatch(name)
        projection = _PROJECTION_KEY.fullmatch(name)
        if op is not None:
            index = int(op.group(1))
            if index in child_of:
                result[f"ops.{child_of[index]}.{op.group(2)}"] = tensor
        elif projection is not None:
            src, dst = int(projection.group(1)), int(projection.group(2))
            ends = moved_edge.get((src, dst))
            if ends is None and src in child_of and dst in child_of:
                ends = (child_of[src], child_of[dst])
            if ends is not None:
                result[f"projections.{ends[0]}_{ends[1]}.{projection.group(3)}"] = tensor
        else:
            result[name] = tensor
    return result


# -- identity and zero initialisations -------------------------------------------------------


def _identity_bn(prefix: str, bn: nn.Module) -> dict[str, torch.Tensor]:
    """BN that passes its input through in eval mode: (x - 0) / sqrt(1 + eps) * sqrt(1 + eps)."""
    assert isinstance(bn, nn.BatchNorm2d)  # every DagNetwork op and projection ends in BN
    width = bn.num_features
    return {
        f"{prefix}.running_mean": torch.zeros(width),
        f"{prefix}.running_var": torch.ones(width),
        f"{prefix}.weight": torch.full((width,), math.sqrt(1.0 + bn.eps)),
        f"{prefix}.bias": torch.zeros(width),
    }


def _zero_bn(prefix: str, bn: nn.Module) -> dict[str, torch.Tensor]:
    assert isinstance(bn, nn.BatchNorm2d)
    width = bn.num_features
    return {f"{prefix}.weight": torch.zeros(width), f"{prefix}.bias": torch.zeros(width)}


def _identity_op(model: DagNetwork, index: int) -> dict[str, torch.Tensor]:
    """An inserted conv or sep_conv that maps its (non-negative) input to itself."""
    module = model.ops[str(index)]
    assert isinstance(module, nn.Sequential)
    prefix = f"ops.{index}"
    first = module[1]
    assert isinstance(first, nn.Conv2d)
    kernel = torch.zeros_like(first.weight)
    nn.init.dirac_(kernel, groups=first.groups)
    result = {f"{prefix}.1.weight": kernel}
    if len(module) == 4:  # sep_conv: depthwise, pointwise, BN
        pointwise = module[2]
        assert isinstance(pointwise, nn.Conv2d)
        eye = torch.eye(pointwise.out_channels, pointwise.in_channels)
        result[f"{prefix}.2.weight"] = eye[:, :, None, None]
    result.update(_identity_bn(f"{prefix}.{len(module) - 1}", module[-1]))
    return result


def _zeroed_skip(model: DagNetwork, morphism: Morphism) -> dict[str, torch.Tensor]:
    """Zero BN scale and shift on the new path, so that it adds nothing until trained."""
    assert morphism.edge is not None  # set by morph for skips
    child_of = _child_of(morphism)
    w, v = morphism.edge
    result: dict[str, torch.Tensor] = {}
    source = child_of[w] if morphism.node is None else morphism.node
    if morphism.node is not None:
        module = model.ops[str(source)]
        assert isinstance(module, nn.Sequential)
        result.update(_zero_bn(f"ops.{source}.{len(module) - 1}", module[-1]))
    key = f"{source}_{child_of[v]}"
    if key in model.projections:
        projection = model.projections[key]
        assert isinstance(projection, nn.Sequential)
        result.update(_zero_bn(f"projections.{key}.1", projection[1]))
    return result


# -- widening --------------------------------------------------------------------------------


class _Widening:
    """Net2WiderNet through the whole graph: every tensor that reads or writes a value whose
    channel map changed is rebuilt from the parent's with that map."""

    def __init__(
        self,
        model: DagNetwork,
        parent: State,
        morphism: Morphism,
        derived: dict[str, torch.Tensor],
        fresh: dict[str, torch.Tensor],
    ) -> None:
        self.model, self.parent, self.morphism = model, parent, morphism
        self.derived, self.fresh = derived, fresh

    def run(self) -> None:
        model, morphism = self.model, self.morphism
        for index in model.order:
            if index == model.input_index:
                continue
            for pred in model.inputs[index]:
                key = f"{pred}_{index}"
                if key in model.projections:
                    self._projection(key, morphism.value_maps[pred], morphism.sum_maps[index])
            if index == model.output_index:
                self._head(morphism.sum_maps[index])
            elif str(index) in model.ops:
                out = morphism.value_maps[index] if index == morphism.node else None
                self._op(index, morphism.sum_maps[index], out)

    def _projection(self, key: str, source: ChannelMap | None, total: ChannelMap | None) -> None:
        if source is None and total is None:
            return  # unchanged: the renamed copy fits
        module = self.model.projections[key]
        assert isinstance(module, nn.Sequential)
        conv, bn = module[0], module[1]
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        rows = _indices(total, conv.out_channels)
        cols = _indices(source, conv.in_channels)
        prefix = f"projections.{key}"
        if f"{prefix}.0.weight" in self.parent:
            weight = self.parent[f"{prefix}.0.weight"][rows][:, cols] / _counts(cols)
            self.derived[f"{prefix}.0.weight"] = weight
            self.derived.update(self._bn(f"{prefix}.1", rows))
            return
        # The parent added this input unprojected: the child projects by channel selection.
        selection = (rows[:, None] == cols[None, :]).float() / _counts(cols)[0, :, 0, 0]
        self.fresh[f"{prefix}.0.weight"] = selection[:, :, None, None]
        self.fresh.update(_identity_bn(f"{prefix}.1", bn))

    def _op(self, index: int, inputs: ChannelMap | None, outputs: ChannelMap | None) -> None:
        module = self.model.ops[str(index)]
        if not isinstance(module, nn.Sequential) or (inputs is None and outputs is None):
            return  # weightless, or unchanged
        prefix = f"ops.{index}"
        if len(module) == 3:  # conv: ReLU, conv, BN
            conv = module[1]
            assert isinstance(conv, nn.Conv2d)
            rows = _indices(outputs, conv.out_channels)
            cols = _indices(inputs, conv.in_channels)
            weight = self.parent[f"{prefix}.1.weight"][rows][:, cols] / _counts(cols)
            self.derived[f"{prefix}.1.weight"] = weight
            self.derived.update(self._bn(f"{prefix}.2", rows))
            return
        pointwise = module[2]  # sep_conv: ReLU, depthwise, pointwise, BN
        assert isinstance(pointwise, nn.Conv2d)
        rows = _indices(outputs, pointwise.out_channels)
        cols = _indices(inputs, pointwise.in_channels)
        self.derived[f"{prefix}.1.weight"] = self.parent[f"{prefix}.1.weight"][cols]
        weight = self.parent[f"{prefix}.2.weight"][rows][:, cols] / _counts(cols)
        self.derived[f"{prefix}.2.weight"] = weight
        self.derived.update(self._bn(f"{prefix}.3", rows))

    def _head(self, total: ChannelMap | None) -> None:
        if total is None:
            return
        columns = _indices(total, self.model.classifier.in_features)
        self.derived.update(self._bn("head.0", columns))
        weight = self.parent["classifier.weight"][:, columns] / _counts(columns)[0, :, 0, 0]
        self.derived["classifier.weight"] = weight

    def _bn(self, prefix: str, channels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{t}": self.parent[f"{prefix}.{t}"][channels] for t in _BN_TENSORS}


def _indices(channel_map: ChannelMap | None, width: int) -> torch.Tensor:
    if channel_map is None:
        return torch.arange(width)
    return torch.tensor(channel_map, dtype=torch.long)


def _counts(columns: torch.Tensor) -> torch.Tensor:
    """Per column, how many columns copy its parent channel, shaped to divide a conv
    weight's input dimension."""
    counts = torch.bincount(columns)[columns].float()
    return counts[None, :, None, None]
