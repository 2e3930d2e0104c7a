"""The Parquet trials table (a part log with the Parquet codec) on memory://, a local folder
and a real S3 server (moto)."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from morphml_dask.exceptions import StorageError, StorageInputError
from morphml_dask.space import ArchGraph, Node
from morphml_dask.storage._fs import Location, new_part_name
from morphml_dask.storage._records import (
    decode_metrics,
    encode_metrics,
    record_row,
    validate_rows,
)
from morphml_dask.storage._schema import SCHEMA, SCHEMA_VERSION
from morphml_dask.storage._trials import TrialsTable
from morphml_dask.trial import Trial, TrialRecord, TrialResult, TrialState

COLUMNS = list(SCHEMA.names)
NEWER = (
    "written by schema version 4; this morphml_dask reads versions up to 3; upgrade morphml_dask"
)


def _location(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    if kind == "memory":
        return Location(f"memory://trials-{uuid.uuid4().hex}")
    if kind == "local":
        return Location(str(tmp_path / "experiment"))
    return Location(request.getfixturevalue("s3_url"), request.getfixturevalue("s3_options"))


@pytest.fixture(params=["memory", "local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Location]:
    loc = _location(request.param, request, tmp_path)
    yield loc
    if request.param == "memory" and loc.exists(loc.root):
        loc.fs.rm(loc.root, recursive=True)


@pytest.fixture(params=["local", "s3"])
def shared_location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """A location other processes can open too."""
    return _location(request.param, request, tmp_path)


def sibling(location: Location) -> Location:
    """Another handle on the same experiment, as a second process would open it."""
    return Location(location.url, location.storage_options)


def arch(channels: int = 8) -> ArchGraph:
    nodes: list[Node | str] = ["input", Node("conv", kernel=3, channels=channels), "output"]
    return ArchGraph(nodes, [(0, 1), (1, 2)])


def record(trial_id: str, budget: Any = 4, **fields: Any) -> TrialRecord:
    trial = Trial(trial_id, arch(), budget=budget)
    return TrialRecord(trial, TrialResult.complete(trial_id, {"accuracy": 0.5}), **fields)


def records(*ids: int) -> list[TrialRecord]:
    return [record(f"t{i}") for i in ids]


def row(trial_id: str, **overrides: Any) -> dict[str, Any]:
    """The raw row of `record`, as the codec writes it, with columns overridden."""
    return {**record_row(record(trial_id)), **overrides}


_V3_COLUMNS = ("parent_id", "mutation", "inherited_fraction", "epochs_trained")


def v2_row(trial_id: str, **overrides: Any) -> dict[str, Any]:
    """`row` as schema version 2 wrote it: ``parent`` for ``parent_id``, and no mutation,
    inherited fraction or epochs trained."""
    parent = overrides.pop("parent", None)
    old = {k: v for k, v in row(trial_id, **overrides).items() if k not in _V3_COLUMNS}
    return {**old, "parent": parent}


def write_part(location: Location, table: pa.Table, version: bytes | None) -> str:
    """Hand-write a part, as another release (or a racing process) would."""
    metadata = None if version is None else {b"morphml.schema_version": version}
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer)
    path = location.path("trials", new_part_name(".parquet"))
    location.write_atomic(path, buffer.getvalue())
    return path


# -- rows and round trips --------------------------------------------------------------------


def test_round_trip_keeps_every_column_kind(location: Location) -> None:
    graph = arch(16)
    parent = Trial("a", graph, budget=2, rung=0)
    child = Trial("b", graph, budget=8, rung=2, parent="a", parent_budget=2)
    broken = Trial("c", arch(), budget=1)
    metrics = {"accuracy": 0.91, "loss": math.nan, "gain": math.inf, "drop": -math.inf}
    written = [
        TrialRecord(parent, TrialResult.complete("a", {"accuracy": 0.5, "budget": 7.0})),
        TrialRecord(
            child,
            TrialResult.complete("b", metrics),
            worker="tcp://127.0.0.1:4000",
            device="cuda:1",
            job_id="4242",
            start_time=1_700_000_000.25,
            end_time=1_700_000_060.5,
            attempt=2,
            reused=True,
        ),
        TrialRecord(broken, TrialResult.failed("c", "CUDA out of memory", kind="oom")),
    ]
    table = TrialsTable(location)
    assert table.append(written) == 3
    frame = table.read()

    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert list(frame["trial_id"]) == ["a", "b", "c"]
    b = frame.iloc[1]
    assert ArchGraph.from_dict(json.loads(b["arch"])) == graph
    assert b["fingerprint"] == graph.fingerprint
    assert (b["budget"], b["rung"], b["parent_id"], b["parent_budget"]) == (8, 2, "a", 2)
    assert (b["worker"], b["device"], b["attempt"], bool(b["reused"])) == (
        "tcp://127.0.0.1:4000",
        "cuda:1",
        2,
        True,
    )
    assert (b["start_time"], b["end_time"]) == (1_700_000_000.25, 1_700_000_060.5)
    assert b["state"] == "complete"
    decoded = decode_metrics(b["metrics"])
    assert math.isnan(decoded.pop("loss")) and math.isnan(b["loss"])
    assert decoded == {"accuracy": 0.91, "gain": math.inf, "drop": -math.inf}
    assert (b["gain"], b["drop"]) == (math.inf, -math.inf)

    c = frame.iloc[2]
    assert (c["state"], c["error"], c["error_kind"], c["metrics"]) == (
        "fail",
        "CUDA out of memory",
        "oom",
        "{}",
    )
    assert math.isnan(c["accuracy"]) and bool(c["reused"]) is False
    assert (
        c["parent_id"] is None or c["parent_id"] != c["parent_id"]
    )  # missing, whatever its marker
    assert math.isnan(c["start_time"])
    # A metric named like a fixed column gets a prefix; the fixed column is untouched.
    assert list(frame["budget"]) == [2, 8, 1]
    assert frame["metric_budget"].iloc[0] == 7.0 and math.isnan(frame["metric_budget"].iloc[1])
    assert frame["budget"].dtype == "int64" and frame["accuracy"].dtype == "float64"
    assert table.ids() == {"a", "b", "c"}

    for read in (table.records(), TrialsTable(sibling(location)).records()):
        assert [r.trial_id for r in read] == ["a", "b", "c"]
        assert read[0] == written[0] and read[2] == written[2]
        back = read[1]
        assert back.trial == child and back.trial.arch == graph
        assert dataclasses.replace(back, result=written[1].result) == written[1]
        assert back.result.state is TrialState.COMPLETE and back.result.error is None
        decoded = dict(back.result.metrics)
        assert math.isnan(decoded.pop("loss"))
        assert decoded == {"accuracy": 0.91, "gain": math.inf, "drop": -math.inf}
    assert table.record("c") == written[2] and table.record("c").result.error_kind == "oom"
    with pytest.raises(
        StorageInputError,
        match=r"(?s)no trial 'd' in this store.*expected: an id from store.trials\(\)"
        r".*fix: pick a stored trial",
    ):
        table.record("d")


def test_empty_table_reads_the_fixed_columns(location: Location) -> None:
    table = TrialsTable(location)
    frame = table.read()
    assert frame.empty and list(frame.columns) == COLUMNS
    assert table.ids() == set() and table.parts() == [] and table.compact() == 0
    assert table.records() == []


def test_metrics_json_is_portable() -> None:
    text = encode_metrics({"b": 1, "a": math.nan, "c": -math.inf})
    assert text == '{"a": "nan", "b": 1.0, "c": "-inf"}'
    assert json.loads(text)  # strict JSON: no NaN / Infinity tokens
    assert decode_metrics(text)["c"] == -math.inf
    with pytest.raises(StorageError, match=r"(?s)malformed metrics JSON.*expected: a JSON object"):
        decode_metrics('{"a": "fast"}')
    with pytest.raises(
        StorageInputError, match=r"(?s)metric 'a' of a result is not a number.*received: True"
    ):
        encode_metrics({"a": True})
    with pytest.raises(StorageInputError, match=r"(?s)the metrics of a result are not a mapping"):
        encode_metrics([0.5])  # type: ignore[arg-type]


# -- exactly once ------------------------------------------------------------------------------


def test_append_of_a_stored_id_writes_nothing(location: Location) -> None:
    table = TrialsTable(location)
    assert table.append(records(1, 2)) == 2
    parts = table.parts()
    assert table.append([record("t1", budget=99)]) == 0
    assert table.append([]) == 0
    assert table.parts() == parts
    assert table.append(records(2, 3)) == 1
    assert len(table.parts()) == 2
    frame = table.read()
    assert list(frame["trial_id"]) == ["t1", "t2", "t3"] and list(frame["budget"]) == [4, 4, 4]


def test_duplicates_within_a_batch_keep_the_first(location: Location) -> None:
    table = TrialsTable(location)
    assert table.append([record("x", budget=1), record("y"), record("x", budget=2)]) == 2
    frame = table.read()
    assert list(frame["trial_id"]) == ["x", "y"] and frame["budget"].iloc[0] == 1


def test_read_keeps_the_first_of_ids_written_twice_by_racing_appenders(
    location: Location,
) -> None:
    table = TrialsTable(location)
    table.append([record("x", budget=1)])
    # A second process that had not seen "x" yet wrote it too.
    write_part(location, pa.Table.from_pylist([row("x", budget=2)], schema=SCHEMA), b"1")
    frame = TrialsTable(sibling(location)).read()
    assert list(frame["trial_id"]) == ["x"] and frame["budget"].iloc[0] == 1
    assert [r.trial.budget for r in TrialsTable(sibling(location)).records()] == [1]


@pytest.mark.parametrize("shared", [True, False], ids=["one-instance", "two-instances"])
def test_two_threads_appending_overlapping_ids(location: Location, shared: bool) -> None:
    tables = (
        [TrialsTable(location)] * 2 if shared else [TrialsTable(sibling(location)) for _ in "ab"]
    )
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(table: TrialsTable, ids: range) -> None:
        try:
            start.wait()
            for first in range(ids.start, ids.stop, 4):
                table.append(records(*range(first, min(first + 4, ids.stop))))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [
        # Both walk the shared ids in the same order, so they race on the same ids.
        threading.Thread(target=work, args=(tables[0], range(0, 24))),
        threading.Thread(target=work, args=(tables[1], range(0, 32))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    frame = TrialsTable(location).read()
    assert sorted(frame["trial_id"]) == sorted(f"t{i}" for i in range(32))
    assert frame["trial_id"].is_unique


_APPENDER = """
import dataclasses, json, os, sys, time
from morphml_dask.storage._fs import Location
from morphml_dask.storage._trials import TrialsTable
from morphml_dask.trial import TrialRecord, TrialResult

url, options, go, template, first, last = sys.argv[1:]
table = TrialsTable(Location(url, json.loads(options)))
template = TrialRecord.from_dict(json.loads(template))

def record(trial_id):
    trial = dataclasses.replace(template.trial, id=trial_id)
    return dataclasses.replace(template, trial=trial, result=TrialResult.complete(trial_id, {}))

while not os.path.exists(go):
    time.sleep(0.002)
for start in range(int(first), int(last), 4):
    ids = range(start, min(start + 4, int(last)))
    table.append([record(f"t{i}") for i in ids])
"""


def test_two_processes_appending_overlapping_ids(shared_location: Location, tmp_path: Path) -> None:
    go = tmp_path / "go"
    template = json.dumps(record("template").to_dict())
    options = json.dumps(shared_location.storage_options)
    command = [sys.executable, "-c", _APPENDER, shared_location.url, options, str(go), template]
    # Both walk t0..t39 in the same order, so they race on the same ids.
    processes = [subprocess.Popen([*command, *span]) for span in (["0", "40"], ["0", "50"])]
    go.touch()
    assert [p.wait(timeout=60) for p in processes] == [0, 0]
    table = TrialsTable(shared_location)
    frame = table.read()
    assert sorted(frame["trial_id"]) == sorted(f"t{i}" for i in range(50))
    assert frame["trial_id"].is_unique
    assert table.ids() == {f"t{i}" for i in range(50)}


# -- the incremental index ---------------------------------------------------------------------


def test_index_sees_parts_written_by_another_instance(
    location: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = TrialsTable(location)
    reader = TrialsTable(sibling(location))
    writer.append(records(1))
    assert reader.append(records(1, 2)) == 1
    assert writer.ids() == {"t1", "t2"}

    reads: list[str] = []
    original = reader.log._fetch

    def counting_fetch(paths: list[str]) -> dict[str, bytes]:
        reads.extend(paths)
        return original(paths)

    monkeypatch.setattr(reader.log, "_fetch", counting_fetch)
    for i in range(3, 6):
        writer.append(records(i))
    assert reader.append(records(5, 6)) == 1
    assert len(reads) == 3  # only the three parts it had not seen
    assert reader.ids() == {f"t{i}" for i in range(1, 7)}
    assert len(reads) == 3
    # Reading decodes each part once, then only parts new since.
    assert len(reader.read()) == 6 and len(reads) == 3 + 6
    writer.append(records(7))
    assert len(reader.read()) == 7 and len(reads) == 3 + 6 + 1


# -- compaction --------------------------------------------------------------------------------


def test_compaction_keeps_every_row_and_leaves_one_part(location: Location) -> None:
    table = TrialsTable(location)
    for i in range(5):
        table.append(records(2 * i, 2 * i + 1))
    write_part(location, pa.Table.from_pylist([row("t0", budget=9)], schema=SCHEMA), b"1")
    before = table.read()
    assert len(table.parts()) == 6

    assert table.compact() == 6
    assert len(table.parts()) == 1
    after = TrialsTable(sibling(location)).read()
    assert after.equals(before) and len(after) == 10 and after["budget"].iloc[0] == 4
    assert table.compact() == 0
    assert table.append(records(9, 10)) == 1 and len(table.ids()) == 11


def test_a_crash_between_the_compacted_write_and_the_deletes_loses_nothing(
    location: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = TrialsTable(location)
    for i in range(3):
        table.append(records(i))

    def crash(path: Any, recursive: bool = False) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(location.fs, "rm", crash)
    with pytest.raises(RuntimeError, match="killed"):
        table.compact()
    monkeypatch.undo()
    assert len(table.parts()) == 4  # the compacted part beside the three originals
    fresh = TrialsTable(sibling(location))
    assert list(fresh.read()["trial_id"]) == ["t0", "t1", "t2"]
    assert fresh.compact() == 4 and list(fresh.read()["trial_id"]) == ["t0", "t1", "t2"]


@pytest.mark.parametrize("call", ["read", "ids"])
def test_a_reader_racing_a_compaction_sees_every_row(
    location: Location, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    writer = TrialsTable(location)
    for i in range(4):
        writer.append(records(i))
    reader = TrialsTable(sibling(location))
    original = reader.log._fetch
    compacted: list[int] = []

    def fetch_after_a_compaction(paths: list[str]) -> dict[str, bytes]:
        # The reader has listed the four parts; they vanish before it reads the first.
        if not compacted:
            compacted.append(writer.compact())
        return original(paths)

    monkeypatch.setattr(reader.log, "_fetch", fetch_after_a_compaction)
    if call == "read":
        assert list(reader.read()["trial_id"]) == ["t0", "t1", "t2", "t3"]
    else:
        assert reader.ids() == {"t0", "t1", "t2", "t3"}
    assert compacted == [4]


# -- schema versions ---------------------------------------------------------------------------


def version_0_part(location: Location) -> str:
    """A part from before parent_budget, error_kind and reused existed."""
    old = v2_row("old", state="fail", error="boom")
    for column in ("parent_budget", "error_kind", "reused", "job_id"):
        del old[column]
    return write_part(location, pa.Table.from_pylist([old]), b"0")


def test_a_version_0_part_is_migrated(location: Location) -> None:
    version_0_part(location)
    table = TrialsTable(location)
    table.append(records(1))
    frame = table.read()
    assert list(frame["trial_id"]) == ["old", "t1"]
    old = frame.iloc[0]
    assert (old["parent_budget"], bool(old["reused"]), old["error"]) == (0, False, "boom")
    assert old["error_kind"] is None or old["error_kind"] != old["error_kind"]
    assert table.append([record("old")]) == 0
    migrated = table.record("old")
    assert migrated.trial == Trial("old", arch(), budget=4)
    assert migrated.result == TrialResult("old", TrialState.FAIL, {"accuracy": 0.5}, "boom")
    assert (migrated.reused, migrated.job_id, migrated.attempt) == (False, None, 1)

    assert table.compact() == 2  # rewrites the old part at the current version
    (part,) = table.parts()
    data = location.read(location.path("trials", part))
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata.metadata
    assert metadata[b"morphml.schema_version"] == str(SCHEMA_VERSION).encode()
    assert TrialsTable(sibling(location)).read().equals(frame)


def test_a_version_1_part_gets_an_empty_job_id(location: Location) -> None:
    old = {k: v for k, v in v2_row("v1").items() if k != "job_id"}
    write_part(location, pa.Table.from_pylist([old]), b"1")
    table = TrialsTable(location)
    table.append([record("t2", job_id="4242")])
    frame = table.read()
    assert list(frame["trial_id"]) == ["v1", "t2"]
    assert frame["job_id"].iloc[0] is None or frame["job_id"].isna().iloc[0]
    assert frame["job_id"].iloc[1] == "4242"
    assert [r.job_id for r in table.records()] == [None, "4242"]


def test_a_version_2_part_keeps_its_parents_as_promotions(location: Location) -> None:
    promoted = v2_row("v2", budget=9, parent="t0", parent_budget=3)
    write_part(location, pa.Table.from_pylist([v2_row("t0"), promoted]), b"2")
    table = TrialsTable(location)
    frame = table.read()
    assert list(frame["parent_id"].fillna("-")) == ["-", "t0"]
    assert list(frame["epochs_trained"]) == [4, 6]
    assert frame["inherited_fraction"].isna().iloc[0]
    assert frame["inherited_fraction"].iloc[1] == 1.0
    assert frame["mutation"].isna().all()
    child = table.record("v2")
    assert (child.trial.parent, child.trial.inherits, child.inherited_fraction) == (
        "t0",
        False,
        1.0,
    )


def test_a_part_from_a_newer_version_is_refused(location: Location) -> None:
    table = TrialsTable(location)
    table.append(records(1))
    write_part(location, pa.Table.from_pylist([row("t2")], schema=SCHEMA), b"4")
    with pytest.raises(StorageError, match=rf"(?s){NEWER}.*fix: pip install -U morphml_dask"):
        table.read()
    with pytest.raises(StorageError, match=NEWER):
        TrialsTable(location).ids()
    with pytest.raises(StorageError, match=NEWER):
        table.append(records(3))
    with pytest.raises(StorageError, match=NEWER):
        table.records()


@pytest.mark.parametrize(
    ("version", "received"), [(b"v1", "b'v1'"), (b"-1", "b'-1'"), (None, "None")]
)
def test_a_part_without_a_readable_version_is_refused(
    location: Location, version: bytes | None, received: str
) -> None:
    write_part(location, pa.Table.from_pylist([row("t1")], schema=SCHEMA), version)
    with pytest.raises(
        StorageError,
        match=rf"(?s)has no readable schema version.*expected: key-value metadata "
        rf"b'morphml.schema_version' holding a version from 0 to 3.*received: {received}",
    ):
        TrialsTable(location).read()


def test_a_foreign_file_is_named(location: Location) -> None:
    location.write_atomic(location.path("trials", "part-0-x.parquet"), b"not parquet")
    with pytest.raises(StorageError, match=r"(?s)part-0-x.parquet is not a Parquet file"):
        TrialsTable(location).read()


def test_a_part_lacking_columns_is_refused(location: Location) -> None:
    write_part(location, pa.table({"trial_id": ["a"], "budget": [1]}), b"1")
    message = (
        r"(?s)a trials part of schema version 1 does not fit the trials table"
        r".*expected: the columns trial_id, fingerprint.*received: 'trial_id: string\\nbudget: int64'"
    )
    with pytest.raises(StorageError, match=message):
        TrialsTable(location).read()
    write_part(location, pa.table({"id": ["b"]}), b"1")
    with pytest.raises(StorageError, match=r"(?s)does not fit.*received: 'id: string'"):
        TrialsTable(location).ids()


# -- validation --------------------------------------------------------------------------------


def _without(column: str) -> dict[str, Any]:
    return {k: v for k, v in row("t").items() if k != column}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            _without("budget"),
            r"trial row 0 has the wrong columns.*expected: exactly the columns trial_id, "
            r"fingerprint.*received: missing \['budget'\], unknown \[\].*fix: build rows with record_row",
        ),
        (
            {**row("t"), "colour": "red"},
            r"wrong columns.*received: missing \[\], unknown \['colour'\]",
        ),
        (
            row("t", budget="4"),
            r"column 'budget' of trial row 0 has the wrong type.*expected: an int\n"
            r".*received: '4' \(str\).*fix: convert the value",
        ),
        (row("t", rung=True), r"column 'rung' .*expected: an int.*received: True \(bool\)"),
        ({**row("t"), "trial_id": None}, r"column 'trial_id' .*expected: a str\n.*received: None"),
        (
            row("t", parent_id=3),
            r"column 'parent_id' .*expected: a str or None.*received: 3 \(int\)",
        ),
        (row("t", end_time="noon"), r"column 'end_time' .*expected: a float or None"),
        (row("t", reused=1), r"column 'reused' .*expected: a bool.*received: 1 \(int\)"),
        (
            row("t", state="running"),
            r"unknown state.*expected: \"complete\", \"fail\" or \"pruned\"",
        ),
        (row("t", metrics='{"acc": NaN}'), r"malformed metrics JSON.*received: '\{\"acc\": NaN\}'"),
        ("t", r"trial row 0 is not a mapping.*received: str"),
    ],
)
def test_the_codec_refuses_malformed_rows(bad: Any, message: str) -> None:
    with pytest.raises(StorageInputError, match=rf"(?s){message}"):
        validate_rows([bad])


def _with_trial(**fields: Any) -> TrialRecord:
    return dataclasses.replace(record("t"), trial=dataclasses.replace(record("t").trial, **fields))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            _with_trial(budget="4"),
            r"column 'budget' of trial row 1 has the wrong type.*expected: an int\n"
            r".*received: '4' \(str\).*fix: convert the value, and store TrialRecord",
        ),
        (_with_trial(rung=True), r"column 'rung' .*expected: an int.*received: True \(bool\)"),
        (
            _with_trial(budget=2**63),  # more than Parquet's int64 holds
            r"column 'budget' .*expected: an int.*received: 9223372036854775808 \(int\)",
        ),
        (
            _with_trial(parent=3),
            r"column 'parent_id' .*expected: a str or None.*received: 3 \(int\)",
        ),
        (record("t", end_time="noon"), r"column 'end_time' .*expected: a float or None"),
        (record("t", reused=1), r"column 'reused' .*expected: a bool.*received: 1 \(int\)"),
        (record("t", device=0), r"column 'device' .*expected: a str or None.*received: 0 \(int\)"),
        (
            TrialRecord(Trial("t", arch(), 1), TrialResult("t", TrialState.RUNNING)),
            r"unknown state.*expected: \"complete\", \"fail\" or \"pruned\".*received: 'running'",
        ),
        (
            TrialRecord(Trial("t", arch(), 1), TrialResult("t", TrialState.COMPLETE, {"a": "x"})),  # type: ignore[dict-item]
            r"metric 'a' of a result is not a number.*received: 'x' \(str\)",
        ),
        (
            _with_trial(arch={"nodes": []}),
            r"record 1 does not hold a Trial of an ArchGraph or Config and a TrialResult"
            r".*received: trial Trial, arch dict, result TrialResult",
        ),
        ("t", r"record 1 is not a TrialRecord.*received: str"),
    ],
)
def test_records_of_the_wrong_types_are_refused(location: Location, bad: Any, message: str) -> None:
    table = TrialsTable(location)
    with pytest.raises(StorageInputError, match=rf"(?s){message}"):
        table.append([record("fine"), bad])
    assert table.parts() == []  # nothing of a refused batch is written


def test_records_accept_numpy_scalars(location: Location) -> None:
    good = _with_trial(budget=np.int64(3))
    good = dataclasses.replace(good, start_time=np.float64(1.5))
    table = TrialsTable(location)
    assert table.append([good]) == 1
    assert table.read()["budget"].iloc[0] == 3
    assert table.record("t").trial.budget == 3 and table.record("t").start_time == 1.5
