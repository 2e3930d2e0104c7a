"""Finished trials as rows of the trials table, and back: `TrialRecord` <-> `Row`.

The store takes and gives `TrialRecord` values; only this module knows that a row keeps the
candidate (architecture or configuration) as JSON and the metrics as portable JSON
(non-finite values as strings).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from morphml_dask.exceptions import StorageError, StorageInputError
from morphml_dask.space import ArchGraph, Candidate, Config, candidate_from_dict
from morphml_dask.storage._schema import COLUMNS, SCHEMA, Row
from morphml_dask.trial import Trial, TrialRecord, TrialResult, TrialState

__all__ = [
    "decode_metrics",
    "encode_metrics",
    "encode_records",
    "record_row",
    "row_record",
    "table_frame",
    "table_records",
    "validate_rows",
]

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_FIX_RECORDS = "store TrialRecord(trial, result, worker=..., ...) values with store.append_records"


# -- metrics -------------------------------------------------------------------------------


def encode_metrics(metrics: Mapping[str, float]) -> str:
    """Metrics as portable JSON: non-finite values become the strings "nan", "inf", "-inf".

    Raises
    ------
    StorageInputError
        When ``metrics`` is not a mapping of names to numbers.
    """
    if not isinstance(metrics, Mapping):
        raise StorageInputError(
            "the metrics of a result are not a mapping",
            expected='a dict of metric names to numbers, e.g. {"val_accuracy": 0.91}',
            received=f"{type(metrics).__name__}: {metrics!r:.80}",
            fix="build results with TrialResult.complete(trial_id, metrics)",
        )
    out: dict[str, float | str] = {}
    for name, value in metrics.items():
        if not _is_float(value):
            raise StorageInputError(
                f"metric {name!r} of a result is not a number",
                expected="an int or float (float('nan') for a missing value)",
                received=f"{value!r:.80} ({type(value).__name__})",
                fix=f"convert {name!r} to float, e.g. float(loss.item())",
            )
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
            fix="encode metrics with encode_metrics(mapping) or build rows with record_row",
        ) from error


def _refuse_constant(token: str) -> float:
    raise ValueError(f"{token} is not portable JSON; write it as a string")


def _as_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


# -- records to rows -----------------------------------------------------------------------


def encode_records(records: Sequence[TrialRecord]) -> dict[str, Row]:
    """The validated rows of ``records`` by trial id; an id repeated keeps its first record.

    Raises
    ------
    StorageInputError
        When ``records`` is not a sequence of `TrialRecord`, or a field has the wrong type.
    """
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise StorageInputError(
            "records must be a sequence of TrialRecord",
            expected="a list of morphml_dask.trial.TrialRecord",
            received=f"{type(records).__name__}",
            fix="pass [TrialRecord(trial, result, ...), ...], one per finished trial",
        )
    rows = [record_row(record, index) for index, record in enumerate(records)]
    validate_rows(rows)
    unique: dict[str, Row] = {}
    for row in rows:
        unique.setdefault(row["trial_id"], row)
    return unique


def record_row(record: TrialRecord, index: int = 0) -> Row:
    """The trials-table row of ``record`` (the ``index``-th of a batch, for messages).

    The row is not validated: `validate_rows` checks its values.
    """
    if not isinstance(record, TrialRecord):
        raise StorageInputError(
            f"record {index} is not a TrialRecord",
            expected="a morphml_dask.trial.TrialRecord",
            received=f"{type(record).__name__}: {record!r:.80}",
            fix=f"wrap each finished trial: {_FIX_RECORDS}",
        )
    trial, result = record.trial, record.result
    arch = getattr(trial, "arch", None)
    if not (isinstance(trial, Trial) and isinstance(result, TrialResult)) or not isinstance(
        arch, ArchGraph | Config
    ):
        raise StorageInputError(
            f"record {index} does not hold a Trial of an ArchGraph or Config and a TrialResult",
            expected="TrialRecord(trial: Trial, result: TrialResult) with trial.arch an ArchGraph "
            "or a Config",
            received=f"trial {type(trial).__name__}, arch {type(arch).__name__}, "
            f"result {type(result).__name__}",
            fix="record the Trial the optimizer asked for and the TrialResult that came back",
        )
    state = result.state.value if isinstance(result.state, TrialState) else result.state
    return {
        "trial_id": trial.id,
        "fingerprint": arch.fingerprint,
        "arch": json.dumps(arch.to_dict(), sort_keys=True),
        "budget": trial.budget,
        "rung": trial.rung,
        "parent_id": trial.parent,
        "parent_budget": trial.parent_budget,
        "mutation": trial.mutation,
        "inherited_fraction": record.inherited_fraction,
        "epochs_trained": trial.epochs_trained,
        "state": state,
        "metrics": encode_metrics(result.metrics),
        "error": result.error,
        "error_kind": result.error_kind,
        "worker": record.worker,
        "device": record.device,
        "job_id": record.job_id,
        "start_time": record.start_time,
        "end_time": record.end_time,
        "attempt": record.attempt,
        "reused": record.reused,
    }


def _is_int(v: object) -> bool:
    if not isinstance(v, numbers.Integral) or isinstance(v, (bool, np.bool_)):
        return False
    return -(2**63) <= int(v) < 2**63  # else Parquet's int64 refuses the whole batch


def _is_float(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


_CHECKS: dict[pa.DataType, tuple[Callable[[object], bool], str]] = {
    pa.string(): (lambda v: isinstance(v, str), "a str"),
    pa.int64(): (_is_int, "an int"),
    pa.float64(): (_is_float, "a float"),
    pa.bool_(): (lambda v: isinstance(v, (bool, np.bool_)), "a bool"),
}


def validate_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    """Check that each row has exactly the table's columns, each of its type.

    Raises
    ------
    StorageInputError
        Naming the row, the column, what it should hold and what it holds.
    """
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise StorageInputError(
                f"trial row {index} is not a mapping",
                expected="a dict with the trials table's columns",
                received=f"{type(row).__name__}",
                fix="build rows with record_row(record)",
            )
        missing = [c for c in COLUMNS if c not in row]
        unknown = sorted(str(k) for k in row if k not in SCHEMA.names)
        if missing or unknown:
            raise StorageInputError(
                f"trial row {index} has the wrong columns",
                expected=f"exactly the columns {', '.join(COLUMNS)}",
                received=f"missing {missing}, unknown {unknown}",
                fix="build rows with record_row(record)",
            )
        _check_values(row, index)


def _check_values(row: Mapping[str, Any], index: int) -> None:
    for field in SCHEMA:
        value = row[field.name]
        check, wanted = _CHECKS[field.type]
        if (value is None and field.nullable) or (value is not None and check(value)):
            continue
        raise StorageInputError(
            f"column {field.name!r} of trial row {index} has the wrong type",
            expected=f"{wanted} or None" if field.nullable else wanted,
            received=f"{value!r:.100} ({type(value).__name__})",
            fix=f"convert the value, and {_FIX_RECORDS}",
        )
    if row["state"] not in ("complete", "fail", "pruned"):
        raise StorageInputError(
            f"trial row {index} has an unknown state",
            expected='"complete", "fail" or "pruned" (a TrialState .value)',
            received=repr(row["state"]),
            fix="store only finished trials",
        )
    try:
        decode_metrics(row["metrics"])
    except StorageError as error:  # handed to the store, not read from it
        raise StorageInputError(
            error.problem, expected=error.expected, received=error.received, fix=error.fix
        ) from error


# -- rows to records and frames ------------------------------------------------------------


def row_record(row: Mapping[str, Any], archs: dict[str, Candidate] | None = None) -> TrialRecord:
    """The `TrialRecord` of a row read from the table (migrated to `SCHEMA`).

    The ``arch`` column holds an `ArchGraph` or a `Config` (a function space's), read with
    `morphml_dask.space.candidate_from_dict`. ``archs`` caches them by their JSON: decoding
    one (validation, canonical form) is most of the cost of a record.

    Raises
    ------
    StorageError
        When the row's architecture, state or metrics cannot be read.
    """
    archs = {} if archs is None else archs
    try:
        text = row["arch"]
        if text not in archs:
            archs[text] = candidate_from_dict(json.loads(text))
        trial = Trial(
            id=str(row["trial_id"]),
            arch=archs[text],
            budget=int(row["budget"]),
            rung=int(row["rung"]),
            parent=row["parent_id"],
            parent_budget=int(row["parent_budget"]),
            inherits=row["mutation"] is not None,
            info={} if row["mutation"] is None else {"mutation": row["mutation"]},
        )
        state = TrialState(row["state"])
    except (ValueError, TypeError, KeyError) as error:
        raise StorageError(
            f"the stored trial {row.get('trial_id')!r} cannot be read",
            expected="an ArchGraph's or a Config's JSON in 'arch' and 'complete', 'fail' or "
            "'pruned' in 'state'",
            received=f"{type(error).__name__}: {error}"[:300],
            fix="remove the foreign Parquet file from the trials folder",
        ) from error
    result = TrialResult(
        trial.id,
        state,
        decode_metrics(row["metrics"]),
        error=row["error"],
        error_kind=row["error_kind"],
    )
    return TrialRecord(
        trial,
        result,
        worker=row["worker"],
        device=row["device"],
        job_id=row["job_id"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        attempt=int(row["attempt"]),
        reused=bool(row["reused"]),
        inherited_fraction=row["inherited_fraction"],
    )


def table_records(table: pa.Table, archs: dict[str, Candidate] | None = None) -> list[TrialRecord]:
    """One `TrialRecord` per row of ``table``, in order (``archs`` as for `row_record`)."""
    archs = {} if archs is None else archs
    return [row_record(row, archs) for row in table.to_pylist()]


def table_frame(table: pa.Table) -> pd.DataFrame:
    """``table`` as a DataFrame with one float column per metric.

    The ``metrics`` column keeps the JSON; each metric also gets a column of its own, named
    after it (``metric_<name>`` when the name is one of the fixed columns), NaN for trials that
    did not report it.
    """
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
