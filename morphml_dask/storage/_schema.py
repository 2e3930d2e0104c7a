"""The trials table's schema, its versions and their migrations.

Each Parquet part of the trials table records the layout it was written with under the
Parquet key-value metadata key ``morphml.schema_version``; parts of older versions are migrated
when read, parts of newer versions are refused with a message that says to upgrade.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from morphml_dask.exceptions import StorageError

__all__ = ["COLUMNS", "SCHEMA", "SCHEMA_VERSION", "Row", "migrate", "misfit", "open_part"]

SCHEMA_VERSION = 3
"""The layout the trials table writes; it reads this version and every older one."""

VERSION_KEY = b"morphml.schema_version"

SCHEMA = pa.schema(
    [
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("fingerprint", pa.string(), nullable=False),
        pa.field("arch", pa.string(), nullable=False),
        pa.field("budget", pa.int64(), nullable=False),
        pa.field("rung", pa.int64(), nullable=False),
        pa.field("parent_id", pa.string()),
        pa.field("parent_budget", pa.int64(), nullable=False),
        pa.field("mutation", pa.string()),
        pa.field("inherited_fraction", pa.float64()),
        pa.field("epochs_trained", pa.int64(), nullable=False),
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

Row = dict[str, Any]
"""One validated row of the trials table: a value for each of `COLUMNS`."""


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


def _v2_to_v3(table: pa.Table) -> pa.Table:
    """Version 2 (before children inherited weights across architectures) called
    ``parent_id`` ``parent``, and every parent was a promotion: the trial trained
    ``budget - parent_budget`` epochs."""
    if "parent" in table.column_names:
        table = table.rename_columns(
            ["parent_id" if name == "parent" else name for name in table.column_names]
        )
    n, promoted = table.num_rows, pc.is_valid(table.column("parent_id"))
    if "mutation" not in table.column_names:
        table = table.append_column("mutation", pa.nulls(n, pa.string()))
    if "inherited_fraction" not in table.column_names:
        fraction = pc.if_else(promoted, pa.scalar(1.0), pa.scalar(None, pa.float64()))
        table = table.append_column("inherited_fraction", fraction)
    if "epochs_trained" not in table.column_names:
        continued = pc.if_else(promoted, table.column("parent_budget"), 0)
        trained = pc.max_element_wise(pc.subtract(table.column("budget"), continued), 0)
        table = table.append_column("epochs_trained", trained.cast(pa.int64()))
    return table


# _MIGRATIONS[v] turns a version-v table into a version-(v + 1) table.
_MIGRATIONS: dict[int, Callable[[pa.Table], pa.Table]] = {
    0: _v0_to_v1,
    1: _v1_to_v2,
    2: _v2_to_v3,
}


def migrate(table: pa.Table, version: int) -> pa.Table:
    """Bring a table written at schema ``version`` to `SCHEMA` (columns ordered and typed)."""
    try:
        migrated = table
        for step in range(version, SCHEMA_VERSION):
            migrated = _MIGRATIONS[step](migrated)
        return migrated.select(list(COLUMNS)).cast(SCHEMA)
    except (KeyError, ValueError, pa.ArrowException) as error:
        raise misfit(table, version, error) from error  # the part as it was written


def misfit(table: pa.Table, version: int, error: Exception) -> StorageError:
    """The error for a part whose columns do not fit `SCHEMA` once migrated."""
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


def open_part(data: bytes, path: str) -> tuple[pq.ParquetFile, int]:
    """The Parquet file in ``data`` and the schema version it was written at."""
    try:
        part = pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as error:
        raise StorageError(
            f"the trials part {path} is not a Parquet file",
            expected="a Parquet part written by morphml_dask's trials table",
            received=f"{type(error).__name__}: {error}",
            fix="remove the foreign file from the trials folder",
        ) from error
    return part, _parse_version(part.metadata.metadata, path)
