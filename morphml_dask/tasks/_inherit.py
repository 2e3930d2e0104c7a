"""Weights a child takes from its parent's saved state, for `TrialContext.inherit`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import TaskError

if TYPE_CHECKING:
    from torch import nn

    from morphml_dask.models import Inherited
    from morphml_dask.storage import BaseStore

__all__ = ["inherit_saved_state"]


def inherit_saved_state(
    store: BaseStore, parent_id: str, model: nn.Module, key: str
) -> Inherited | None:
    """Copy into ``model`` what fits of the state ``parent_id`` saved (`TrialContext.save`):
    its ``key`` entry, or the whole state when it has none. None if the parent saved none.

    Raises
    ------
    TaskError
        When the parent's state holds no tensors under ``key`` or at its top level.
    """
    import torch

    from morphml_dask.models import copy_matching

    saved = store.saved_state(parent_id)
    if saved is None:
        return None
    state: Any = saved.state.get(key, saved.state)
    tensors = (
        {name: value for name, value in state.items() if isinstance(value, torch.Tensor)}
        if isinstance(state, Mapping)
        else {}
    )
    if not tensors:
        raise TaskError(
            f"the state parent {parent_id} saved holds no model weights",
            expected=f"ctx.save({{{key!r}: model.state_dict(), ...}}) in the train function",
            received=f"a state with the keys {sorted(saved.state)[:10]}",
            fix=f"save the model's state dict under {key!r}, or pass ctx.inherit(model, "
            "key=...) the key it is saved under",
        )
    return copy_matching(model, tensors)
