"""The append-only Parquet trials table: one row per finished trial, exactly once by id.

The table is a folder ``<experiment>/trials/`` of immutable Parquet parts. Each `append`
writes one new part, whole or not at all (`Location.write_atomic`), so a reader never sees a
half-written row and no part is ever modified. A trial id is stored once: `append` drops ids
it already holds. Two processes appending the same id at the same moment can both write it
(nothing locks an object store); `read` keeps the first occurrence in part-name order, so
every reader sees each id exactly once. `compact` folds the parts into one.

Each part records the layout it was written with under the Parquet key-value metadata key
``morphml.schema_version``; parts of older versions are migrated when read, parts of newer
versions are refused with a message that says to upgrade.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import numbers
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from morphml_dask.exceptions import StorageError
from morphml_dask.storage._fs import new_part_name

if TYPE_CHECKING:
    from morphml_dask.storage._fs import Location
    from morphml_dask.trial import Trial, TrialResult

__all__ = [
    "COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TrialsTable",
    "decode_metrics",
    "encode_metrics",
    "migrate",
    "trial_row",
]

SCHEMA_VERSION = 2
"""The layout `TrialsTable` writes; it reads this version and every older one."""

VERSION_KEY = b"morphml.schema_version"

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

SCHEMA = pa.schema(
    [
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("fingerprint", pa.string(), nullable=False),
        pa.field("arch", pa.string(), nullable=False),
        pa.field("budget", pa.int64(), nullable=False),
        pa.field("rung", pa.int64(), nullable=False),
        pa.field("parent", pa.string()),
        pa.field("parent_budget", pa.int64(), nullable=False),
        pa.field("state", pa.string(), nullable=False),
        pa.field("metrics", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("error_kind", pa.string()),
        pa.field("worker", pa.string()),
        pa.field("device", pa.string()),
        pa.field("job_id", pa.string()),
        pa.field("start_time", pa.float64()),
        pa.field("end_time", pa.float64()),
        pa.field("attempt", pa.int64(), nullable=False),
        pa.field("reused", pa.bool_(), nullable=False),
    ],
    metadata={VERSION_KEY: str(SCHEMA_VERSION).encode()},
)
"""The columns of the trials table, in order, at `SCHEMA_VERSION`."""

COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)
_FIX_ROWS = "build rows with trial_row(trial, result, ...) from morphml_dask.storage"


# -- rows ----------------------------------------------------------------------------------


def encode_metrics(metrics: Mapping[str, float]) -> str:
    """Metrics as portable JSON: non-finite values become the strings "nan", "inf", "-inf"."""
    out: dict[str, float | str] = {}
    for name, value in metrics.items():
        number = float(value)
        if math.isfinite(number):
            out[str(name)] = number
        else:
            out[str(name)] = "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
    return json.dumps(out, sort_keys=True, allow_nan=False)


def decode_metrics(text: str) -> dict[str, float]:
    """Read back what `encode_metrics` wrote.

    Raises
    ------
    StorageError
        When ``text`` is not a JSON object of numbers and "nan" / "inf" / "-inf" strings.
    """
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        return {
            str(k): _NON_FINITE[v] if isinstance(v, str) else _as_number(v) for k, v in data.items()
        }
    except (ValueError, TypeError, KeyError) as error:
        raise StorageError(
            "malformed metrics JSON in the trials table",
            expected='a JSON object of numbers, e.g. {"accuracy": 0.91, "loss": "nan"}',
            received=f"{text!r:.200} ({type(error).__name__}: {error})",
            fix="encode metrics with encode_metrics(mapping) or build rows with trial_row",
        ) from error


def _refuse_constant(token: str) -> float:
    raise ValueError(f"{token} is not portable JSON; write it as a string")


def _as_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def trial_row(
    trial: Trial,
    result: TrialResult,
    *,
    worker: str | None = None,
    device: str | None = None,
    job_id: str | None = None,
    start_time: float | None = None,
    end_time: float | None = None,
    attempt: int = 1,
    reused: bool = False,
) -> dict[str, Any]:
    """The trials-table row of a finished trial.

    Parameters
    ----------
    trial, result
        What was asked and what came back; ``result.trial_id`` must be ``trial.id``.
    worker, device
        Where it ran, e.g. the Dask worker address and ``"cuda:0"``.
    job_id
        The batch job the worker ran in (``SLURM_JOB_ID``), if any.
    start_time, end_time
        Unix seconds.
    attempt
        1 for the first run, more when the driver ran it again (a lost worker, an
        infrastructure failure).
    reused
        True when the result was copied from an earlier trial with the same fingerprint and
        budget instead of being trained.
    """
    if result.trial_id != trial.id:
        raise StorageError(
            "the result belongs to another trial",
            expected=f"a TrialResult with trial_id {trial.id!r}",
            received=f"trial_id {result.trial_id!r}",
            fix="pair each trial with its own result",
        )
    return {
        "trial_id": trial.id,
        "fingerprint": trial.arch.fingerprint,
        "arch": json.dumps(trial.arch.to_dict(), sort_keys=True),
        "budget": trial.budget,
        "rung": trial.rung,
        "parent": trial.parent,
        "parent_budget": trial.parent_budget,
        "state": result.state.value,
        "metrics": encode_metrics(result.metrics),
        "error": result.error,
        "error_kind": result.error_kind,
        "worker": worker,
        "device": device,
        "job_id": job_id,
        "start_time": start_time,
        "end_time": end_time,
        "attempt": attempt,
        "reused": reused,
    }


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_float(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


_CHECKS: dict[pa.DataType, tuple[Callable[[object], bool], str]] = {
    pa.string(): (lambda v: isinstance(v, str), "a str"),
    pa.int64(): (_is_int, "an int"),
    pa.float64(): (_is_float, "a float (unix seconds)"),
    pa.bool_(): (lambda v: isinstance(v, (bool, np.bool_)), "a bool"),
}


def _validate(rows: Sequence[Mapping[str, Any]]) -> None:
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise StorageError(
                f"trial row {index} is not a mapping",
                expected="a dict with the trials table's columns",
                received=f"{type(row).__name__}",
                fix=_FIX_ROWS,
            )
        missing = [c for c in COLUMNS if c not in row]
        unknown = sorted(str(k) for k in row if k not in SCHEMA.names)
        if missing or unknown:
            raise StorageError(
                f"trial row {index} has the wrong columns",
                expected=f"exactly the columns {', '.join(COLUMNS)}",
                received=f"missing {missing}, unknown {unknown}",
                fix=_FIX_ROWS,
            )
        _check_values(row, index)


def _check_values(row: Mapping[str, Any], index: int) -> None:
    for field in SCHEMA:
        value = row[field.name]
        check, wanted = _CHECKS[field.type]
        if (value is None and field.nullable) or (value is not None and check(value)):
            continue
        raise StorageError(
            f"column {field.name!r} of trial row {index} has the wrong type",
            expected=f"{wanted} or None" if field.nullable else wanted,
            received=f"{value!r:.100} ({type(value).__name__})",
            fix=f"convert the value, or {_FIX_ROWS}",
        )
    if row["state"] not in ("complete", "fail"):
        raise StorageError(
            f"trial row {index} has an unknown state",
            expected='"complete" or "fail" (TrialState.COMPLETE / FAIL .value)',
            received=repr(row["state"]),
            fix="store only finished trials",
        )
    decode_metrics(row["metrics"])


# -- versions ------------------------------------------------------------------------------


def _v0_to_v1(table: pa.Table) -> pa.Table:
    """Version 0 (before multi-fidelity parents and reuse) lacked three columns."""
    n = table.num_rows
    added = {
        "parent_budget": pa.array([0] * n, pa.int64()),
        "error_kind": pa.nulls(n, pa.string()),
        "reused": pa.array([False] * n, pa.bool_()),
    }
    for name, column in added.items():
        if name not in table.column_names:
            table = table.append_column(name, column)
    return table


def _v1_to_v2(table: pa.Table) -> pa.Table:
    """Version 1 (before batch-job workers were recorded) lacked ``job_id``."""
    if "job_id" in table.column_names:
        return table
    return table.append_column("job_id", pa.nulls(table.num_rows, pa.string()))


# _MIGRATIONS[v] turns a version-v table into a version-(v + 1) table.
_MIGRATIONS: dict[int, Callable[[pa.Table], pa.Table]] = {0: _v0_to_v1, 1: _v1_to_v2}


def migrate(table: pa.Table, version: int) -> pa.Table:
    """Bring a table written at schema ``version`` to `SCHEMA` (columns ordered and typed)."""
    migrated = table
    for step in range(version, SCHEMA_VERSION):
        migrated = _MIGRATIONS[step](migrated)
    try:
        return migrated.select(list(COLUMNS)).cast(SCHEMA)
    except (KeyError, ValueError, pa.ArrowException) as error:
        raise _misfit(table, version, error) from error  # the part as it was written


def _misfit(table: pa.Table, version: int, error: Exception) -> StorageError:
    return StorageError(
        f"a trials part of schema version {version} does not fit the trials table",
        expected=f"the columns {', '.join(COLUMNS)} with the types of SCHEMA",
        received=f"{table.schema.to_string(show_schema_metadata=False)!r:.300} "
        f"({type(error).__name__}: {error})",
        fix="remove the foreign Parquet file from the trials folder",
    )


def _parse_version(metadata: Mapping[bytes, bytes] | None, path: str) -> int:
    raw = (metadata or {}).get(VERSION_KEY)
    try:
        version = int((raw or b"").decode())
        if version < 0:
            raise ValueError(version)
    except (UnicodeDecodeError, ValueError):
        raise StorageError(
            f"the trials part {path} has no readable schema version",
            expected=f"key-value metadata {VERSION_KEY!r} holding a version from 0 to "
            f"{SCHEMA_VERSION}",
            received=repr(raw),
            fix="remove the foreign Parquet file from the trials folder",
        ) from None
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"the trials part {path} was written by schema version {version}; this "
            f"morphml_dask reads versions up to {SCHEMA_VERSION}; upgrade morphml_dask",
            expected=f"schema version 0 to {SCHEMA_VERSION}",
            received=f"schema version {version}",
            fix="pip install -U morphml_dask",
        )
    return version


def _open_part(data: bytes, path: str) -> tuple[pq.ParquetFile, int]:
    try:
        part = pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as error:
        raise StorageError(
            f"the trials part {path} is not a Parquet file",
            expected="a Parquet part written by TrialsTable",
            received=f"{type(error).__name__}: {error}",
            fix="remove the foreign file from the trials folder",
        ) from error
    return part, _parse_version(part.metadata.metadata, path)


def _first_occurrences(table: pa.Table) -> pa.Table:
    seen: set[str] = set()
    keep = []
    for trial_id in table.column("trial_id").to_pylist():
        keep.append(trial_id not in seen)
        seen.add(trial_id)
    return table if all(keep) else table.filter(pa.array(keep, pa.bool_()))


# -- the table -----------------------------------------------------------------------------


class TrialsTable:
    """Append-only, exactly-once-by-id Parquet table of finished trials.

    Parameters
    ----------
    location
        The experiment; the parts live in ``location.path("trials")``.

    Notes
    -----
    One instance is safe to share between threads. It keeps in memory the ids it has
    indexed and the (immutable) parts it has read, and on each call reads only the parts
    that appeared since: `append` reads the new parts' ``trial_id`` column, `read` the new
    parts whole. So both stay cheap as the table grows.

    Exactly once holds per instance and, for readers, across processes: two processes that
    append the same id at the same moment may both store it (an object store offers no
    lock), and `read` keeps the first occurrence in part-name order.
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        self.folder = location.path("trials")
        self._lock = threading.Lock()
        self._ids: set[str] = set()
        self._indexed: set[str] = set()
        self._tables: dict[str, pa.Table] = {}

    def __repr__(self) -> str:
        return f"TrialsTable({self.location.url_of('trials')!r})"

    def parts(self) -> list[str]:
        """The Parquet parts, oldest first."""
        return self.location.list(self.folder, ".parquet")

    def ids(self) -> set[str]:
        """The trial ids stored."""
        with self._lock:
            self._refresh_ids()
            return set(self._ids)

    def append(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store the rows whose trial id is new, as one part; return how many were written.

        Rows whose ``trial_id`` is already stored, or appeared earlier in ``rows``, are
        dropped. Nothing is written when no row is left.

        Raises
        ------
        StorageError
            When a row lacks a column, has an unknown one or a value of the wrong type.
        """
        _validate(rows)
        with self._lock:
            self._refresh_ids()
            fresh: dict[str, Mapping[str, Any]] = {}
            for row in rows:
                if row["trial_id"] not in self._ids:
                    fresh.setdefault(row["trial_id"], row)
            if not fresh:
                return 0
            table = pa.Table.from_pylist([dict(r) for r in fresh.values()], schema=SCHEMA)
            path = self._write(table)
            self._ids.update(fresh)
            self._indexed.add(path)
            self._tables[path] = table
            return len(fresh)

    def read(self) -> pd.DataFrame:
        """Every trial once, oldest part first, with one float column per metric.

        The ``metrics`` column keeps the JSON; each metric also gets a column of its own,
        named after it (``metric_<name>`` when the name is one of the fixed columns), NaN
        for trials that did not report it.
        """
        with self._lock:
            _, table = self._snapshot()
        frame: pd.DataFrame = table.to_pandas()
        if frame.empty:
            return frame
        decoded = [decode_metrics(text) for text in frame["metrics"]]
        taken = set(COLUMNS)
        columns: dict[str, list[float]] = {}
        for name in sorted({name for metrics in decoded for name in metrics}):
            column = name
            while column in taken:
                column = f"metric_{column}"
            taken.add(column)
            columns[column] = [metrics.get(name, math.nan) for metrics in decoded]
        if not columns:
            return frame
        expanded = pd.DataFrame(columns, index=frame.index, dtype="float64")
        return pd.concat([frame, expanded], axis=1)

    def compact(self) -> int:
        """Fold every part into one; return how many parts were removed.

        The new part is written whole before any old part is deleted, so a reader at any
        moment sees every row.
        """
        with self._lock:
            parts, table = self._snapshot()
            if len(parts) < 2:
                return 0
            path = self._write(table)
            # A crash here leaves the old parts beside the new one: their rows are duplicates
            # of the new part's, which `read` drops (it keeps one row per trial id).
            for old in parts:
                with contextlib.suppress(FileNotFoundError):  # another compaction took it
                    self.location.fs.rm_file(old)
                self._tables.pop(old, None)
            self._indexed = (self._indexed - set(parts)) | {path}
            self._tables[path] = table
            return len(parts)

    # -- internals -------------------------------------------------------------------------

    def _write(self, table: pa.Table) -> str:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        path = f"{self.folder}/{new_part_name('.parquet')}"
        self.location.write_atomic(path, buffer.getvalue())
        return path

    def _refresh_ids(self, attempts: int = 10) -> None:
        """Add the ids of the parts not indexed yet, reading only their trial_id column."""
        for _ in range(attempts):
            parts = self.parts()
            vanished = False
            for path in parts:
                if path in self._indexed:
                    continue
                try:
                    data = self.location.read(path)
                except FileNotFoundError:
                    # Compacted away after the listing: its rows are in a newer part.
                    vanished = True
                    continue
                part, version = _open_part(data, path)
                if "trial_id" not in part.schema_arrow.names:
                    raise _misfit(part.read(), version, KeyError("trial_id"))
                self._ids.update(part.read(columns=["trial_id"]).column(0).to_pylist())
                self._indexed.add(path)
            self._indexed &= set(parts)
            if not vanished:
                return
        raise _vanishing(self.folder, attempts)

    def _snapshot(self, attempts: int = 10) -> tuple[list[str], pa.Table]:
        """The parts listed and their rows, migrated, concatenated and deduplicated.

        A part can vanish between the listing and its read when another process compacts
        the table; its rows are then in a newer part, so list again.
        """
        for _ in range(attempts):
            parts = self.parts()
            try:
                tables = [self._load(path) for path in parts]
            except FileNotFoundError:
                continue
            self._tables = {p: t for p, t in self._tables.items() if p in parts}
            for path, table in zip(parts, tables, strict=True):
                if path not in self._indexed:
                    self._ids.update(table.column("trial_id").to_pylist())
                    self._indexed.add(path)
            table = pa.concat_tables([SCHEMA.empty_table(), *tables])
            return parts, _first_occurrences(table)
        raise _vanishing(self.folder, attempts)

    def _load(self, path: str) -> pa.Table:
        if path not in self._tables:
            part, version = _open_part(self.location.read(path), path)
            self._tables[path] = migrate(part.read(), version)
        return self._tables[path]


def _vanishing(folder: str, attempts: int) -> StorageError:
    return StorageError(
        f"the trials parts under {folder} kept vanishing while being read",
        expected="parts that stay in place long enough to read them",
        received=f"a part deleted during each of {attempts} attempts",
        fix="stop the processes compacting this table in a loop, then read again",
    )
