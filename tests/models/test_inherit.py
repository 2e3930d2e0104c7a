"""Weight inheritance: exact morphisms keep the parent's function on hundreds of random
parents with random weights and BN statistics; approximate ones inherit part of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from morphml_dask.exceptions import SearchSpaceError
from morphml_dask.models import Inherited, copy_matching, inherit_weights
from morphml_dask.models._dag import DagNetwork
from morphml_dask.space import ArchGraph, DagSpace, Morphism, Node, morph
from morphml_dask.space._morph import APPROXIMATE_KINDS, EXACT_KINDS

# 16 is the stem's width: inserting on the input's edges needs it among the widths.
SPACE = DagSpace(max_nodes=5, widths=(4, 8, 16), kernels=(1, 3, 5))
PARENTS = 200
TOLERANCE = 1e-4


def _randomize(model: nn.Module, generator: torch.Generator) -> None:
    """Random BN statistics and affine terms, and random weights at the init's scale, so
    that no check passes by something being zero or the identity."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0, generator=generator)
            elif name.endswith(("running_mean", "bias")):
                tensor.normal_(0.0, 0.3, generator=generator)
            elif tensor.dim() == 1:  # BN weight
                tensor.uniform_(0.5, 1.5, generator=generator)
            elif tensor.is_floating_point():
                fan_in = tensor[0].numel()
                tensor.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)


def _morphed(
    kind: str, rng: np.random.Generator, generator: torch.Generator
) -> tuple[DagNetwork, DagNetwork, Morphism]:
    """A random parent with random weights that admits ``kind``, and its child."""
    while True:
        parent_arch = SPACE.sample(rng)
        try:
            child_arch, morphism = morph(SPACE, parent_arch, rng, kinds=[kind])
        except SearchSpaceError:
            continue
        parent = DagNetwork(parent_arch.pruned(), 10, in_channels=3)
        _randomize(parent, generator)
        child = DagNetwork(child_arch.pruned(), 10, in_channels=3)
        return parent.eval(), child.eval(), morphism


@pytest.mark.parametrize("kind", EXACT_KINDS)
def test_exact_morphisms_preserve_the_function(kind: str) -> None:
    torch.set_num_threads(1)
    rng, generator = np.random.default_rng(19), torch.Generator().manual_seed(19)
    worst, labels = 0.0, set()
    for _ in range(PARENTS):
        parent, child, morphism = _morphed(kind, rng, generator)
        inherited = inherit_weights(child, parent.state_dict(), morphism)
        images = torch.randn(4, 3, 8, 8, generator=generator)
        with torch.no_grad():
            expected, got = parent(images), child(images)
        difference = (expected - got).abs().max().item()
        assert difference < TOLERANCE, (morphism.label, difference)
        assert expected.abs().max().item() > 0.1  # a real function, not zeros
        assert 0.0 < inherited.fraction <= 1.0
        worst = max(worst, difference)
        labels.add(morphism.label.split(" ")[0] + (" via" if " via " in morphism.label else ""))
    print(f"{kind}: max |logit difference| over {PARENTS} parents = {worst:.3g}")
    assert labels == ({"skip", "skip via"} if kind == "skip" else {kind})


@pytest.mark.parametrize("kind", APPROXIMATE_KINDS)
def test_approximate_morphisms_inherit_part_of_the_parent(kind: str) -> None:
    rng, generator = np.random.default_rng(5), torch.Generator().manual_seed(5)
    for _ in range(30):
        parent, child, morphism = _morphed(kind, rng, generator)
        inherited = inherit_weights(child, parent.state_dict(), morphism)
        assert not morphism.exact
        assert 0.0 < inherited.fraction <= 1.0
        with torch.no_grad():
            assert torch.isfinite(child(torch.randn(2, 3, 8, 8, generator=generator))).all()


def test_approximate_shrinks_keep_the_first_channels_and_the_kernel_centre() -> None:
    parent_arch = ArchGraph(
        [
            "input",
            Node("conv", kernel=5, channels=16),
            Node("conv", kernel=3, channels=8),
            "output",
        ],
        [(0, 1), (1, 2), (2, 3)],
    )
    parent = DagNetwork(parent_arch, 10, in_channels=3)
    _randomize(parent, torch.Generator().manual_seed(0))
    state = parent.state_dict()
    child_arch, morphism = morph(SPACE, parent_arch, np.random.default_rng(0), kinds=["narrow"])
    child = DagNetwork(child_arch.pruned(), 10, in_channels=3)
    inherit_weights(child, state, morphism)
    node = morphism.node
    width = morphism.channels
    assert node is not None and width is not None
    got = child.state_dict()[f"ops.{node}.1.weight"]
    assert torch.equal(got, state[f"ops.{node}.1.weight"][:width, : got.shape[1]])
    child_arch, morphism = morph(
        SPACE, parent_arch, np.random.default_rng(0), kinds=["shrink_kernel"]
    )
    child = DagNetwork(child_arch.pruned(), 10, in_channels=3)
    inherit_weights(child, state, morphism)
    node, kernel = morphism.node, morphism.kernel
    assert node is not None and kernel is not None and morphism.previous is not None
    start = (morphism.previous - kernel) // 2
    crop = state[f"ops.{node}.1.weight"][:, :, start : start + kernel, start : start + kernel]
    assert torch.equal(child.state_dict()[f"ops.{node}.1.weight"], crop)


def test_without_a_morphism_inherit_copies_matching() -> None:
    rng = np.random.default_rng(1)
    arch = SPACE.sample(rng)
    parent, child = DagNetwork(arch.pruned(), 10), DagNetwork(arch.pruned(), 10)
    inherited = inherit_weights(child, parent.state_dict(), None)
    assert inherited.fraction == 1.0
    assert set(inherited.copied) == set(child.state_dict())


def _mlp(classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 5), nn.Linear(5, classes))


def test_copy_matching_keeps_the_init_of_a_changed_layer() -> None:
    torch.manual_seed(0)
    parent, child = _mlp(2), _mlp(3)
    fresh = {name: tensor.clone() for name, tensor in child.state_dict().items()}
    inherited = copy_matching(child, parent.state_dict())
    copied = ("0.weight", "0.bias", "2.weight", "2.bias")
    assert inherited == Inherited(copied, (6 * 5 + 5 + 5 * 5 + 5) / (35 + 30 + 5 * 3 + 3))
    for name in copied:
        assert torch.equal(child.state_dict()[name], parent.state_dict()[name])
    for name in ("3.weight", "3.bias"):
        assert torch.equal(child.state_dict()[name], fresh[name])
