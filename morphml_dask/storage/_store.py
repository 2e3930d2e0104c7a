"""`ExperimentStore`: one experiment under one fsspec URL, and `open_store`."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import StorageInputError
from morphml_dask.storage._artifacts import (
    SavedState,
    SavedWeights,
    load_state,
    load_weights,
    save_state,
    save_weights,
)
from morphml_dask.storage._checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from morphml_dask.storage._curves import Curve, CurveStore
from morphml_dask.storage._fs import Location
from morphml_dask.storage._lineage import lineage_of
from morphml_dask.storage._retry import RetryingLocation
from morphml_dask.storage._schema import COLUMNS
from morphml_dask.storage._trials import TrialsTable

if TYPE_CHECKING:
    import pandas as pd
    import torch
    import xarray as xr

    from morphml_dask.trial import TrialRecord

__all__ = ["BaseStore", "ExperimentStore", "open_store"]


class BaseStore(abc.ABC):
    """Where a search keeps its finished trials, curves and checkpoints.

    Every append is exactly once by trial id: ids already stored, or repeated within one call,
    are skipped, so a result written twice (a retried task, a resumed search) counts once.
    `morphml_dask.testing.check_store` is the contract an implementation passes.
    """

    @abc.abstractmethod
    def append_records(self, records: Sequence[TrialRecord]) -> int:
        """Store finished trials; returns how many were written (new ids only)."""

    @abc.abstractmethod
    def append_curves(self, curves: Mapping[str, Curve]) -> int:
        """Store per-epoch metrics by trial id; returns how many were written (new ids only)."""

    @abc.abstractmethod
    def records(self) -> list[TrialRecord]:
        """Every stored trial once, in write order."""

    @abc.abstractmethod
    def record(self, trial_id: str) -> TrialRecord:
        """One stored trial; an unknown id raises `StorageInputError`."""

    @abc.abstractmethod
    def trials(self) -> pd.DataFrame:
        """One row per trial id, with a float column per metric."""

    @abc.abstractmethod
    def curves(self) -> xr.Dataset:
        """Learning curves with dims ``(trial, epoch)``."""

    @abc.abstractmethod
    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Replace the search checkpoint, whole or not at all."""

    @abc.abstractmethod
    def load_checkpoint(self) -> Checkpoint | None:
        """The search checkpoint, or None when none was saved."""

    @abc.abstractmethod
    def compact(self) -> int:
        """Merge small parts; returns how many were removed. Reads see no difference."""

    @abc.abstractmethod
    def save_state(
        self,
        trial_id: str,
        state: Mapping[str, Any],
        *,
        step: int = 0,
        reports: Sequence[Mapping[str, float]] = (),
    ) -> None:
        """Keep the training state a trial saved (``ctx.save``), replacing its last one,
        whole or not at all; ``step`` is the epochs behind it, ``reports`` its curve so far."""

    @abc.abstractmethod
    def saved_state(self, trial_id: str) -> SavedState | None:
        """The state ``trial_id`` saved last, with its step and reports; None if none."""

    def load_state(self, trial_id: str) -> dict[str, Any] | None:
        """The state ``trial_id`` saved last (tensors on the CPU), or None if it saved none."""
        saved = self.saved_state(trial_id)
        return None if saved is None else saved.state

    @abc.abstractmethod
    def save_weights(
        self,
        trial_id: str,
        rung: int,
        state_dict: dict[str, torch.Tensor],
        *,
        num_classes: int,
        in_channels: int,
        reductions: int = 0,
    ) -> str:
        """Keep a trained model's weights by trial and rung, replacing those saved there,
        whole or not at all, with the arguments that rebuild the model; returns the path."""

    @abc.abstractmethod
    def saved_weights(self, trial_id: str, rung: int | None = None) -> SavedWeights:
        """The weights of ``trial_id`` at ``rung`` (its highest by default); a trial or rung
        without weights raises `StorageInputError`."""

    def load_weights(self, trial_id: str, rung: int | None = None) -> dict[str, torch.Tensor]:
        """The saved state dict of a trial (its highest rung unless ``rung`` is given)."""
        return self.saved_weights(trial_id, rung).state_dict

    def best(
        self, k: int = 1, metric: str = "val_accuracy", direction: str = "maximize"
    ) -> pd.DataFrame:
        """The ``k`` completed trials with the best ``metric``, best first.

        Raises
        ------
        StorageInputError
            When no trial reported ``metric``.
        """
        table = self.trials()
        if metric not in table.columns:
            raise StorageInputError(
                f"no metric {metric!r} in the trials table",
                expected=f"one of {sorted(set(table.columns) - set(COLUMNS))}",
                received=repr(metric),
                fix="pass metric= the name a task reports, e.g. 'val_accuracy'",
            )
        done = table[table["state"] == "complete"].dropna(subset=[metric])
        return done.sort_values(metric, ascending=direction == "minimize", kind="stable").head(k)

    def lineage(self, trial_id: str) -> pd.DataFrame:
        """``trial_id`` and its ancestors, the trial first and the oldest ancestor last: the
        rows of the trials table (with their metrics, ``mutation``, ``inherited_fraction``
        and ``epochs_trained``) followed through ``parent_id``.

        Raises
        ------
        StorageInputError
            When no trial ``trial_id`` is stored.
        """
        return lineage_of(self.trials(), trial_id)


class ExperimentStore(BaseStore):
    """Parquet trials, Zarr curves, torch weights and a JSON checkpoint under one URL.

    Layout under the URL::

        trials/part-*.parquet          append-only parts of the trials table
        curves/part-*.zarr (+ .commit) learning curves, one Zarr store per committed batch
        artifacts/<trial id>/rung-<k>.pt   model weights
        artifacts/<trial id>/state.pt      the training state a trial saved
        checkpoint.json                optimizer state, config, trials in flight

    The trials and the curves are two part logs (one protocol, two codecs). Every write is
    whole or nothing, appends are exactly once by trial id, and every format is data only
    (Parquet, Zarr, JSON, tensors). Use `open_store` to get one.

    Weights and saved states, which trials write and read on workers, are retried with
    back-off while the store is unreachable (an S3 outage), for up to ``outage_timeout``
    seconds; then the call raises `StoreOutageError`, and the trial fails as an
    infrastructure failure that the driver runs again.

    Parameters
    ----------
    url, storage_options
        As for `open_store`.
    outage_timeout
        Seconds a weights or state read or write may keep failing
        (``morphml.store-outage-timeout``, 600).
    """

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        outage_timeout: float | None = None,
    ) -> None:
        self.location = Location(url, storage_options)
        self._outage_timeout = outage_timeout
        self._trials = TrialsTable(self.location)
        self._curves = CurveStore(self.location)

    @property
    def outage_timeout(self) -> float:
        """Seconds a weights or state read or write may keep failing before it gives up."""
        if self._outage_timeout is not None:
            return self._outage_timeout
        from morphml_dask.config import config_value

        return float(config_value("store-outage-timeout"))

    def _artifacts(self) -> RetryingLocation:
        """The location, its transfers retried while the store is unreachable."""
        return RetryingLocation(self.location, self.outage_timeout)

    @property
    def url(self) -> str:
        """The URL the store was opened at."""
        return self.location.url

    def __repr__(self) -> str:
        return f"ExperimentStore({self.url!r})"

    # -- writing -----------------------------------------------------------------------

    def append_records(self, records: Sequence[TrialRecord]) -> int:
        """Store finished trials, as one part; returns how many were written.

        Records whose trial id is stored already, or appeared earlier in ``records``, are
        skipped; nothing is written when none is left.

        Raises
        ------
        StorageInputError
            When ``records`` is not a sequence of `TrialRecord` or a field has the wrong type
            (nothing is written).
        """
        return self._trials.append(records)

    def append_curves(self, curves: Mapping[str, Curve]) -> int:
        """Store learning curves by trial id, as one part; returns how many were written.

        Parameters
        ----------
        curves
            Trial id -> list of per-epoch points, each a dict with an integer-valued
            ``"epoch"`` and metric values, e.g. ``{"epoch": 3, "val_loss": 0.41}``. Ids stored
            already are skipped.

        Raises
        ------
        StorageInputError
            When a curve is malformed (nothing is written).
        """
        return self._curves.append(curves)

    def save_weights(
        self,
        trial_id: str,
        rung: int,
        state_dict: dict[str, torch.Tensor],
        *,
        num_classes: int,
        in_channels: int,
        reductions: int = 0,
    ) -> str:
        """Save a trained model's weights for later promotion or
        `morphml_dask.models.load_model`, with the arguments that rebuild its model
        (`morphml_dask.models.build_model`'s), replacing those of the same trial and rung
        whole or not at all; returns the path written.

        Raises
        ------
        StoreOutageError
            When the store could not be reached for `outage_timeout` seconds.
        """
        return save_weights(
            self._artifacts(),
            trial_id,
            rung,
            state_dict,
            num_classes=num_classes,
            in_channels=in_channels,
            reductions=reductions,
        )

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        save_checkpoint(self.location, checkpoint)

    def save_state(
        self,
        trial_id: str,
        state: Mapping[str, Any],
        *,
        step: int = 0,
        reports: Sequence[Mapping[str, float]] = (),
    ) -> None:
        """Save the training state of a trial (what ``ctx.save`` is given), replacing the
        one it saved before, whole or not at all.

        Parameters
        ----------
        trial_id
            The trial that saves it.
        state
            A dict of state dicts, tensors, numbers and strings: whatever
            ``torch.load(..., weights_only=True)`` reads back.
        step
            The epochs behind the state: a trial that continues from it has trained them.
        reports
            The trial's learning curve so far, one ``{"epoch": step, **metrics}`` per point.

        Raises
        ------
        StorageInputError
            When ``state`` is not a dict with string keys, or holds objects that would load
            only by running code (nothing is written).
        StoreOutageError
            When the store could not be reached for `outage_timeout` seconds.
        """
        save_state(self._artifacts(), trial_id, state, step=step, reports=reports)

    def saved_state(self, trial_id: str) -> SavedState | None:
        """The state ``trial_id`` saved last, with its step and reports, its tensors on the
        CPU; None when the trial saved none.

        Raises
        ------
        StorageError
            When the saved file is not a state document of this version.
        StoreOutageError
            When the store could not be reached for `outage_timeout` seconds.
        """
        return load_state(self._artifacts(), trial_id)

    def compact(self) -> int:
        """Merge the parts of the trials table and of the curves; returns parts removed."""
        return self._trials.compact() + self._curves.compact()

    # -- reading -----------------------------------------------------------------------

    def records(self) -> list[TrialRecord]:
        """Every stored trial once (its first write), in write order.

        Metrics come back as written, NaN and infinities included. The table keeps no
        `Trial.info` (optimizer bookkeeping, kept by the checkpoint): it comes back empty.
        """
        return self._trials.records()

    def record(self, trial_id: str) -> TrialRecord:
        """The stored trial ``trial_id``.

        Raises
        ------
        StorageInputError
            When no trial of that id is stored.
        """
        return self._trials.record(trial_id)

    def trials(self) -> pd.DataFrame:
        """Every stored trial once, in write order: the columns of the trials table (see
        ``docs/storage.md``) and one float column per metric."""
        return self._trials.read()

    def curves(self) -> xr.Dataset:
        """All committed curves, loaded into memory, with dims ``(trial, epoch)``.

        Trials come in write order, each once; epochs are the sorted union of every part's.
        An empty store gives a Dataset with ``trial`` and ``epoch`` of length 0.
        """
        return self._curves.read()

    def load_checkpoint(self) -> Checkpoint | None:
        return load_checkpoint(self.location)

    def saved_weights(self, trial_id: str, rung: int | None = None) -> SavedWeights:
        """The saved weights of a trial with what rebuilding its model needs.

        Raises
        ------
        StorageInputError
            When no weights are saved for the trial (at ``rung``).
        StoreOutageError
            When the store could not be reached for `outage_timeout` seconds.
        """
        return load_weights(self._artifacts(), trial_id, rung)


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
    StorageInputError
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
