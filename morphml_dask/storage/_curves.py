"""Learning curves in Zarr: one store per committed batch, read back as one xarray Dataset.

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
"version": 1, "part": <part name>, "trial_ids": [...], "count": <number of trials>}``. A
``.zarr`` folder without a marker is a write that was interrupted (or is still running):
readers ignore it and `CurveStore.compact` deletes it once it is old (1 hour by default).
Part names sort by creation time, so sorted names give write order. A trial id found in two
committed parts (two processes appended it at the same moment, or a compaction is between its
commit and its deletes) counts once, from the first part.

Every append writes new files only, so any number of threads and processes can append at
once without corrupting each other. Only Zarr arrays and JSON are stored, no Python objects.
"""

from __future__ import annotations

import json
import numbers
import re
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
import zarr
import zarr.buffer
import zarr.storage

from morphml_dask.exceptions import StorageError
from morphml_dask.storage._fs import Location, new_part_name

__all__ = ["CurveStore"]

CURVES_FORMAT = "morphml.curves"
COMMIT_FORMAT = "morphml.curves.commit"
CURVES_VERSION = 1

_SUFFIX = ".zarr"
_MARKER = ".commit"
_PART_NAME = re.compile(r"part-(\d{20})-[0-9a-f]+\.zarr")
_FILE = re.compile(r"/(part-\d{20}-[0-9a-f]+\.zarr)/(.+)$")
_NEEDED = re.compile(r"\.zmetadata|\.zgroup|[^./][^/]*/[0-9.]+")
_TEMPORARY = re.compile(r"(part-(\d{20})-[0-9a-f]+\.zarr)\.commit\.tmp-[0-9a-f]+")
# Rows per Zarr chunk: a compacted part of 10,000 curves is two chunks per metric.
_TRIAL_CHUNK = 8192
_ATTEMPTS = 6
_EXAMPLE = "[{'epoch': 1, 'val_loss': 0.9, 'val_accuracy': 0.61}, {'epoch': 2, ...}]"

Curve = Sequence[Mapping[str, float]]
# A validated curve: (epoch, {metric: value}) per point, in the order given.
_Points = list[tuple[int, dict[str, float]]]


@dataclass
class _Block:
    """Curves as arrays: what one part holds, or what `read` returns."""

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
    Appends are exactly-once by trial id within one `CurveStore` (the ids it has seen, plus
    those its own appends are writing, are skipped). Two processes that append the same id at
    the same moment may both store it; `read` keeps the first.
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        self.folder = location.path("curves")
        self._lock = threading.Lock()
        self._markers_seen: set[str] = set()
        self._ids: set[str] = set()
        self._writing: set[str] = set()

    # -- public API ---------------------------------------------------------------------------

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
        """
        batch = _validate(curves)
        with self._lock:
            self._refresh()
            fresh = {
                trial_id: points
                for trial_id, points in batch.items()
                if trial_id not in self._ids and trial_id not in self._writing
            }
            self._writing.update(fresh)
        if not fresh:
            return 0
        try:
            name = self._write(_to_block(fresh))
            with self._lock:
                self._ids.update(fresh)
                self._markers_seen.add(name + _MARKER)
        finally:
            with self._lock:
                self._writing.difference_update(fresh)
        return len(fresh)

    def read(self) -> xr.Dataset:
        """All committed curves, loaded into memory, with dims ``(trial, epoch)``.

        Trials come in write order, each once; epochs are the sorted union of every part's.
        An empty store gives a Dataset with ``trial`` and ``epoch`` of length 0.
        """
        _, blocks = self._snapshot()
        return _merge(blocks).to_dataset()

    def ids(self) -> set[str]:
        """The trial ids stored (committed)."""
        with self._lock:
            self._refresh()
            return set(self._ids)

    def parts(self) -> list[str]:
        """Names of the committed parts, oldest first.

        ``location.url_of("curves", name)`` is a URL that `xarray.open_zarr` opens.
        """
        return [
            name[: -len(_MARKER)]
            for name in self._names()
            if name.endswith(_MARKER) and _PART_NAME.fullmatch(name[: -len(_MARKER)])
        ]

    def compact(self, leftover_age: float = 3600.0) -> int:
        """Merge the committed parts into one, then delete them and old uncommitted ones.

        The merged part is committed before anything is deleted, so a reader never misses a
        trial (in between, trials are in two parts and `read` keeps one).

        Parameters
        ----------
        leftover_age
            Uncommitted parts younger than this many seconds are kept: they may belong to an
            append still writing. Pass 0 only when no append is running.

        Returns
        -------
        int
            How many parts were removed, committed and uncommitted.
        """
        names_before = self._names()
        merged_names, blocks = self._snapshot()
        removed = 0
        if len(merged_names) > 1:
            merged = self._write(_merge(blocks))
            with self._lock:
                self._markers_seen.add(merged + _MARKER)
            # Markers first: from then on no reader opens a part that is being deleted.
            self._delete([name + _MARKER for name in merged_names])
            self._delete(merged_names)
            removed = len(merged_names)
        return removed + self._delete_leftovers(names_before, set(merged_names), leftover_age)

    # -- writing ------------------------------------------------------------------------------

    def _write(self, block: _Block) -> str:
        """Write ``block`` as a new part, then commit it; returns the part's name.

        xarray encodes the part in memory, then all its files are uploaded in one batch (in
        parallel on object stores, where Zarr's own writer makes ~120 requests in a row).
        """
        name = new_part_name(_SUFFIX)
        files: dict[str, Any] = {}
        chunks = (min(len(block.trial), _TRIAL_CHUNK), max(len(block.epoch), 1))
        block.to_dataset({"format": CURVES_FORMAT, "version": CURVES_VERSION}).to_zarr(
            zarr.storage.MemoryStore(files),
            mode="w-",
            consolidated=True,
            zarr_format=2,
            encoding={metric: {"chunks": chunks} for metric in block.metrics},
        )
        blobs = {self._path(f"{name}/{key}"): data.to_bytes() for key, data in files.items()}
        if self.location.is_local():
            for folder in {path.rsplit("/", 1)[0] for path in blobs}:
                self.location.fs.makedirs(folder, exist_ok=True)
        self.location.fs.pipe(blobs)
        ids = [str(trial_id) for trial_id in block.trial]
        marker = {
            "format": COMMIT_FORMAT,
            "version": CURVES_VERSION,
            "part": name,
            "trial_ids": ids,
            "count": len(ids),
        }
        self.location.write_atomic(self._path(name + _MARKER), json.dumps(marker).encode())
        return name

    # -- reading ------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return f"{self.folder}/{name}"

    def _names(self) -> list[str]:
        """Names of everything in the curves folder, sorted."""
        return [path.rsplit("/", 1)[-1] for path in self.location.list(self.folder)]

    def _refresh(self) -> None:
        """Add the ids of committed parts not seen yet; reads only their markers."""
        for _ in range(_ATTEMPTS):
            markers = [name + _MARKER for name in self.parts()]
            self._markers_seen.intersection_update(markers)
            new = [marker for marker in markers if marker not in self._markers_seen]
            if not new:
                return
            contents = self.location.fs.cat([self._path(m) for m in new], on_error="return")
            by_name = {str(path).rsplit("/", 1)[-1]: data for path, data in contents.items()}
            vanished = False
            for marker in new:
                data = by_name.get(marker)
                if data is None or isinstance(data, FileNotFoundError):
                    vanished = True  # compacted away since listed: its ids are in a newer part
                    continue
                if isinstance(data, BaseException):
                    raise StorageError(
                        f"cannot read the commit marker {marker!r}",
                        expected="a readable JSON file",
                        received=f"{type(data).__name__}: {data}",
                        fix=f"check access to {self.location.url_of('curves')}",
                    ) from data
                self._ids.update(_parse_marker(marker, data))
                self._markers_seen.add(marker)
            if not vanished:
                return
        raise _busy(self.location)

    def _snapshot(self) -> tuple[list[str], list[_Block]]:
        """The committed parts and their contents, all read while every one was committed."""
        for attempt in range(_ATTEMPTS):
            names = self.parts()
            try:
                blocks = self._load(names)
            except FileNotFoundError:
                time.sleep(0.05 * attempt)
                continue  # a compaction deleted a part since the listing
            # A compaction deletes a part's marker before its data: if every marker is still
            # there, every part was whole while we read it.
            if set(names) <= set(self.parts()):
                return names, blocks
        raise _busy(self.location)

    def _load(self, names: list[str]) -> list[_Block]:
        """The parts ``names``: all their files fetched in one listing and one batch, decoded.

        On object stores that is two rounds of parallel requests whatever the number of parts,
        where opening each part's URL with xarray costs ~16 requests in a row per part.
        """
        if not names:
            return []
        wanted = set(names)
        self.location.fs.invalidate_cache(self.folder)
        where: dict[str, tuple[str, str]] = {}
        for path in self.location.fs.find(self.folder):
            match = _FILE.search(str(path))
            # The consolidated metadata and the chunks: .zarray, .zattrs are in .zmetadata.
            if match and match.group(1) in wanted and _NEEDED.fullmatch(match.group(2)):
                where[str(path)] = (match.group(1), match.group(2))
        contents = self.location.fs.cat(list(where)) if where else {}
        files: dict[str, dict[str, Any]] = {name: {} for name in names}
        for path, data in contents.items():
            part, key = where[str(path)]
            files[part][key] = zarr.buffer.cpu.Buffer.from_bytes(data)
        return [_decode(name, files[name]) for name in names]

    # -- deleting -----------------------------------------------------------------------------

    def _delete(self, names: list[str]) -> None:
        if not names:
            return
        paths = [self._path(name) for name in names]
        try:
            self.location.fs.rm(paths, recursive=True)
        except FileNotFoundError:  # another compaction got there first
            for path in paths:
                with suppress(FileNotFoundError):
                    self.location.fs.rm(path, recursive=True)
        self.location.fs.invalidate_cache(self.folder)

    def _delete_leftovers(self, names: list[str], committed: set[str], age: float) -> int:
        """Delete uncommitted parts and marker temporaries older than ``age`` seconds."""
        listed = set(names)
        now = time.time_ns()

        def old(created: str) -> bool:
            return (now - int(created)) / 1e9 >= age

        parts = [
            name
            for name in names
            if (match := _PART_NAME.fullmatch(name))
            and name + _MARKER not in listed
            and name not in committed
            and old(match.group(1))
        ]
        temporaries = [
            name for name in names if (match := _TEMPORARY.fullmatch(name)) and old(match.group(2))
        ]
        if parts:  # a part committed since the first listing is no leftover
            now_committed = set(self.parts())
            parts = [name for name in parts if name not in now_committed]
        self._delete(parts + temporaries)
        return len(parts)


# -- validation and conversion --------------------------------------------------------------


def _validate(curves: Mapping[str, Curve]) -> dict[str, _Points]:
    """Check every curve and return them as (epoch, {metric: value}) points."""
    if not isinstance(curves, Mapping):
        raise StorageError(
            "curves must be a mapping from trial id to curve",
            expected=f"a dict such as {{'t-1': {_EXAMPLE}}}",
            received=f"{type(curves).__name__}",
            fix="pass {trial_id: list of per-epoch dicts}",
        )
    batch: dict[str, _Points] = {}
    names: set[str] = set()
    for trial_id, curve in curves.items():
        if not isinstance(trial_id, str):
            raise StorageError(
                "trial ids must be strings",
                expected="a str key such as 't-0042'",
                received=f"{trial_id!r} ({type(trial_id).__name__})",
                fix="use Trial.id, or str(...) of your id, as the key",
            )
        if isinstance(curve, (str, bytes, Mapping)) or not isinstance(curve, Sequence):
            raise StorageError(
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
            raise StorageError(
                f"the curve of trial {trial_id!r} has an epoch more than once",
                expected="one point per epoch",
                received=f"epochs {repeated} repeated",
                fix="keep one point per epoch (e.g. the last one logged)",
            )
    return batch


def _point(trial_id: str, index: int, point: Any, names: set[str]) -> tuple[int, dict[str, float]]:
    """One validated point; ``names`` caches the metric names already checked."""
    if not isinstance(point, Mapping):
        raise StorageError(
            f"{_where(trial_id, index)} is not a dict",
            expected="a dict such as {'epoch': 1, 'val_loss': 0.9}",
            received=f"{type(point).__name__}: {point!r:.80}",
            fix="give one dict per epoch with an 'epoch' key and metric values",
        )
    if "epoch" not in point:
        raise StorageError(
            f"{_where(trial_id, index)} has no 'epoch'",
            expected="a dict with an integer 'epoch' key, e.g. {'epoch': 1, 'val_loss': 0.9}",
            received=f"keys {sorted(map(str, point))}",
            fix="add the epoch number to every point",
        )
    epoch = point["epoch"]
    if not _is_number(epoch) or not float(epoch).is_integer():
        raise StorageError(
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
            raise StorageError(
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
        raise StorageError(
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


def _merge(blocks: list[_Block]) -> _Block:
    """Blocks stacked along ``trial`` (outer join on ``epoch``), each trial id once (first)."""
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
    _, first = np.unique(trial, return_index=True)
    if len(first) < len(trial):
        keep = np.sort(first)
        trial = trial[keep]
        metrics = {metric: values[keep] for metric, values in metrics.items()}
    return _Block(trial, epoch, metrics)


def _decode(name: str, files: dict[str, Any]) -> _Block:
    """The arrays of one part, from its files (Zarr key -> buffer)."""
    if ".zmetadata" not in files:
        raise FileNotFoundError(f"{name}/.zmetadata")  # deleted since listed
    store = zarr.storage.MemoryStore(files, read_only=True)
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


def _busy(location: Location) -> StorageError:
    return StorageError(
        "the curve parts kept changing or vanishing while being read",
        expected="each committed part (with a .commit marker) to have its .zarr folder",
        received=f"{_ATTEMPTS} attempts at {location.url_of('curves')} failed",
        fix="retry when compaction has finished; if it persists, delete the .commit marker "
        "of a part whose .zarr folder is missing",
    )
