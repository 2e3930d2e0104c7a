"""CurveStore (a part log with the Zarr codec): learning curves on memory://, a local folder
and a real S3 server (moto)."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from morphml_dask.exceptions import InputError, StorageError, StorageInputError
from morphml_dask.storage._curves import CurveStore
from morphml_dask.storage._fs import Location, new_part_name


@pytest.fixture(params=["memory", "local", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    if request.param == "memory":
        return Location(f"memory://curves-{uuid.uuid4().hex}")
    if request.param == "local":
        return Location(str(tmp_path / "experiment"))
    s3_url: str = request.getfixturevalue("s3_url")
    s3_options: dict[str, Any] = request.getfixturevalue("s3_options")
    return Location(s3_url, s3_options)


def _curve(seed: int, epochs: range, metrics: tuple[str, ...] = ("val_loss",)) -> list[Any]:
    return [{"epoch": e, **{m: seed + e / 100 + i for i, m in enumerate(metrics)}} for e in epochs]


def _curves(ids: range) -> dict[str, list[Any]]:
    return {f"t-{i:03d}": _curve(i, range(1, 2 + i % 5)) for i in ids}


def _uncommitted_part(location: Location, name: str) -> None:
    """A Zarr part without its commit marker, as a writer killed before committing leaves."""
    data = xr.Dataset(
        {"val_loss": (("trial", "epoch"), [[0.5]])},
        coords={"trial": ["ghost"], "epoch": np.array([1], dtype=np.int64)},
    )
    target = (
        location.path("curves", name) if location.is_local() else location.url_of("curves", name)
    )
    options = None if location.is_local() else location.storage_options
    data.to_zarr(target, storage_options=options, mode="w-", consolidated=True, zarr_format=2)


def test_round_trip_with_ragged_epochs_and_different_metrics(location: Location) -> None:
    store = CurveStore(location)
    curves: dict[str, Any] = {
        "a": [
            {"epoch": 1, "train_loss": 2.0, "val_loss": 2.5},
            {"epoch": 2.0, "train_loss": 1.0, "val_loss": 1.5},
        ],
        "b": [{"epoch": 5, "val_accuracy": np.float32(0.75)}, {"epoch": 3, "val_accuracy": 1}],
        "c": [],
    }
    assert store.append(curves) == 3
    assert store.append({"d": [{"epoch": 0, "val_loss": float("nan"), "lr": 0.1}]}) == 1

    data = store.read()
    assert dict(data.sizes) == {"trial": 4, "epoch": 5}
    assert data["trial"].values.tolist() == ["a", "b", "c", "d"]
    assert data["epoch"].values.tolist() == [0, 1, 2, 3, 5]
    assert data["epoch"].dtype == np.int64
    assert sorted(map(str, data.data_vars)) == ["lr", "train_loss", "val_accuracy", "val_loss"]
    assert all(data[name].dtype == np.float64 for name in data.data_vars)
    assert data["train_loss"].sel(trial="a").dropna("epoch").values.tolist() == [2.0, 1.0]
    accuracy = data["val_accuracy"].sel(trial="b").dropna("epoch")
    assert accuracy["epoch"].values.tolist() == [3, 5]
    assert accuracy.values.tolist() == [1.0, 0.75]
    assert np.isnan(data["val_loss"].sel(trial="b")).all()
    assert np.isnan(data.to_array().sel(trial="c")).all()
    assert data["lr"].sel(trial="d", epoch=0).item() == 0.1
    assert store.ids() == {"a", "b", "c", "d"}
    assert len(store.parts()) == 2


def test_empty_store_reads_an_empty_dataset(location: Location) -> None:
    store = CurveStore(location)
    data = store.read()
    assert dict(data.sizes) == {"trial": 0, "epoch": 0}
    assert store.ids() == set()
    assert store.parts() == []
    assert store.compact() == 0


def test_appends_are_idempotent_by_trial_id(location: Location) -> None:
    store = CurveStore(location)
    first = _curves(range(10))
    assert store.append(first) == 10
    assert store.append(first) == 0
    changed = {trial_id: _curve(99, range(1, 3)) for trial_id in first}
    assert store.append({**changed, **_curves(range(10, 15))}) == 5
    # A new store (another process) learns the stored ids from the commit markers.
    assert CurveStore(location).append(_curves(range(15))) == 0

    data = store.read()
    assert data["trial"].values.tolist() == sorted(_curves(range(15)))
    assert data["val_loss"].sel(trial="t-003").dropna("epoch").values.tolist() == [
        p["val_loss"] for p in first["t-003"]
    ]
    assert len(store.parts()) == 2


def test_the_id_index_reads_only_markers_it_has_not_seen(
    location: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = CurveStore(location), CurveStore(location)
    store.append(_curves(range(3)))
    other.append(_curves(range(3, 6)))
    read: list[str] = []
    original = location.fs.cat

    def spying_cat(paths: Any, *args: Any, **kwargs: Any) -> Any:
        read.extend(paths if isinstance(paths, list) else [paths])
        return original(paths, *args, **kwargs)

    monkeypatch.setattr(location.fs, "cat", spying_cat)
    assert store.ids() == set(_curves(range(6)))
    assert [p.rsplit("/", 1)[-1] for p in read] == [other.parts()[-1] + ".commit"]
    read.clear()
    assert store.append(_curves(range(6))) == 0
    assert read == []


@pytest.mark.parametrize("shared", [False, True], ids=["two-stores", "one-store"])
def test_concurrent_appends_keep_every_trial_once(location: Location, shared: bool) -> None:
    stores = [CurveStore(location)] * 2 if shared else [CurveStore(location) for _ in range(2)]
    batches = [
        [_curves(range(0, 20)), _curves(range(30, 50))],  # disjoint from the other thread
        [_curves(range(20, 30)), _curves(range(40, 60))],  # 40-49 overlap
    ]
    barrier = threading.Barrier(2)
    written = [0, 0]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for batch in batches[index]:
                barrier.wait(timeout=30)
                written[index] += stores[index].append(batch)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors

    expected = _curves(range(60))
    data = CurveStore(location).read()
    assert sorted(data["trial"].values.tolist()) == sorted(expected)
    for trial_id in ("t-000", "t-025", "t-045", "t-059"):
        values = data["val_loss"].sel(trial=trial_id).dropna("epoch").values.tolist()
        assert values == [p["val_loss"] for p in expected[trial_id]]
    if shared:  # one store reserves the ids it is writing: exactly once
        assert sum(written) == 60
    else:  # two processes may both write an overlapping id; read() keeps one
        assert 60 <= sum(written) <= 70


def test_an_uncommitted_part_is_invisible_and_compacted_away(
    location: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CurveStore(location)
    store.append(_curves(range(3)))

    def killed(path: str, data: bytes) -> None:
        raise KeyboardInterrupt  # the process dies after the part, before its marker

    monkeypatch.setattr(location, "write_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        store.append(_curves(range(3, 6)))
    monkeypatch.undo()
    _uncommitted_part(location, new_part_name(".zarr"))
    old = f"part-{1:020d}-{uuid.uuid4().hex[:12]}.zarr"  # written in 1970: long abandoned
    _uncommitted_part(location, old)

    assert len(location.list(location.path("curves"), ".zarr")) == 4
    assert store.read()["trial"].values.tolist() == sorted(_curves(range(3)))
    assert CurveStore(location).ids() == set(_curves(range(3)))
    assert store.compact() == 1  # only the old leftover: the young ones may still be writing
    assert store.compact(leftover_age=0) == 2
    assert location.list(location.path("curves"), ".zarr") == [
        location.path("curves", store.parts()[0])
    ]
    assert store.append(_curves(range(6))) == 3  # the interrupted trials can be stored again
    assert sorted(store.read()["trial"].values.tolist()) == sorted(_curves(range(6)))


def test_compaction_preserves_everything_and_leaves_one_part(location: Location) -> None:
    store = CurveStore(location)
    for start in range(0, 40, 10):
        store.append(_curves(range(start, start + 10)))
    store.append({"wide": _curve(7, range(3, 9), ("train_loss", "val_loss", "val_accuracy"))})
    before = store.read()

    assert store.compact() == 5
    assert len(store.parts()) == 1
    assert len(location.list(location.path("curves"))) == 2  # the part and its marker
    xr.testing.assert_identical(store.read(), before)
    assert store.compact() == 0
    assert CurveStore(location).append(_curves(range(40))) == 0
    assert CurveStore(location).ids() == set(before["trial"].values.tolist())


def test_readers_never_miss_a_trial_during_compaction(
    location: Location, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CurveStore(location)
    for start in range(0, 30, 10):
        store.append(_curves(range(start, start + 10)))
    expected = store.read()
    compactor, reader = CurveStore(location), CurveStore(location)

    # Between the merged part's commit and the deletes, trials are in two parts.
    delete = compactor.log._delete
    seen: list[xr.Dataset] = []

    def read_then_delete(paths: list[str]) -> None:
        seen.append(reader.read())
        delete(paths)

    monkeypatch.setattr(compactor.log, "_delete", read_then_delete)
    store.append(_curves(range(30, 40)))
    expected = store.read()
    assert compactor.compact() == 4
    assert len(seen) >= 2  # before the markers are deleted, and between markers and folders
    for data in seen:
        xr.testing.assert_identical(data, expected)

    # A reader that loaded the parts just before a compaction deleted them reads again.
    store.append(_curves(range(40, 50)))
    expected = store.read()
    load = reader.log._load
    calls: list[int] = []

    def load_then_compact(names: list[str]) -> Any:
        blocks = load(names)
        if not calls:
            CurveStore(location).compact()
        calls.append(len(names))
        return blocks

    monkeypatch.setattr(reader.log, "_load", load_then_compact)
    xr.testing.assert_identical(reader.read(), expected)
    assert calls == [2, 1]


def test_a_part_opens_on_its_own_with_xarray(location: Location) -> None:
    store = CurveStore(location)
    store.append(_curves(range(4)))
    (name,) = store.parts()
    url = location.url_of("curves", name)
    with xr.open_zarr(url, storage_options=location.storage_options) as part:
        assert part.attrs == {"format": "morphml.curves", "version": 1}
        assert part["trial"].values.tolist() == sorted(_curves(range(4)))
        assert part["val_loss"].sel(trial="t-002").dropna("epoch").values.tolist() == [
            p["val_loss"] for p in _curves(range(4))["t-002"]
        ]
    marker = json.loads(location.read(location.path("curves", name + ".commit")))
    assert marker == {
        "format": "morphml.curves.commit",
        "version": 1,
        "part": name,
        "trial_ids": sorted(_curves(range(4))),
        "count": 4,
    }


@pytest.mark.parametrize(
    ("curves", "match"),
    [
        ([("t", [])], r"curves must be a mapping from trial id to curve(?s:.*)fix: pass"),
        ({1: []}, r"trial ids must be strings(?s:.*)received: 1 \(int\)"),
        ({"t": {"epoch": 1}}, r"the curve of trial 't' is not a list of per-epoch points"),
        ({"t": "1,2,3"}, r"the curve of trial 't' is not a list(?s:.*)received: str"),
        ({"t": [0.5]}, r"point 0 of trial 't' is not a dict(?s:.*)received: float: 0.5"),
        (
            {"t": [{"epoch": 1, "x": 1.0}, {"x": 0.5}]},
            r"point 1 of trial 't' has no 'epoch'(?s:.*)received: keys \['x'\](?s:.*)fix: add",
        ),
        ({"t": [{"epoch": 1.5}]}, r"the epoch of point 0 of trial 't' is not an integer"),
        ({"t": [{"epoch": "1"}]}, r"is not an integer(?s:.*)received: '1' \(str\)"),
        (
            {"t": [{"epoch": 1, "val_loss": "high"}]},
            r"metric 'val_loss' of point 0 of trial 't' is not a number"
            r"(?s:.*)received: 'high' \(str\)(?s:.*)fix: convert 'val_loss' to float",
        ),
        ({"t": [{"epoch": 1, "ok": True}]}, r"metric 'ok' .* is not a number"),
        ({"t": [{"epoch": 1, "x": None}]}, r"is not a number(?s:.*)float\('nan'\)"),
        ({"t": [{"epoch": 1, "trial": 0.1}]}, r"invalid metric name(?s:.*)received: 'trial'"),
        ({"t": [{"epoch": 1, "a/b": 0.1}]}, r"invalid metric name"),
        (
            {"t": [{"epoch": 2}, {"epoch": 2.0}]},
            r"has an epoch more than once(?s:.*)received: epochs \[2\] repeated",
        ),
    ],
)
def test_invalid_curves_are_rejected_with_a_fix(curves: Any, match: str) -> None:
    store = CurveStore(Location(f"memory://curves-{uuid.uuid4().hex}"))
    with pytest.raises(StorageInputError, match=match):
        store.append(
            {"fine": [{"epoch": 1, "val_loss": 0.5}], **curves}
            if isinstance(curves, dict)
            else curves
        )
    assert store.parts() == []  # nothing of a rejected batch is written


def test_a_marker_from_a_newer_version_is_refused() -> None:
    location = Location(f"memory://curves-{uuid.uuid4().hex}")
    name = new_part_name(".zarr")
    marker = {"format": "morphml.curves.commit", "version": 99, "part": name, "trial_ids": []}
    location.write_atomic(location.path("curves", name + ".commit"), json.dumps(marker).encode())
    with pytest.raises(
        StorageError, match=r"is not one this version can read(?s:.*)fix: upgrade"
    ) as raised:
        CurveStore(location).ids()
    assert not isinstance(raised.value, InputError)


def test_a_committed_part_with_its_data_gone_is_reported() -> None:
    location = Location(f"memory://curves-{uuid.uuid4().hex}")
    store = CurveStore(location)
    store.append(_curves(range(2)))
    location.fs.rm(location.path("curves", store.parts()[0]), recursive=True)
    with pytest.raises(
        StorageError, match=r"kept changing or vanishing(?s:.*)delete the \.commit"
    ) as raised:
        store.read()
    assert not isinstance(raised.value, InputError)
