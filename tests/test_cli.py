from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from morphml_dask import ArchGraph, Node

MORPHML = [sys.executable, "-m", "morphml_dask.cli"]


def test_train_runs_end_to_end_and_writes_json(tmp_path: Path) -> None:
    arch = ArchGraph(["input", Node("conv", kernel=3, channels=16), "output"], [(0, 1), (1, 2)])
    (tmp_path / "arch.json").write_text(json.dumps(arch.to_dict()))
    out = tmp_path / "runs" / "result.json"
    done = subprocess.run(
        [
            *MORPHML,
            "train",
            "--arch",
            str(tmp_path / "arch.json"),
            "--epochs",
            "2",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"architecture {arch.fingerprint}" in done.stdout
    assert "val_accuracy" in done.stdout
    document = json.loads(out.read_text())
    assert ArchGraph.from_dict(document["arch"]) == arch
    assert [p["epoch"] for p in document["curve"]] == [1.0, 2.0]
    assert document["task"]["dataset"] == "digits"


def test_bad_input_exits_2_with_the_message_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "arch.json"
    bad.write_text(json.dumps({"format": "morphml.arch", "version": 1, "nodes": [{"op": "lstm"}]}))
    done = subprocess.run(
        [*MORPHML, "train", "--arch", str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "morphml: error: unknown op 'lstm'" in done.stderr
    assert "fix: use one of the known op names" in done.stderr
    assert "Traceback" not in done.stderr
