"""The append-only Parquet trials table: one row per finished trial, exactly once by id.

The table is a part log (`morphml_dask.storage._partlog`) in ``<experiment>/trials/`` whose
parts are immutable Parquet files, one per append, written whole or not at all; `TrialsCodec`
encodes them. Rows are built from `TrialRecord` values and read back as records or as a
DataFrame (`morphml_dask.storage._records`); the schema and its versions are in
`morphml_dask.storage._schema`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from morphml_dask.exceptions import StorageError, StorageInputError
from morphml_dask.storage._partlog import LEFTOVER_AGE_S, PART_FILE, PartCodec, PartLog
from morphml_dask.storage._records import encode_records, table_frame, table_records
from morphml_dask.storage._schema import SCHEMA, Row, migrate, misfit, open_part

if TYPE_CHECKING:
    import pandas as pd

    from morphml_dask.space import Candidate
    from morphml_dask.storage._fs import Location
    from morphml_dask.trial import TrialRecord

__all__ = ["TrialsCodec", "TrialsTable"]


class TrialsTable:
    """Finished trials, appended exactly once by id and read as records or a DataFrame.

    Parameters
    ----------
    location
        The experiment; the parts live in ``location.path("trials")``.

    Notes
    -----
    One instance is safe to share between threads; it reads only the parts that appeared
    since its last call (see `PartLog`). Two processes that append the same id at the same
    moment may both store it; every read keeps the first occurrence in part order.
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        self.log = PartLog(location, "trials", TrialsCodec())
        # Candidates decoded so far, by their JSON: parts never change, so neither do they.
        self._archs: dict[str, Candidate] = {}

    def __repr__(self) -> str:
        return f"TrialsTable({self.location.url_of('trials')!r})"

    def append(self, records: Sequence[TrialRecord]) -> int:
        """Store the records whose trial id is new, as one part; return how many were written.

        Records whose id is stored already, or appeared earlier in ``records``, are skipped.

        Raises
        ------
        StorageInputError
            When ``records`` is not a sequence of `TrialRecord` or a field has the wrong type.
        """
        return self.log.append(encode_records(records))

    def records(self) -> list[TrialRecord]:
        """Every trial once, in write order."""
        return table_records(self.log.read(), self._archs)

    def record(self, trial_id: str) -> TrialRecord:
        """The trial ``trial_id``.

        Raises
        ------
        StorageInputError
            When no trial of that id is stored.
        """
        if isinstance(trial_id, str):
            table = self.log.read()
            found = table.filter(pc.equal(table["trial_id"], trial_id))
            if found.num_rows:
                return table_records(found, self._archs)[0]
        raise StorageInputError(
            f"no trial {trial_id!r} in this store",
            expected="an id from store.trials()['trial_id']",
            received=repr(trial_id),
            fix="pick a stored trial, e.g. store.best(1)['trial_id'].iloc[0]",
        )

    def read(self) -> pd.DataFrame:
        """Every trial once, in write order, with one float column per metric."""
        return table_frame(self.log.read())

    def ids(self) -> set[str]:
        """The trial ids stored."""
        return self.log.ids()

    def parts(self) -> list[str]:
        """The names of the Parquet parts, oldest first."""
        return self.log.parts()

    def compact(self, leftover_age: float = LEFTOVER_AGE_S) -> int:
        """Fold every part into one; return how many parts were removed (see `PartLog.compact`)."""
        return self.log.compact(leftover_age)


# -- the codec -----------------------------------------------------------------------------


class TrialsCodec(PartCodec[Row, pa.Table]):
    """Trials-table rows as Parquet file parts, migrated to `SCHEMA` when read."""

    suffix: ClassVar[str] = ".parquet"
    folder: ClassVar[bool] = False

    def build(self, items: Mapping[str, Row]) -> pa.Table:
        return pa.Table.from_pylist(list(items.values()), schema=SCHEMA)

    def encode(self, block: pa.Table) -> dict[str, bytes]:
        buffer = io.BytesIO()
        pq.write_table(block.replace_schema_metadata(SCHEMA.metadata), buffer)
        return {PART_FILE: buffer.getvalue()}

    def decode(self, name: str, files: Mapping[str, bytes]) -> pa.Table:
        part, version = open_part(files[PART_FILE], name)
        return migrate(part.read(), version)

    def committed_ids(self, name: str, data: bytes) -> list[str]:
        part, version = open_part(data, name)
        if "trial_id" not in part.schema_arrow.names:
            raise misfit(part.read(), version, KeyError("trial_id"))
        ids: list[str] = part.read(columns=["trial_id"]).column(0).to_pylist()
        return ids

    def ids(self, block: pa.Table) -> list[str]:
        ids: list[str] = block.column("trial_id").to_pylist()
        return ids

    def concat(self, blocks: Sequence[pa.Table]) -> pa.Table:
        return pa.concat_tables([SCHEMA.empty_table(), *blocks])

    def take(self, block: pa.Table, rows: Sequence[int]) -> pa.Table:
        return block.take(pa.array(rows, pa.int64()))

    def vanishing(self, url: str, attempts: int) -> StorageError:
        return StorageError(
            f"the trials parts under {url} kept vanishing while being read",
            expected="parts that stay in place long enough to read them",
            received=f"a part deleted during each of {attempts} attempts",
            fix="stop the processes compacting this table in a loop, then read again",
        )
