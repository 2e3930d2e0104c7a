from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


_GOOD = {
    "name": "rejected",
    "space": {"name": "nb201-cell"},
    "task": {"name": "nb201-tabular"},
    "optimizer": {"name": "random-search"},
    "max_trials": 4,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optimizer": {"name": "random-serch"}}, "fix: set optimizer.name to random-search"),
        ({"max_trials": 0}, "invalid value for max_trials"),
        ({"task": {"name": "nb201-tabular", "dataset": "mnist"}}, "unknown NAS-Bench-201 dataset"),
        ({"storage_options": "key=abc"}, "invalid value for storage_options"),
        ({"store": "nosuchprotocol://bucket/x"}, "cannot open the store"),
        ({"max_trails": 4}, "unknown key max_trails"),
    ],
)
def test_a_rejected_experiment_exits_2_and_writes_nothing(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    store = tmp_path / "store"
    document = {**_GOOD, "store": str(store), **change}
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump(document))
    done = subprocess.run(
        [*MORPHML, "run", str(experiment)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("morphml: error: ")
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not store.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment.yaml"]


def test_invalid_yaml_exits_2(tmp_path: Path) -> None:
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text("name: [unclosed\n")
    done = subprocess.run(
        [*MORPHML, "run", str(experiment)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "morphml: error: " in done.stderr and "YAML" in done.stderr


def test_resume_from_an_unreachable_endpoint_says_what_to_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from morphml_dask.cli import main

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    options = json.dumps(
        {
            "endpoint_url": f"http://127.0.0.1:{closed}",
            "config_kwargs": {"retries": {"max_attempts": 1}},
        }
    )
    assert main(["resume", "s3://bucket/experiment", "--storage-options", options]) == 2
    error = capsys.readouterr().err
    assert "morphml: error: cannot read the store at s3://bucket/experiment" in error
    assert re.search(r"received: \w+(Error|Exception)", error), error
    assert "fix: check the URL, and for S3 the endpoint and credentials" in error
    assert "Traceback" not in error


def test_report_without_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from morphml_dask.cli import main
    from morphml_dask.optim import RandomSearch
    from morphml_dask.space import CellSpace
    from morphml_dask.storage import open_store
    from morphml_dask.testing import synthetic_result
    from morphml_dask.trial import TrialRecord

    store = open_store(str(tmp_path / "store"))
    trials = RandomSearch(CellSpace(), seed=0).ask(5)
    store.append_records([TrialRecord(t, synthetic_result(t)) for t in trials])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    status = main(["report", str(tmp_path / "store"), "--out", str(tmp_path / "report")])
    error = capsys.readouterr().err
    assert status == 2, error
    assert "needs the Python package 'matplotlib'" in error
    assert "fix: pip install 'morphml_dask[report]'" in error


@pytest.mark.parametrize(
    ("text", "received"),
    [("{not json", r"invalid JSON \(Expecting property name"), ('["a"]', r"\['a'\]")],
)
def test_storage_options_that_are_not_a_json_object_are_bad_store_input(
    text: str, received: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from morphml_dask.cli import _storage_options, main
    from morphml_dask.exceptions import StorageInputError

    with pytest.raises(
        StorageInputError,
        match=r"--storage-options is not a JSON object\n  expected: a JSON object of fsspec "
        rf"options, e.g. '{{\"endpoint_url\": \"http://...\"}}'\n  received: {received}.*\n"
        r"  fix: quote the whole object for the shell and use double quotes inside it",
    ):
        _storage_options(text)
    assert _storage_options('{"anon": true}') == {"anon": True}
    assert main(["report", "memory://nowhere", "--storage-options", text]) == 2
    assert "morphml: error: --storage-options is not a JSON object" in capsys.readouterr().err


def test_every_command_parses_its_arguments() -> None:
    from morphml_dask import cli

    parser = cli._parser()
    train = parser.parse_args(["train", "--epochs", "2", "--max-nodes", "3"])
    assert (train.epochs, train.max_nodes, train.seed, train.dataset) == (2, 3, 0, "digits")
    run = parser.parse_args(["run", "x.yaml", "--store", "s", "--cluster", "slurm"])
    assert (run.experiment, run.store, run.cluster, run.scheduler) == (
        Path("x.yaml"),
        "s",
        "slurm",
        None,
    )
    resume = parser.parse_args(["resume", "url", "--scheduler", "tcp://h:1", "--tls-cert", "c"])
    assert (resume.url, resume.scheduler, resume.tls_cert) == ("url", "tcp://h:1", "c")
    report = parser.parse_args(["report", "url", "--top", "3", "--objective", "loss"])
    assert (report.url, report.top, report.objective, report.out) == (
        "url",
        3,
        "loss",
        Path("report"),
    )
    assert (train.command, run.command, resume.command, report.command) == (
        cli._train,
        cli._run,
        cli._resume,
        cli._report,
    )


def test_the_progress_line_reads_the_search_status(capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from morphml_dask.cli import _Progress
    from morphml_dask.status import SearchStatus

    statuses = [
        SearchStatus(done=3, running=2, failed=1, reused=0, elapsed=4.2),
        SearchStatus(done=9, running=1, failed=1, reused=2, best_trial="t000007", elapsed=9.6),
        SearchStatus(done=12, running=0, failed=2, reused=2, best_trial="t000011", elapsed=20.0),
    ]
    shown = iter(statuses)
    search = SimpleNamespace(
        dashboard_link="http://127.0.0.1:8787/status", status=lambda: next(shown)
    )
    progress = _Progress(cast(Any, search), total=12)
    progress.interactive = False  # as in logs and CI: a line per 10 trials
    progress.show()
    progress.show()  # still in the first ten: nothing printed
    progress.show(final=True)
    assert capsys.readouterr().out.splitlines() == [
        "dashboard: http://127.0.0.1:8787/status (this search: http://127.0.0.1:8787/morphml)",
        "trials 3/12 done, 2 running, 1 failed, 0 reused; best -; 4s",
        "trials 12/12 done, 0 running, 2 failed, 2 reused; best t000011; 20s",
    ]
