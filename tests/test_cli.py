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


@pytest.mark.parametrize(
    "command",
    [["resume"], ["report"], ["export", "--out", "never-written"]],
    ids=["resume", "report", "export"],
)
def test_a_store_at_an_unreachable_endpoint_says_what_to_check(
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from morphml_dask.cli import main
    from morphml_dask.testing import free_port

    closed = free_port()  # a port nobody listens on
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    options = json.dumps(
        {
            "endpoint_url": f"http://127.0.0.1:{closed}",
            "config_kwargs": {"retries": {"max_attempts": 1}},
        }
    )
    monkeypatch.chdir(tmp_path)
    url = "s3://bucket/experiment"
    assert main([command[0], url, *command[1:], "--storage-options", options]) == 2
    error = capsys.readouterr().err
    assert "morphml: error: cannot read the store at s3://bucket/experiment" in error
    assert re.search(r"received: \w+(Error|Exception)", error), error
    assert "fix: check the URL, and for S3 the endpoint and credentials" in error
    assert "Traceback" not in error
    assert not (tmp_path / "never-written").exists()


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
    assert (run.experiment, run.store, run.cluster, run.scheduler, run.upload) == (
        Path("x.yaml"),
        "s",
        "slurm",
        None,
        [],
    )
    uploads = parser.parse_args(["resume", "url", "--upload", "a.py", "--upload", "b.zip"])
    assert uploads.upload == [Path("a.py"), Path("b.zip")]
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
        SearchStatus(
            done=12, running=0, failed=2, pruned=5, reused=2, best_trial="t000011", elapsed=20.0
        ),
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
        "trials 3/12 done, 2 running, 1 failed, 0 pruned, 0 reused; best -; 4s",
        "trials 12/12 done, 0 running, 2 failed, 5 pruned, 2 reused; best t000011; 20s",
    ]


def test_a_pruned_search_counts_its_pruned_trials_and_the_report_the_epochs_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import scripted_trials

    from morphml_dask.cli import _drive, main
    from morphml_dask.driver import Search
    from morphml_dask.optim import RandomSearch
    from morphml_dask.prune import SuccessiveHalving
    from morphml_dask.space import FunctionSpace
    from morphml_dask.storage import open_store
    from morphml_dask.tasks import FunctionTask
    from morphml_dask.testing import local_client

    store, budget, trials = tmp_path / "store", 9, 16
    optimizer = RandomSearch(
        FunctionSpace(scripted_trials.space),
        budget=budget,
        max_trials=trials,
        seed=1,
        objective="score",
    )
    task = FunctionTask(scripted_trials.climb, objective="score")
    pruner = SuccessiveHalving(min_budget=1, eta=3, max_budget=budget)
    with local_client(n_workers=1, threads_per_worker=2) as client:
        search = Search(optimizer, task, store=str(store), client=client, pruner=pruner)
        assert _drive(search, trials) == 0
    table = open_store(str(store)).trials()
    pruned = table[table["state"] == "pruned"]
    assert len(pruned) > 0 and len(table) == trials
    shown = capsys.readouterr().out.splitlines()
    progress = next(line for line in shown if line.startswith(f"trials {trials}/{trials} done"))
    assert f" 0 failed, {len(pruned)} pruned, " in progress
    assert f"{trials} trials, 0 failed, {len(pruned)} pruned; results in {store}" in shown

    # Saved: each pruned trial's budget beyond the last epoch of its curve.
    curves = open_store(str(store)).curves()
    trained = {
        trial_id: int(curves.sel(trial=trial_id).dropna("epoch", how="all")["epoch"].max())
        for trial_id in pruned["trial_id"]
    }
    saved = sum(budget - epochs for epochs in trained.values())
    assert 0 < saved < trials * budget
    assert main(["report", str(store), "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out.splitlines()
    share = f"{saved / (trials * budget):.1%}"
    assert printed == [
        f"pruning stopped {len(pruned)} trials early and saved {saved} of "
        f"{trials * budget} epochs ({share})",
        str(tmp_path / "report" / "report.html"),
    ]


# -- your own code: a function search, its module uploaded -----------------------------------

_USER_MODULE = """
def space(s):
    return {"x": s.float("x", -2.0, 2.0)}


def fit(config, ctx):
    for epoch in range(ctx.trained_epochs + 1, ctx.budget + 1):
        ctx.report(epoch, loss=(config["x"] - 1.0) ** 2 + 1.0 / epoch)
"""


def _function_search(tmp_path: Path, module: str) -> Path:
    """An experiment in its own folder naming functions of a module kept elsewhere."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / f"{module}.py").write_text(_USER_MODULE)
    (tmp_path / "experiments").mkdir()
    experiment = tmp_path / "experiments" / "search.yaml"
    document = {
        "name": "uploaded",
        "space": {"function": f"{module}:space"},
        "task": {"function": f"{module}:fit", "objective": "loss", "direction": "minimize"},
        "optimizer": {"name": "random-search", "budget": 2, "seed": 0},
        "max_trials": 6,
        "store": str(tmp_path / "store"),
    }
    experiment.write_text(yaml.safe_dump(document))
    return experiment


def test_a_module_neither_installed_nor_uploaded_is_named_before_a_cluster_starts(
    tmp_path: Path,
) -> None:
    experiment = _function_search(tmp_path, "far_away_module")
    done = subprocess.run([*MORPHML, "run", str(experiment)], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "morphml: error: invalid value for space.function" in done.stderr
    assert "No module named 'far_away_module'" in done.stderr
    missing = subprocess.run(
        [*MORPHML, "run", str(experiment), "--upload", str(tmp_path / "code" / "nope.py")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "nope.py does not exist" in missing.stderr
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_run_uploads_the_module_to_a_running_cluster_and_searches_the_users_functions(
    tmp_path: Path,
) -> None:
    from morphml_dask import open_store
    from morphml_dask.testing import local_client

    experiment = _function_search(tmp_path, "uploaded_module")
    module = tmp_path / "code" / "uploaded_module.py"
    # Workers started here cannot import the module: only --upload brings it to them.
    with local_client(n_workers=1, threads_per_worker=2) as client:
        address = client.scheduler.address
        done = subprocess.run(
            [*MORPHML, "run", str(experiment), "--upload", str(module), "--scheduler", address],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"uploaded {module} to the workers" in done.stdout
    assert "6 trials, 0 failed" in done.stdout
    assert "best configuration: Config(x=" in done.stdout
    store = open_store(str(tmp_path / "store"))
    assert set(store.trials()["state"]) == {"complete"}
    curves = store.curves()
    assert curves.sizes["trial"] == 6 and curves["epoch"].values.tolist() == [1, 2]
    checkpoint = store.load_checkpoint()
    assert checkpoint is not None
    assert checkpoint.config["task"]["function"] == "uploaded_module:fit"
