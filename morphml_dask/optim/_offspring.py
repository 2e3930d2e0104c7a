"""Children that inherit their parent's weights: how an optimizer makes one."""

from __future__ import annotations

from typing import Any

import numpy as np

from morphml_dask.exceptions import SearchSpaceError
from morphml_dask.space import BaseSearchSpace, Candidate, DagSpace, morph

__all__ = ["MORPH_INPUT_WIDTH", "offspring"]

MORPH_INPUT_WIDTH = 16
"""The width of the graph's input that morphisms are planned for: the stem of a network on
8x8 images (no reduction stage). A worker whose network's input is wider inherits by name
and shape instead of applying the morphism."""


def offspring(
    space: BaseSearchSpace, parent: Candidate, rng: np.random.Generator
) -> tuple[Candidate, dict[str, Any]]:
    """A child of ``parent`` meant to start from its weights, and the `Trial.info` that
    says how it was made: in a `DagSpace` a function-preserving morphism (``mutation``, its
    label, and ``morphism``, what the worker needs to transform the weights exactly);
    elsewhere, or when no morphism applies, the space's own mutation (``mutation``:
    ``"mutate"``), which inherits the tensors whose names and shapes still fit."""
    if isinstance(space, DagSpace):
        try:
            child, morphism = morph(space, parent, rng)  # type: ignore[arg-type]
        except SearchSpaceError:
            pass
        else:
            return child, {
                "mutation": morphism.label,
                "morphism": morphism.to_dict(),
                "morph_input_width": MORPH_INPUT_WIDTH,
            }
    return space.mutate(parent, rng), {"mutation": "mutate"}
