"""The part log on its own, with a small JSON codec in both part shapes (file and folder)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from morphml_dask.exceptions import InputError, StorageError
from morphml_dask.space import ArchGraph, Node
from morphml_dask.storage import _partlog
from morphml_dask.storage._curves import CurveStore
from morphml_dask.storage._fs import Location, new_part_name
from morphml_dask.storage._partlog import (
    ATTEMPTS,
    PART_FILE,
    PartCodec,
    PartLog,
    first_occurrences,
)
from morphml_dask.storage._trials import TrialsTable
from morphml_dask.trial import Trial, TrialRecord, TrialResult

Rows = list[tuple[str, int]]


class JsonFiles(PartCodec[int, Rows]):
    """(trial id, value) rows as one JSON file per part."""

    suffix: ClassVar[str] = ".json"
    folder: ClassVar[bool] = False

    def build(self, items: Mapping[str, int]) -> Rows:
        return list(items.items())

    def encode(self, block: Rows) -> dict[str, bytes]:
        return {PART_FILE: json.dumps(block).encode()}

    def decode(self, name: str, files: Mapping[str, bytes]) -> Rows:
        return [(str(i), int(v)) for i, v in json.loads(files[PART_FILE])]

    def committed_ids(self, name: str, data: bytes) -> list[str]:
        return [str(i) for i, _ in json.loads(data)]

    def ids(self, block: Rows) -> list[str]:
        return [trial_id for trial_id, _ in block]

    def concat(self, blocks: Sequence[Rows]) -> Rows:
        return [row for block in blocks for row in block]

    def take(self, block: Rows, rows: Sequence[int]) -> Rows:
        return [block[i] for i in rows]

    def vanishing(self, url: str, attempts: int) -> StorageError:
        return StorageError(
            f"parts under {url} vanished",
            expected="parts",
            received=f"{attempts} attempts",
            fix="wait",
        )


class JsonFolders(JsonFiles):
    """The same rows as a folder per part (one file per row) and a marker."""

    suffix: ClassVar[str] = ".rows"
    folder: ClassVar[bool] = True

    def encode(self, block: Rows) -> dict[str, bytes]:
        return {f"{n:04d}": json.dumps(row).encode() for n, row in enumerate(block)}

    def decode(self, name: str, files: Mapping[str, bytes]) -> Rows:
        if not files:
            raise FileNotFoundError(name)
        return [(str(i), int(v)) for i, v in (json.loads(files[k]) for k in sorted(files))]

    def marker(self, name: str, ids: Sequence[str]) -> bytes:
        return json.dumps([[i, 0] for i in ids]).encode()


@pytest.fixture(params=[JsonFiles, JsonFolders], ids=["file-parts", "folder-parts"])
def codec(request: pytest.FixtureRequest) -> PartCodec[int, Rows]:
    made: PartCodec[int, Rows] = request.param()
    return made


@pytest.fixture(params=["memory", "local"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    if request.param == "memory":
        return Location(f"memory://partlog-{uuid.uuid4().hex}")
    return Location(str(tmp_path / "experiment"))


def test_first_occurrences() -> None:
    assert first_occurrences(["a", "b", "c"]) is None
    assert first_occurrences(["a", "b", "a", "c", "b"]) == [0, 1, 3]
    assert first_occurrences([]) is None


def test_append_is_exactly_once_and_reads_keep_the_first(
    location: Location, codec: PartCodec[int, Rows]
) -> None:
    log = PartLog(location, "log", codec)
    assert log.append({"a": 1, "b": 2}) == 2
    assert log.append({"a": 9, "c": 3}) == 1
    assert log.append({}) == 0
    assert log.read() == [("a", 1), ("b", 2), ("c", 3)]
    assert len(log.parts()) == 2
    # Another process that had not seen "b" wrote it again: readers keep the first.
    racing = PartLog(location, "log", codec)
    racing._refresh = lambda: None  # type: ignore[method-assign]  # it listed before b's commit
    assert racing.append({"b": 7}) == 1
    assert PartLog(location, "log", codec).read() == [("a", 1), ("b", 2), ("c", 3)]
    assert PartLog(location, "log", codec).ids() == {"a", "b", "c"}

    assert log.compact() == 3
    assert len(log.parts()) == 1
    assert PartLog(location, "log", codec).read() == [("a", 1), ("b", 2), ("c", 3)]
    assert PartLog(location, "log", codec).append({"c": 0, "d": 4}) == 1


def test_old_leftovers_of_interrupted_writes_are_deleted(
    tmp_path: Path, codec: PartCodec[int, Rows]
) -> None:
    location = Location(str(tmp_path / "experiment"))
    log = PartLog(location, "log", codec)
    log.append({"a": 1})
    folder = Path(location.path("log"))
    old = f"part-{1:020d}-{uuid.uuid4().hex[:12]}{codec.suffix}"  # written in 1970
    young = new_part_name(codec.suffix)
    leftovers = [f"{old}.tmp-{uuid.uuid4().hex}", f"{young}.tmp-{uuid.uuid4().hex}"]
    if codec.folder:  # a marker interrupted while renamed, and folders never committed
        leftovers += [f"{old}.commit.tmp-{uuid.uuid4().hex}", f"{old}/0000", f"{young}/0000"]
    for name in leftovers:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"half written")

    assert log.read() == [("a", 1)]  # readers never see them
    # Uncommitted folders count as removed parts; temporary files do not.
    assert log.compact() == (1 if codec.folder else 0)
    left = sorted(os.listdir(folder))
    assert [n for n in left if n.startswith(old)] == []
    assert any(n.startswith(f"{young}.tmp-") for n in left), "a young write was deleted"
    assert log.compact(leftover_age=0) == (1 if codec.folder else 0)
    assert [n for n in os.listdir(folder) if n.startswith(young)] == []
    assert log.read() == [("a", 1)]


def test_parts_that_keep_vanishing_raise_after_the_attempts(
    location: Location, codec: PartCodec[int, Rows], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = PartLog(location, "log", codec)
    log.append({"a": 1})
    pauses: list[int] = []
    monkeypatch.setattr(_partlog, "_pause", pauses.append)
    monkeypatch.setattr(log, "_fetch", lambda paths: {})
    monkeypatch.setattr(log, "_folder_files", lambda names: {name: {} for name in names})
    with pytest.raises(StorageError, match=rf"vanished(?s:.*){ATTEMPTS} attempts"):
        log.read()
    assert pauses == list(range(ATTEMPTS))
    pauses.clear()
    fresh = PartLog(location, "log", codec)
    monkeypatch.setattr(fresh, "_fetch", lambda paths: {})
    with pytest.raises(StorageError, match=rf"vanished(?s:.*){ATTEMPTS} attempts"):
        fresh.ids()
    assert pauses == list(range(ATTEMPTS))


def test_both_stores_share_the_one_attempts_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_partlog, "_pause", lambda attempt: None)
    arch_record = TrialRecord(
        Trial("t", _arch(), budget=1), TrialResult.complete("t", {"accuracy": 1.0})
    )
    for store, append in (
        (TrialsTable(Location(f"memory://a-{uuid.uuid4().hex}")), [arch_record]),
        (CurveStore(Location(f"memory://b-{uuid.uuid4().hex}")), {"t": [{"epoch": 1}]}),
    ):
        store.append(append)  # type: ignore[arg-type]
        monkeypatch.setattr(store.log, "_fetch", lambda paths: {})
        monkeypatch.setattr(store.log, "_folder_files", lambda names: {n: {} for n in names})
        with pytest.raises(StorageError, match=rf"{ATTEMPTS} attempts") as raised:
            store.read()
        assert not isinstance(raised.value, InputError)


def test_an_outage_while_reading_is_not_hidden(
    location: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Errors other than a missing file keep their type: the driver retries outages and stops
    on missing permissions."""
    log = PartLog(location, "log", JsonFiles())
    log.append({"a": 1})

    def refuse(paths: list[str], on_error: str = "raise") -> dict[str, object]:
        return {path: PermissionError(path) for path in paths}

    monkeypatch.setattr(location.fs, "cat", refuse)
    with pytest.raises(PermissionError):
        PartLog(location, "log", JsonFiles()).ids()


def _arch() -> ArchGraph:
    return ArchGraph(["input", Node("conv", kernel=3, channels=8), "output"], [(0, 1), (1, 2)])


def test_pauses_grow() -> None:
    started = time.monotonic()
    _partlog._pause(0)
    _partlog._pause(1)
    assert 0.05 <= time.monotonic() - started < 1.0
