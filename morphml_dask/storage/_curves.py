"""Learning curves in Zarr: the codec of the curves' part log, read back as one xarray Dataset.

On-disk layout, under the experiment's URL::

    curves/
        part-<creation time ns>-<random>.zarr/         one batch of curves, a Zarr v2 store
        part-<creation time ns>-<random>.zarr.commit   its commit marker (JSON)

Each ``.zarr`` part is a plain xarray Dataset with dims ``(trial, epoch)``:

- coordinate ``trial`` (str): the trial ids of the batch, each once;
- coordinate ``epoch`` (int64): every epoch some trial of the batch reported, sorted;
- one float64 variable per metric (``train_loss``, ``val_loss``, ``val_accuracy``, ...),
  NaN where a trial has no value for that epoch or metric;
- attributes ``format`` (``"morphml.curves"``) and ``version`` (``1``).

Its metadata is consolidated, so a part opens on its own, without morphml_dask::

    import xarray as xr

    part = xr.open_zarr(
        "s3://bucket/experiment/curves/part-01790000000000000000-0123456789ab.zarr",
        storage_options={"key": ..., "secret": ..., "endpoint_url": ...},
    )
    part["val_accuracy"].sel(trial="t-0042").dropna("epoch")

Open only parts that have a ``.commit`` marker beside them (`CurveStore.parts` lists them;
``location.url_of("curves", name)`` is the URL, also for local folders).

A part counts only once its marker ``<part>.commit`` exists. The marker is written whole or
not at all, after the part is complete, and holds ``{"format": "morphml.curves.commit",
"version": 1, "part": <part name>, "trial_ids": [...], "count": <number of trials>}``. The part
log (`morphml_dask.storage._partlog`) does the naming, committing, reading, deduplication and
compaction; this module only turns curves into Zarr parts and back. Only Zarr arrays and JSON
are stored, no Python objects.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import xarray as xr
import zarr
import zarr.buffer
import zarr.storage

from morphml_dask.exceptions import StorageError, StorageInputError
from morphml_dask.storage._partlog import LEFTOVER_AGE_S, PartCodec, PartLog

if TYPE_CHECKING:
    from morphml_dask.storage._fs import Location

__all__ = ["CURVES_FORMAT", "CURVES_VERSION", "Curve", "CurveStore", "CurvesCodec"]

CURVES_FORMAT = "morphml.curves"
COMMIT_FORMAT = "morphml.curves.commit"
CURVES_VERSION = 1

# The files a part is read from: the consolidated metadata (it holds .zarray and .zattrs)
# and the chunks.
_NEEDED = re.compile(r"\.zmetadata|\.zgroup|[^./][^/]*/[0-9.]+")
# Rows per Zarr chunk: a compacted part of 10,000 curves is two chunks per metric.
_TRIAL_CHUNK = 8192
_EXAMPLE = "[{'epoch': 1, 'val_loss': 0.9, 'val_accuracy': 0.61}, {'epoch': 2, ...}]"

Curve = Sequence[Mapping[str, float]]
# A validated curve: (epoch, {metric: value}) per point, in the order given.
_Points = list[tuple[int, dict[str, float]]]


@dataclass
class _Block:
    """Curves as arrays: what one part holds, or what a read returns."""

    trial: npt.NDArray[np.str_]
    epoch: npt.NDArray[np.int64]
    metrics: dict[str, npt.NDArray[np.float64]]

    def to_dataset(self, attrs: dict[str, Any] | None = None) -> xr.Dataset:
        return xr.Dataset(
            {name: (("trial", "epoch"), values) for name, values in self.metrics.items()},
            coords={"trial": self.trial, "epoch": self.epoch},
            attrs=attrs or {},
        )


class CurveStore:
    """Per-epoch metrics of every trial, appended in Zarr parts and read as one Dataset.

    Parameters
    ----------
    location
        The experiment; the curves live in its ``curves/`` folder (see the module docstring
        for the layout).

    Notes
    -----
    Appends are exactly once by trial id within one instance (the ids it has seen, plus those
    its own appends are writing, are skipped). Two processes that append the same id at the
    same moment may both store it; `read` keeps the first.
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        self.log = PartLog(location, "curves", CurvesCodec())

    def __repr__(self) -> str:
        return f"CurveStore({self.location.url_of('curves')!r})"

    def append(self, curves: Mapping[str, Curve]) -> int:
        """Store the curves of trials not stored yet, as one new committed part.

        Parameters
        ----------
        curves
            Trial id -> list of per-epoch points, each a dict with an integer-valued
            ``"epoch"`` and metric values, e.g. ``{"epoch": 3, "val_loss": 0.41}``.

        Returns
        -------
        int
            How many trials were written; ids already stored are skipped.

        Raises
        ------
        StorageInputError
            When a curve is malformed; nothing of the batch is written.
        """
        return self.log.append(validate_curves(curves))

    def read(self) -> xr.Dataset:
        """All committed curves, loaded into memory, with dims ``(trial, epoch)``.

        Trials come in write order, each once; epochs are the sorted union of every part's.
        An empty store gives a Dataset with ``trial`` and ``epoch`` of length 0.
        """
        return self.log.read().to_dataset()

    def ids(self) -> set[str]:
        """The trial ids stored (committed)."""
        return self.log.ids()

    def parts(self) -> list[str]:
        """Names of the committed parts, oldest first.

        ``location.url_of("curves", name)`` is a URL that `xarray.open_zarr` opens.
        """
        return self.log.parts()

    def compact(self, leftover_age: float = LEFTOVER_AGE_S) -> int:
        """Merge the committed parts into one, then delete them and old uncommitted ones
        (see `PartLog.compact`); returns how many parts were removed."""
        return self.log.compact(leftover_age)


class CurvesCodec(PartCodec[_Points, _Block]):
    """Per-epoch metrics as Zarr folder parts with JSON commit markers."""

    suffix: ClassVar[str] = ".zarr"
    folder: ClassVar[bool] = True

    def build(self, items: Mapping[str, _Points]) -> _Block:
        return _to_block(items)

    def encode(self, block: _Block) -> dict[str, bytes]:
        """xarray encodes the part in memory; the log uploads its files in one batch."""
        files: dict[str, Any] = {}
        chunks = (min(len(block.trial), _TRIAL_CHUNK), max(len(block.epoch), 1))
        block.to_dataset({"format": CURVES_FORMAT, "version": CURVES_VERSION}).to_zarr(
            zarr.storage.MemoryStore(files),
            mode="w-",
            consolidated=True,
            zarr_format=2,
            encoding={metric: {"chunks": chunks} for metric in block.metrics},
        )
        return {key: data.to_bytes() for key, data in files.items()}

    def decode(self, name: str, files: Mapping[str, bytes]) -> _Block:
        return _decode(name, files)

    def wanted(self, key: str) -> bool:
        return _NEEDED.fullmatch(key) is not None

    def marker(self, name: str, ids: Sequence[str]) -> bytes:
        marker = {
            "format": COMMIT_FORMAT,
            "version": CURVES_VERSION,
            "part": name,
            "trial_ids": list(ids),
            "count": len(ids),
        }
        return json.dumps(marker).encode()

    def committed_ids(self, name: str, data: bytes) -> list[str]:
        return _parse_marker(name + ".commit", data)

    def ids(self, block: _Block) -> list[str]:
        return [str(trial_id) for trial_id in block.trial]

    def concat(self, blocks: Sequence[_Block]) -> _Block:
        return _concat(blocks)

    def take(self, block: _Block, rows: Sequence[int]) -> _Block:
        keep = np.asarray(rows, dtype=np.int64)
        metrics = {metric: values[keep] for metric, values in block.metrics.items()}
        return _Block(block.trial[keep], block.epoch, metrics)

    def vanishing(self, url: str, attempts: int) -> StorageError:
        return StorageError(
            "the curve parts kept changing or vanishing while being read",
            expected="each committed part (with a .commit marker) to have its .zarr folder",
            received=f"{attempts} attempts at {url} failed",
            fix="retry when compaction has finished; if it persists, delete the .commit marker "
            "of a part whose .zarr folder is missing",
        )


# -- validation and conversion ------------------------------------------------------------


def validate_curves(curves: Mapping[str, Curve]) -> dict[str, _Points]:
    """Check every curve and return them as (epoch, {metric: value}) points.

    Raises
    ------
    StorageInputError
        Naming the trial, the point and what is wrong with it.
    """
    if not isinstance(curves, Mapping):
        raise StorageInputError(
            "curves must be a mapping from trial id to curve",
            expected=f"a dict such as {{'t-1': {_EXAMPLE}}}",
            received=f"{type(curves).__name__}",
            fix="pass {trial_id: list of per-epoch dicts}",
        )
    batch: dict[str, _Points] = {}
    names: set[str] = set()
    for trial_id, curve in curves.items():
        if not isinstance(trial_id, str):
            raise StorageInputError(
                "trial ids must be strings",
                expected="a str key such as 't-0042'",
                received=f"{trial_id!r} ({type(trial_id).__name__})",
                fix="use Trial.id, or str(...) of your id, as the key",
            )
        if isinstance(curve, (str, bytes, Mapping)) or not isinstance(curve, Sequence):
            raise StorageInputError(
                f"the curve of trial {trial_id!r} is not a list of per-epoch points",
                expected=f"a list such as {_EXAMPLE}",
                received=f"{type(curve).__name__}: {curve!r:.80}",
                fix="wrap the points in a list, one dict per epoch",
            )
        batch[trial_id] = [
            _point(trial_id, index, point, names) for index, point in enumerate(curve)
        ]
        epochs = [epoch for epoch, _ in batch[trial_id]]
        if len(set(epochs)) != len(epochs):
            repeated = sorted({e for e in epochs if epochs.count(e) > 1})
            raise StorageInputError(
                f"the curve of trial {trial_id!r} has an epoch more than once",
                expected="one point per epoch",
                received=f"epochs {repeated} repeated",
                fix="keep one point per epoch (e.g. the last one logged)",
            )
    return batch


def _point(trial_id: str, index: int, point: Any, names: set[str]) -> tuple[int, dict[str, float]]:
    """One validated point; ``names`` caches the metric names already checked."""
    if not isinstance(point, Mapping):
        raise StorageInputError(
            f"{_where(trial_id, index)} is not a dict",
            expected="a dict such as {'epoch': 1, 'val_loss': 0.9}",
            received=f"{type(point).__name__}: {point!r:.80}",
            fix="give one dict per epoch with an 'epoch' key and metric values",
        )
    if "epoch" not in point:
        raise StorageInputError(
            f"{_where(trial_id, index)} has no 'epoch'",
            expected="a dict with an integer 'epoch' key, e.g. {'epoch': 1, 'val_loss': 0.9}",
            received=f"keys {sorted(map(str, point))}",
            fix="add the epoch number to every point",
        )
    epoch = point["epoch"]
    if not _is_number(epoch) or not float(epoch).is_integer():
        raise StorageInputError(
            f"the epoch of {_where(trial_id, index)} is not an integer",
            expected="an integer-valued number such as 3 or 3.0",
            received=f"{epoch!r} ({type(epoch).__name__})",
            fix="store whole epochs; keep fractional progress as a metric",
        )
    values: dict[str, float] = {}
    for metric, value in point.items():
        if metric == "epoch":
            continue
        if metric not in names:
            _check_name(trial_id, index, metric)
            names.add(metric)
        if not _is_number(value):
            raise StorageInputError(
                f"metric {metric!r} of {_where(trial_id, index)} is not a number",
                expected="an int or float (float('nan') for a missing value)",
                received=f"{value!r:.80} ({type(value).__name__})",
                fix=f"convert {metric!r} to float, e.g. float(loss.item())",
            )
        values[metric] = float(value)
    return int(epoch), values


def _is_number(value: object) -> bool:
    kind = type(value)
    if kind is float or kind is int:  # the common case, fast
        return True
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def _check_name(trial_id: str, index: int, metric: object) -> None:
    if not isinstance(metric, str) or metric[:1] in ("", ".") or metric == "trial" or "/" in metric:
        raise StorageInputError(
            f"{_where(trial_id, index)} has an invalid metric name",
            expected="a str like 'val_loss': not 'trial', no '/', no leading '.'",
            received=repr(metric),
            fix="rename the metric",
        )


def _where(trial_id: str, index: int) -> str:
    return f"point {index} of trial {trial_id!r}"


def _to_block(curves: Mapping[str, _Points]) -> _Block:
    """Arrays of one batch: NaN wherever a trial lacks an epoch or a metric."""
    epoch = np.unique(
        np.fromiter((e for points in curves.values() for e, _ in points), dtype=np.int64)
    )
    column = {int(e): j for j, e in enumerate(epoch)}
    shape = (len(curves), len(epoch))
    metrics: dict[str, npt.NDArray[np.float64]] = {}
    for row, points in enumerate(curves.values()):
        for e, values in points:
            for metric, value in values.items():
                if metric not in metrics:
                    metrics[metric] = np.full(shape, np.nan)
                metrics[metric][row, column[e]] = value
    return _Block(np.array(list(curves), dtype=np.str_), epoch, metrics)


def _concat(blocks: Sequence[_Block]) -> _Block:
    """Blocks stacked along ``trial``, outer-joined on ``epoch`` (NaN where a block lacks one)."""
    if not blocks:
        return _Block(np.array([], dtype=np.str_), np.array([], dtype=np.int64), {})
    trial = np.concatenate([block.trial for block in blocks])
    epoch = np.unique(np.concatenate([block.epoch for block in blocks]))
    metrics: dict[str, npt.NDArray[np.float64]] = {}
    start = 0
    for block in blocks:
        rows = slice(start, start + len(block.trial))
        columns = np.searchsorted(epoch, block.epoch)
        for metric, values in block.metrics.items():
            if metric not in metrics:
                metrics[metric] = np.full((len(trial), len(epoch)), np.nan)
            metrics[metric][rows, columns] = values
        start = rows.stop
    return _Block(trial, epoch, metrics)


def _decode(name: str, files: Mapping[str, bytes]) -> _Block:
    """The arrays of one part, from its files (Zarr key -> bytes)."""
    if ".zmetadata" not in files:
        raise FileNotFoundError(f"{name}/.zmetadata")  # deleted since listed
    buffers: dict[str, Any] = {
        key: zarr.buffer.cpu.Buffer.from_bytes(data) for key, data in files.items()
    }
    store = zarr.storage.MemoryStore(buffers, read_only=True)
    with xr.open_zarr(store, consolidated=True, chunks=None, zarr_format=2) as dataset:
        dataset.load()
        return _Block(
            trial=np.asarray(dataset["trial"].values, dtype=np.str_),
            epoch=np.asarray(dataset["epoch"].values, dtype=np.int64),
            metrics={
                str(metric): np.asarray(values.values, dtype=np.float64)
                for metric, values in dataset.data_vars.items()
            },
        )


def _parse_marker(name: str, data: bytes) -> list[str]:
    """The trial ids a commit marker lists."""
    try:
        marker = json.loads(data)
        known = marker["format"] == COMMIT_FORMAT and marker["version"] <= CURVES_VERSION
        ids = marker["trial_ids"] if known else None
    except (ValueError, KeyError, TypeError):
        known, ids = False, None
    if not known or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise StorageError(
            f"the commit marker {name!r} is not one this version can read",
            expected=f'JSON {{"format": "{COMMIT_FORMAT}", "version": <= {CURVES_VERSION}, '
            '"trial_ids": [...]}',
            received=f"{data[:120]!r}",
            fix="upgrade morphml_dask if a newer one wrote it; else delete the marker and its part",
        )
    return ids
