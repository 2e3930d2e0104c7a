"""`ExperimentStore`: one experiment under one fsspec URL, and `open_store`."""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import StorageError
from morphml_dask.space import ArchGraph
from morphml_dask.storage._artifacts import load_weights, save_weights
from morphml_dask.storage._checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from morphml_dask.storage._curves import CurveStore
from morphml_dask.storage._fs import Location
from morphml_dask.storage._trials import COLUMNS, TrialsTable, trial_row

if TYPE_CHECKING:
    import pandas as pd
    import torch
    import xarray as xr

    from morphml_dask.trial import Trial, TrialResult

__all__ = ["BaseStore", "ExperimentStore", "open_store"]

Curve = Sequence[Mapping[str, float]]


class BaseStore(abc.ABC):
    """Where a search keeps its results, curves, weights and checkpoints."""

    @abc.abstractmethod
    def append(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store trial rows (see `trial_row`); ids already stored are skipped."""

    @abc.abstractmethod
    def append_curves(self, curves: Mapping[str, Curve]) -> int:
        """Store per-epoch metrics by trial id; ids already stored are skipped."""

    @abc.abstractmethod
    def trials(self) -> pd.DataFrame:
        """One row per trial id."""

    @abc.abstractmethod
    def curves(self) -> xr.Dataset:
        """Learning curves with dims ``(trial, epoch)``."""

    @abc.abstractmethod
    def save_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    @abc.abstractmethod
    def load_checkpoint(self) -> Checkpoint | None: ...

    @abc.abstractmethod
    def compact(self) -> int:
        """Merge small parts; returns how many were removed. Reads see no difference."""


class ExperimentStore(BaseStore):
    """Parquet trials, Zarr curves, torch weights and a JSON checkpoint under one URL.

    Layout under the URL::

        trials/part-*.parquet          append-only parts of the trials table
        curves/part-*.zarr (+ .commit) learning curves, one Zarr store per committed batch
        artifacts/<trial id>/rung-<k>.pt   model weights
        checkpoint.json                optimizer state, config, trials in flight

    Every write is whole or nothing, appends are exactly-once by trial id, and every format
    is data only (Parquet, Zarr, JSON, tensors). Use `open_store` to get one.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.location = Location(url, storage_options)
        self._trials = TrialsTable(self.location)
        self._curves = CurveStore(self.location)

    @property
    def url(self) -> str:
        return self.location.url

    def __repr__(self) -> str:
        return f"ExperimentStore({self.url!r})"

    # -- writing -----------------------------------------------------------------------

    def append(self, rows: Sequence[Mapping[str, Any]]) -> int:
        return self._trials.append(rows)

    def record(
        self,
        trial: Trial,
        result: TrialResult,
        curve: Curve | None = None,
        **details: Any,
    ) -> bool:
        """Store one finished trial and its curve; False when its id was already stored.

        ``details`` are the row's worker, device, start_time, end_time, attempt, reused.
        """
        if curve:
            self._curves.append({trial.id: curve})
        return self._trials.append([trial_row(trial, result, **details)]) == 1

    def append_curves(self, curves: Mapping[str, Curve]) -> int:
        return self._curves.append(curves)

    def save_weights(
        self,
        trial_id: str,
        rung: int,
        state_dict: dict[str, torch.Tensor],
        *,
        num_classes: int,
        in_channels: int,
    ) -> str:
        """Save a trained model's weights for later promotion or `load_model`."""
        return save_weights(
            self.location,
            trial_id,
            rung,
            state_dict,
            num_classes=num_classes,
            in_channels=in_channels,
        )

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        save_checkpoint(self.location, checkpoint)

    def compact(self) -> int:
        """Merge small parts of the trials table and the curves; returns parts removed."""
        return self._trials.compact() + self._curves.compact()

    # -- reading -----------------------------------------------------------------------

    def trials(self) -> pd.DataFrame:
        return self._trials.read()

    def curves(self) -> xr.Dataset:
        return self._curves.read()

    def load_checkpoint(self) -> Checkpoint | None:
        return load_checkpoint(self.location)

    def best(
        self, k: int = 1, metric: str = "val_accuracy", direction: str = "maximize"
    ) -> pd.DataFrame:
        """The ``k`` completed trials with the best ``metric``."""
        table = self.trials()
        if metric not in table.columns:
            raise StorageError(
                f"no metric {metric!r} in the trials table",
                expected=f"one of {sorted(set(table.columns) - set(COLUMNS))}",
                received=repr(metric),
                fix="pass metric= the name a task reports, e.g. 'val_accuracy'",
            )
        done = table[table["state"] == "complete"].dropna(subset=[metric])
        return done.sort_values(metric, ascending=direction == "minimize", kind="stable").head(k)

    def load_weights(self, trial_id: str, rung: int | None = None) -> dict[str, torch.Tensor]:
        """The saved state dict of a trial (its highest rung unless ``rung`` is given)."""
        state: dict[str, torch.Tensor] = load_weights(self.location, trial_id, rung)["state_dict"]
        return state

    def load_model(self, trial_id: str, rung: int | None = None) -> torch.nn.Module:
        """The trained model of ``trial_id``, rebuilt from its architecture and weights."""
        from morphml_dask.models import build_model

        table = self.trials()
        row = table[table["trial_id"] == trial_id]
        if row.empty:
            raise StorageError(
                f"no trial {trial_id!r} in this store",
                expected="an id from store.trials()['trial_id']",
                received=repr(trial_id),
                fix="pick a stored trial, e.g. store.best(1)['trial_id'].iloc[0]",
            )
        arch = ArchGraph.from_dict(json.loads(str(row["arch"].iloc[0])))
        saved = load_weights(self.location, trial_id, rung)
        model = build_model(arch, saved["num_classes"], in_channels=saved["in_channels"])
        model.load_state_dict(saved["state_dict"])
        return model.eval()


def open_store(
    url: str = "./runs/search", storage_options: dict[str, Any] | None = None
) -> ExperimentStore:
    """Open (or start) the experiment at ``url``: a folder, ``memory://...`` or ``s3://...``.

    Parameters
    ----------
    url
        Any fsspec URL. S3 needs the ``s3`` extra (s3fs).
    storage_options
        For the filesystem, e.g. ``{"key": ..., "secret": ..., "endpoint_url": ...}``.

    Raises
    ------
    StorageError
        For a URL that is not a non-empty string, a protocol that is not installed, options
        that are not a mapping of names, and, on S3, unknown options, options of the wrong
        type, a missing bucket or a key without its secret. Messages never show values.

    Examples
    --------
    >>> store = open_store("memory://doc-example")
    >>> len(store.trials())
    0
    """
    return ExperimentStore(url, storage_options)
