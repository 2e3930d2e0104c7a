"""Search checkpoints: the optimizer's state, the experiment config and the trials in flight.

One JSON document, replaced whole on every save (an atomic rename locally, a single PUT on
object stores), so a reader sees the previous checkpoint or the new one, never a mixture.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from morphml_dask.exceptions import StorageError, StorageInputError
from morphml_dask.storage._fs import Location
from morphml_dask.trial import Trial

__all__ = ["CHECKPOINT_VERSION", "Checkpoint", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "morphml.checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_FILE = "checkpoint.json"


class Checkpoint:
    """What a search needs to resume from the store alone."""

    def __init__(
        self,
        optimizer: Mapping[str, Any],
        config: Mapping[str, Any] | None = None,
        in_flight: Sequence[Trial] = (),
        pruner: Mapping[str, Any] | None = None,
    ) -> None:
        self.optimizer = dict(optimizer)
        self.config = dict(config or {})
        self.in_flight = list(in_flight)
        self.pruner = None if pruner is None else dict(pruner)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "optimizer": self.optimizer,
            "config": self.config,
            "in_flight": [t.to_dict() for t in self.in_flight],
            "pruner": self.pruner,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        if not isinstance(data, Mapping) or data.get("format") != CHECKPOINT_FORMAT:
            raise StorageError(
                "not a morphml checkpoint",
                expected=f'a JSON object with "format": "{CHECKPOINT_FORMAT}"',
                received=repr(data.get("format") if isinstance(data, Mapping) else data)[:80],
                fix=f"point the store at an experiment folder holding {CHECKPOINT_FILE}",
            )
        if data.get("version") != CHECKPOINT_VERSION:
            raise StorageError(
                "unsupported checkpoint version",
                expected=f"version {CHECKPOINT_VERSION}",
                received=f"version {data.get('version')!r}",
                fix="open the experiment with the morphml_dask release that wrote it, or newer",
            )
        return cls(
            data["optimizer"],
            data.get("config", {}),
            [Trial.from_dict(t) for t in data.get("in_flight", [])],
            data.get("pruner"),
        )


def save_checkpoint(location: Location, checkpoint: Checkpoint) -> None:
    """Replace the experiment's checkpoint, whole or not at all.

    Raises
    ------
    StorageInputError
        When the checkpoint holds values that are not plain JSON (nothing is written).
    """
    try:
        text = json.dumps(checkpoint.to_dict(), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise StorageInputError(
            "the checkpoint is not plain JSON",
            expected="JSON values only (no NaN or infinity, no objects)",
            received=f"{type(error).__name__}: {error}",
            fix="make state_dict() return JSON-ready values, e.g. floats as strings for inf",
        ) from error
    location.write_atomic(location.path(CHECKPOINT_FILE), text.encode())


def load_checkpoint(location: Location) -> Checkpoint | None:
    """The saved checkpoint, or None when the experiment has none yet.

    Raises
    ------
    StorageError
        When ``checkpoint.json`` is not JSON, not a checkpoint, or of another version.
    """
    path = location.path(CHECKPOINT_FILE)
    if not location.exists(path):
        return None
    try:
        data = json.loads(location.read(path))
    except ValueError as error:
        raise StorageError(
            "the checkpoint is not valid JSON",
            expected="the JSON document save_checkpoint writes",
            received=f"{type(error).__name__}: {error}",
            fix="restore checkpoint.json from a backup or start a new experiment",
        ) from error
    return Checkpoint.from_dict(data)
