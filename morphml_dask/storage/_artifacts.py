"""Model weights per trial and rung, saved with torch and loaded with ``weights_only=True``.

torch is imported only when weights are saved or loaded, so the store opens without it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from morphml_dask.exceptions import StorageError, StorageInputError
from morphml_dask.storage._fs import Location

if TYPE_CHECKING:
    import torch

__all__ = ["SavedWeights", "load_weights", "save_weights", "weights_path"]

WEIGHTS_FORMAT = "morphml.weights"
WEIGHTS_VERSION = 1


@dataclass(frozen=True)
class SavedWeights:
    """A trained model's weights as the store keeps them, with what rebuilding it needs.

    Attributes
    ----------
    trial_id, rung
        Whose weights, and after which rung of training.
    state_dict
        The module's parameters and buffers, on the CPU.
    num_classes, in_channels
        The arguments `morphml_dask.models.build_model` rebuilds the module with.
    """

    trial_id: str
    rung: int
    state_dict: dict[str, torch.Tensor]
    num_classes: int
    in_channels: int


def weights_path(location: Location, trial_id: str, rung: int) -> str:
    return location.path("artifacts", trial_id, f"rung-{rung}.pt")


def save_weights(
    location: Location,
    trial_id: str,
    rung: int,
    state_dict: dict[str, torch.Tensor],
    *,
    num_classes: int,
    in_channels: int,
) -> str:
    """Save a model's state dict with what `build_model` needs to rebuild it; returns the path."""
    import torch

    buffer = io.BytesIO()
    torch.save(
        {
            "format": WEIGHTS_FORMAT,
            "version": WEIGHTS_VERSION,
            "num_classes": int(num_classes),
            "in_channels": int(in_channels),
            "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        },
        buffer,
    )
    path = weights_path(location, trial_id, rung)
    location.write_atomic(path, buffer.getvalue())
    return path


def load_weights(location: Location, trial_id: str, rung: int | None = None) -> SavedWeights:
    """The saved weights of ``trial_id`` at ``rung`` (the highest saved rung by default).

    Raises
    ------
    StorageInputError
        When no weights are saved for the trial (at that rung).
    StorageError
        When the file is not a weights document morphml_dask wrote.
    """
    import torch

    folder = location.path("artifacts", trial_id)
    saved = sorted(
        (int(p.rsplit("rung-", 1)[1].removesuffix(".pt")), p) for p in location.list(folder, ".pt")
    )
    chosen = [(r, p) for r, p in saved if rung is None or r == rung]
    if not chosen:
        raise StorageInputError(
            f"no weights saved for trial {trial_id!r}" + ("" if rung is None else f" rung {rung}"),
            expected="a trial whose weights the search saved",
            received=f"saved rungs {[r for r, _ in saved]}",
            fix="pick a trial id from store.trials() that completed with a trained model",
        )
    chosen_rung, path = chosen[-1]
    document = torch.load(io.BytesIO(location.read(path)), weights_only=True)
    if not isinstance(document, dict) or document.get("format") != WEIGHTS_FORMAT:
        raise StorageError(
            f"the weights of trial {trial_id!r} are not in morphml's format",
            expected=f'a saved dict with "format": "{WEIGHTS_FORMAT}"',
            received=type(document).__name__,
            fix="save weights with ExperimentStore.save_weights",
        )
    return SavedWeights(
        trial_id=trial_id,
        rung=chosen_rung,
        state_dict=document.get("state_dict", {}),
        num_classes=int(document.get("num_classes", 0)),
        in_channels=int(document.get("in_channels", 0)),
    )
