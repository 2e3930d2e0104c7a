from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from morphml_dask import open_store
from morphml_dask.exceptions import InputError, StorageError, StorageInputError
from morphml_dask.storage import Checkpoint
from morphml_dask.testing import check_store, synthetic_result
from morphml_dask.trial import TrialRecord, TrialResult

PACKAGE = Path(__file__).parents[2] / "morphml_dask"


def test_contract_on_memory() -> None:
    check_store(lambda: open_store(f"memory://contract-{uuid.uuid4().hex}"))


def test_contract_on_a_local_folder(tmp_path: Path) -> None:
    folders = iter(range(100))
    check_store(lambda: open_store(str(tmp_path / f"run-{next(folders)}")))


def test_contract_on_the_s3_server(s3_url: str, s3_options: dict[str, Any]) -> None:
    prefixes = iter(range(100))
    check_store(lambda: open_store(f"{s3_url}-{next(prefixes)}", storage_options=s3_options))


def test_best_and_load_model(tmp_path: Path) -> None:
    import torch

    from morphml_dask.models import build_model, load_model
    from morphml_dask.optim import RandomSearch
    from morphml_dask.space import ArchGraph, DagSpace

    store = open_store(str(tmp_path / "run"))
    trials = RandomSearch(DagSpace(max_nodes=3, widths=(8,)), seed=0).ask(5)
    records = [
        TrialRecord(trial, TrialResult.complete(trial.id, {"val_accuracy": 50.0 + i}))
        for i, trial in enumerate(trials)
    ]
    assert store.append_records(records) == 5
    best = store.best(2)
    assert best["trial_id"].tolist() == [trials[4].id, trials[3].id]
    assert store.best(1, "val_accuracy", "minimize")["trial_id"].tolist() == [trials[0].id]

    torch.manual_seed(0)
    arch = trials[4].arch
    assert isinstance(arch, ArchGraph)
    model = build_model(arch, 10, in_channels=1)
    store.save_weights(trials[4].id, 0, model.state_dict(), num_classes=10, in_channels=1)
    loaded = load_model(store, trials[4].id)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x))
    assert not loaded.training
    saved = store.saved_weights(trials[4].id)
    assert (saved.trial_id, saved.rung, saved.num_classes, saved.in_channels) == (
        trials[4].id,
        0,
        10,
        1,
    )
    assert store.load_weights(trials[4].id).keys() == model.state_dict().keys()
    with pytest.raises(
        StorageInputError, match=r"(?s)no weights saved for trial 't000001'.*saved rungs \[\]"
    ):
        load_model(store, trials[0].id)
    with pytest.raises(
        StorageInputError,
        match=r"(?s)no weights saved for trial 't000005' rung 3.*saved rungs \[0\]",
    ):
        load_model(store, trials[4].id, rung=3)
    with pytest.raises(StorageInputError, match=r"(?s)no trial 'nope' in this store"):
        load_model(store, "nope")
    with pytest.raises(StorageInputError, match=r"(?s)no metric 'accuracy'.*val_accuracy"):
        store.best(1, "accuracy")


def test_the_storage_package_imports_no_torch() -> None:
    code = "import sys, morphml_dask.storage; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    for source in (PACKAGE / "storage").rglob("*.py"):
        assert "from morphml_dask.models" not in source.read_text(), f"{source} builds models"


def test_weights_are_loaded_without_pickle_code_execution(tmp_path: Path) -> None:
    """A weights file holding arbitrary objects is refused by torch.load(weights_only=True)."""
    import pickle

    import torch

    store = open_store(str(tmp_path / "run"))
    path = tmp_path / "run" / "artifacts" / "t000001" / "rung-0.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(
        pickle.dumps({"format": "morphml.weights", "payload": Checkpoint({})}, protocol=2)
    )
    with pytest.raises(pickle.UnpicklingError):
        store.load_weights("t000001")
    torch.save({"format": "morphml.weights", "state_dict": {}}, path)
    assert store.load_weights("t000001") == {}


def test_no_pickle_in_the_storage_path() -> None:
    for source in (PACKAGE / "storage").rglob("*.py"):
        text = source.read_text()
        assert "pickle" not in text, source
        assert "torch.load(" not in text or "weights_only=True" in text, source


def test_checkpoint_errors(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "run"))
    with pytest.raises(StorageInputError, match=r"(?s)not plain JSON.*no NaN or infinity"):
        store.save_checkpoint(Checkpoint({"score": float("inf")}))
    assert store.load_checkpoint() is None, "a rejected checkpoint was written"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.json").write_text(
        json.dumps({"format": "morphml.checkpoint", "version": 7})
    )
    with pytest.raises(
        StorageError, match=r"(?s)unsupported checkpoint version.*version 1.*version 7"
    ) as raised:
        store.load_checkpoint()
    assert not isinstance(raised.value, InputError), "content of the store is no bad input"
    (tmp_path / "run" / "checkpoint.json").write_text("{not json")
    with pytest.raises(StorageError, match=r"(?s)the checkpoint is not valid JSON"):
        store.load_checkpoint()
    (tmp_path / "run" / "checkpoint.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(StorageError, match=r"(?s)not a morphml checkpoint.*received: 'other'"):
        store.load_checkpoint()


def test_bad_urls() -> None:
    with pytest.raises(StorageInputError, match=r"(?s)invalid store URL.*received: ''"):
        open_store("")
    with pytest.raises(
        StorageInputError, match=r"(?s)cannot open the store at 'nosuchproto://x'.*install"
    ):
        open_store("nosuchproto://x")
    with pytest.raises(StorageInputError, match=r"(?s)the store URL 's3://' names no bucket"):
        open_store("s3://")
    with pytest.raises(StorageInputError, match=r"(?s)incomplete S3 credentials"):
        open_store("s3://bucket/runs", {"key": "AKIA"})
    with pytest.raises(StorageInputError, match=r"(?s)unknown S3 storage option"):
        open_store("s3://bucket/runs", {"endpoint": "http://127.0.0.1:9"})
    with pytest.raises(StorageInputError, match=r"(?s)invalid S3 storage option anon"):
        open_store("s3://bucket/runs", {"anon": "yes"})
    with pytest.raises(ValueError, match=r"(?s)invalid storage_options"):
        open_store("memory://runs", "anon=true")  # type: ignore[arg-type]


def test_bad_records_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    from morphml_dask.optim import RandomSearch
    from morphml_dask.space import CellSpace

    store = open_store(str(tmp_path / "run"))
    (trial,) = RandomSearch(CellSpace(), seed=0).ask(1)
    good = TrialRecord(trial, synthetic_result(trial))
    cases: list[tuple[Any, str]] = [
        (good, r"records must be a sequence of TrialRecord.*received: TrialRecord"),
        ("t1", r"records must be a sequence of TrialRecord.*received: str"),
        ([good, good.to_dict()], r"record 1 is not a TrialRecord.*received: dict"),
        (
            [TrialRecord(trial, synthetic_result(trial), worker=3)],  # type: ignore[arg-type]
            r"column 'worker' of trial row 0 has the wrong type.*expected: a str or None"
            r".*received: 3 \(int\).*fix: convert the value, and store TrialRecord",
        ),
        (
            [TrialRecord(trial, TrialResult.complete(trial.id, {}), attempt="2")],  # type: ignore[arg-type]
            r"column 'attempt' .*expected: an int\n.*received: '2' \(str\)",
        ),
        (
            [TrialRecord(trial, TrialResult(trial.id, "running"))],  # type: ignore[arg-type]
            r"trial row 0 has an unknown state.*received: 'running'",
        ),
        (
            [TrialRecord(trial, TrialResult(trial.id, "complete", {"acc": "high"}))],  # type: ignore[arg-type, dict-item]
            r"metric 'acc' of a result is not a number.*received: 'high' \(str\)",
        ),
    ]
    for records, message in cases:
        with pytest.raises(StorageInputError, match=rf"(?s){message}"):
            store.append_records(records)
    assert store.records() == [] and not (tmp_path / "run" / "trials").exists()
    with pytest.raises(StorageInputError, match=r"(?s)no trial 3 in this store"):
        store.record(3)  # type: ignore[arg-type]


WRITER = """
import sys
from morphml_dask import open_store
from morphml_dask.optim import RandomSearch
from morphml_dask.space import CellSpace
from morphml_dask.testing import synthetic_result
from morphml_dask.trial import TrialRecord

store = open_store(sys.argv[1])
optimizer = RandomSearch(CellSpace(), seed=0)
while True:
    trials = optimizer.ask(20)
    store.append_records([TrialRecord(t, synthetic_result(t)) for t in trials])
    store.append_curves({t.id: [{"epoch": 1, "val_accuracy": 1.0}] for t in trials})
    print(" ".join(t.id for t in trials), flush=True)
"""


def test_a_writer_killed_mid_write_leaves_a_readable_store(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    confirmed: list[str] = []
    deadline = time.monotonic() + 60
    while len(confirmed) < 200 and time.monotonic() < deadline:
        confirmed += writer.stdout.readline().split()
    time.sleep(0.05)  # let it get into the middle of the next write
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert len(confirmed) >= 200
    store = open_store(url)
    table = store.trials()
    assert set(confirmed) <= set(table["trial_id"])
    assert table["trial_id"].is_unique
    assert set(confirmed) <= set(map(str, store.curves()["trial"].values))
    # The store keeps working after the crash: compaction also clears half-written parts.
    assert store.compact() >= 1
    assert set(confirmed) <= set(store.trials()["trial_id"])


def test_a_trial_and_its_curve_are_stored_exactly_once(tmp_path: Path) -> None:
    from morphml_dask.optim import RandomSearch
    from morphml_dask.space import CellSpace

    store = open_store(str(tmp_path / "run"))
    (trial,) = RandomSearch(CellSpace(), seed=0).ask(1)
    result = synthetic_result(trial)
    assert store.append_curves({trial.id: [{"epoch": 1, "val_accuracy": 3.0}]}) == 1
    assert store.append_records([TrialRecord(trial, result, worker="a")]) == 1
    assert store.append_curves({trial.id: [{"epoch": 1, "val_accuracy": 4.0}]}) == 0
    assert store.append_records([TrialRecord(trial, result, worker="b")]) == 0
    table = store.trials()
    assert len(table) == 1 and table["worker"].tolist() == ["a"]
    assert store.curves()["val_accuracy"].values.ravel().tolist() == [3.0]
    assert store.record(trial.id) == TrialRecord(trial, result, worker="a")


def test_a_result_of_another_trial_makes_no_record() -> None:
    from morphml_dask.space import ArchGraph, Node
    from morphml_dask.trial import Trial

    arch = ArchGraph(["input", Node("conv", kernel=3, channels=8), "output"], [(0, 1), (1, 2)])
    with pytest.raises(
        InputError,
        match=r"(?s)belongs to another trial.*expected: a TrialResult with trial_id 'a'"
        r".*received: trial_id 'b'",
    ):
        TrialRecord(Trial("a", arch, budget=1), TrialResult.complete("b", {}))
