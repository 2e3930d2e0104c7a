"""Model weights per trial and rung, and the training state a trial saves, written with
torch and loaded with ``weights_only=True``.

torch is imported only when weights or states are saved or loaded, so the store opens
without it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import StorageError, StorageInputError
from morphml_dask.storage._fs import Location

if TYPE_CHECKING:
    import torch

__all__ = [
    "SavedState",
    "SavedWeights",
    "load_state",
    "load_weights",
    "save_state",
    "save_weights",
    "state_path",
    "weights_path",
]

WEIGHTS_FORMAT = "morphml.weights"
WEIGHTS_VERSION = 1
STATE_FORMAT = "morphml.state"
STATE_VERSION = 1


@dataclass(frozen=True)
class SavedWeights:
    """A trained model's weights as the store keeps them, with what rebuilding it needs.

    Attributes
    ----------
    trial_id, rung
        Whose weights, and after which rung of training.
    state_dict
        The module's parameters and buffers, on the CPU.
    num_classes, in_channels, reductions
        The arguments `morphml_dask.models.build_model` rebuilds the module with
        (``reductions`` is 0 in weights saved before it was recorded: no network had any).
    """

    trial_id: str
    rung: int
    state_dict: dict[str, torch.Tensor]
    num_classes: int
    in_channels: int
    reductions: int = 0


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
    reductions: int = 0,
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
            "reductions": int(reductions),
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
        reductions=int(document.get("reductions", 0)),
    )


# -- the training state a trial saves (TrialContext.save) -----------------------------------


@dataclass(frozen=True)
class SavedState:
    """The training state a trial saved, as the store keeps it.

    Attributes
    ----------
    trial_id
        The trial that saved it.
    step
        The step (epoch) the state was saved at: the epochs behind it.
    state
        What the trial saved (model, optimizer and scheduler state dicts, counters), with
        its tensors on the CPU.
    reports
        The points of the trial's learning curve up to then, ``{"epoch": step, **metrics}``:
        a trial resumed from this state keeps its curve whole.
    """

    trial_id: str
    step: int
    state: dict[str, Any]
    reports: tuple[dict[str, float], ...] = field(default=())


def state_path(location: Location, trial_id: str) -> str:
    return location.path("artifacts", _checked_id(trial_id), "state.pt")


def save_state(
    location: Location,
    trial_id: str,
    state: Mapping[str, Any],
    *,
    step: int = 0,
    reports: Sequence[Mapping[str, float]] = (),
) -> str:
    """Save a trial's training state, replacing the one it saved before; returns the path.

    The state is written whole or not at all. It is loaded back before it is written, so a
    state that ``torch.load(..., weights_only=True)`` would refuse (a whole module, an
    object of your own) is refused here, where the trial that saves it can say so.

    Raises
    ------
    StorageInputError
        When ``state`` is not a dict with string keys, or holds objects that load only by
        running code.
    """
    import torch

    path = state_path(location, trial_id)
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise StorageInputError(
            f"the state of trial {trial_id!r} is not a dict with string keys",
            expected="a dict such as {'model': model.state_dict(), 'optimizer': "
            "optimizer.state_dict()}",
            received=type(state).__name__,
            fix="save a dict of state dicts, tensors and numbers",
        )
    document = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "trial_id": trial_id,
        "step": int(step),
        "reports": [dict(point) for point in reports],
        "state": dict(state),
    }
    buffer = io.BytesIO()
    try:
        torch.save(document, buffer)
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True, map_location="cpu")
    except Exception as error:  # any object torch cannot save, or would not load back
        raise StorageInputError(
            f"the state of trial {trial_id!r} cannot be stored as data",
            expected="tensors, numbers, strings, and lists and dicts of them "
            "(model.state_dict(), optimizer.state_dict(), scheduler.state_dict())",
            received=_first_line(error),
            fix="save state dicts rather than modules, optimizers or objects of your own, "
            "e.g. {'model': model.state_dict(), 'epoch': epoch}",
        ) from error
    location.write_atomic(path, buffer.getvalue())
    return path


def load_state(location: Location, trial_id: str) -> SavedState | None:
    """The state ``trial_id`` saved last, its tensors on the CPU; None when it saved none.

    Raises
    ------
    StorageError
        When the file is not a state document morphml_dask wrote, or of another version.
    """
    import torch

    path = state_path(location, trial_id)
    try:
        data = location.read(path)
    except FileNotFoundError:
        return None
    document = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise StorageError(
            f"the saved state of trial {trial_id!r} is not in morphml's format",
            expected=f'a saved dict with "format": "{STATE_FORMAT}"',
            received=type(document).__name__,
            fix="save states with ExperimentStore.save_state (ctx.save in a trial)",
        )
    if document.get("version") != STATE_VERSION:
        raise StorageError(
            f"unsupported version of the saved state of trial {trial_id!r}",
            expected=f"version {STATE_VERSION}",
            received=f"version {document.get('version')!r}",
            fix="open the experiment with the morphml_dask release that wrote it, or newer",
        )
    return SavedState(
        trial_id=trial_id,
        step=int(document.get("step", 0)),
        state=dict(document.get("state", {})),
        reports=tuple(dict(point) for point in document.get("reports", [])),
    )


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def _checked_id(trial_id: object) -> str:
    if not isinstance(trial_id, str) or not trial_id or "/" in trial_id or trial_id[0] == ".":
        raise StorageInputError(
            "invalid trial id for a saved state",
            expected="a non-empty string without '/' that does not start with '.', e.g. 't000012'",
            received=repr(trial_id)[:80],
            fix="pass the trial's id (trial.id, ctx.trial_id)",
        )
    return trial_id
