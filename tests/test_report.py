"""`morphml report`: the HTML page and the PNG figures of a real stored search."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the report draws its figures with matplotlib")

from distributed import Client

from morphml_dask.cli import main
from morphml_dask.driver import Search
from morphml_dask.exceptions import StorageError
from morphml_dask.faults import FlakyTask
from morphml_dask.optim import RandomSearch, RegularizedEvolution
from morphml_dask.report import FIGURES, EpochsSaved, epochs_saved, write_report
from morphml_dask.space import CellSpace
from morphml_dask.storage import open_store
from morphml_dask.tasks import NB201TabularTask
from morphml_dask.testing import local_client
from morphml_dask.trial import Trial, TrialRecord, TrialResult

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with local_client(n_workers=1, threads_per_worker=2) as client:
        yield client


@pytest.fixture(scope="module")
def stored_search(client: Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of a finished search of 30 trials, about a tenth of them failed."""
    url = str(tmp_path_factory.mktemp("search") / "store")
    Search(
        RegularizedEvolution(CellSpace(), population_size=8, max_trials=30, seed=0),
        FlakyTask(NB201TabularTask(), raise_rate=0.1, nan_rate=0.0),
        store=url,
        client=client,
        persist_interval=0.2,
    ).run()
    return url


@pytest.fixture(scope="module")
def report(stored_search: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("report")
    assert main(["report", stored_search, "--out", str(out), "--top", "3"]) == 0
    return out, (out / "report.html").read_text(encoding="utf-8")


def _section(page: str, table_id: str) -> list[list[str]]:
    """The body rows of the HTML table ``table_id``, as cell texts."""
    match = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', page)
    assert match is not None, f"no table {table_id}"
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", match[1])]


def test_the_summary_names_the_best_trial_of_the_store(
    stored_search: str, report: tuple[Path, str]
) -> None:
    store = open_store(stored_search)
    table = store.trials()
    best = store.best(1, "val_accuracy", "maximize").iloc[0]
    summary = dict(_section(report[1], "summary"))
    assert summary["trials"] == str(len(table)) == "30"
    assert summary["complete"] == str(int((table["state"] == "complete").sum()))
    assert summary["failed"] == str(int((table["state"] == "fail").sum()))
    assert summary["best trial"] == best["trial_id"]
    assert summary["best val_accuracy"] == f"{best['val_accuracy']:.6g}"
    assert summary["best fingerprint"] == best["fingerprint"]
    assert summary["store"] == store.url
    top = _section(report[1], "top")
    expected = store.best(3, "val_accuracy", "maximize")["trial_id"].tolist()
    assert [row[1] for row in top] == expected


def test_the_failure_and_worker_tables_match_the_store(
    stored_search: str, report: tuple[Path, str]
) -> None:
    table = open_store(stored_search).trials()
    failed = table[table["state"] == "fail"]
    assert len(failed) > 0, "the flaky task should have failed some trials"
    assert set(failed["error_kind"]) == {"error"}
    failures = _section(report[1], "failures")
    assert [row[:2] for row in failures] == [["error", str(len(failed))]]
    assert "injected failure" in failures[0][2]
    workers = _section(report[1], "workers")
    ran = table[~table["reused"]]  # reused results ran on no worker
    assert ran["worker"].notna().all() and table[table["reused"]]["worker"].isna().all()
    assert [row[0] for row in workers] == sorted(ran["worker"].unique())
    assert [int(row[1]) for row in workers] == ran["worker"].value_counts().sort_index().tolist()
    assert sum(int(row[2]) for row in workers) == len(failed)


def test_the_page_embeds_every_figure_and_writes_them_as_pngs(report: tuple[Path, str]) -> None:
    import matplotlib.image

    out, page = report
    assert page.count("data:image/png;base64,") == len(FIGURES) == 7
    assert 'src="report' not in page and '.png"' not in page  # no links to files
    for name in FIGURES:
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC), name
        pixels = np.asarray(matplotlib.image.imread(out / f"{name}.png"))
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100, name
        colours = np.unique(pixels[::4, ::4].reshape(-1, pixels.shape[-1]), axis=0)
        assert len(colours) > 10, f"{name}.png is nearly blank"


def test_another_objective_ranks_by_it(stored_search: str, tmp_path: Path) -> None:
    page = write_report(stored_search, tmp_path, objective="params", top=2).read_text("utf-8")
    table = open_store(stored_search).trials()
    done = table[table["state"] == "complete"]
    best = done.sort_values("params", ascending=False, kind="stable").iloc[0]
    summary = dict(_section(page, "summary"))
    assert summary["objective"] == "params (maximize)"
    assert summary["best params"] == f"{best['params']:.6g}"


def test_an_unknown_objective_is_refused(stored_search: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"no metric 'accuracy' in the trials table"):
        write_report(stored_search, tmp_path, objective="accuracy")


def test_an_empty_store_exits_2_with_a_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "nothing"
    assert main(["report", str(empty), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "no trials to report at" in error
    assert "received: an empty or missing store" in error
    assert "fix: check the URL (and --storage-options), or run `morphml run` first" in error
    assert not (tmp_path / "out" / "report.html").exists()


def test_a_report_reads_an_s3_store(
    s3_url: str, s3_options: dict[str, Any], stored_search: str, tmp_path: Path
) -> None:
    import s3fs

    s3fs.S3FileSystem(**s3_options).put(f"{stored_search}/", s3_url, recursive=True)
    options = json.dumps(s3_options)
    assert main(["report", s3_url, "--out", str(tmp_path), "--storage-options", options]) == 0
    remote = dict(_section((tmp_path / "report.html").read_text("utf-8"), "summary"))
    local_page = write_report(stored_search, tmp_path / "local").read_text("utf-8")
    local = dict(_section(local_page, "summary"))
    assert remote.pop("store") == s3_url
    assert local.pop("store") != s3_url
    assert remote == local and remote["trials"] == "30"


def _arch_space(s: Any) -> dict[str, Any]:
    """A function space with a cell among its decisions."""
    return {
        "lr": s.float("lr", 1e-3, 1e-1, log=True),
        "layers": [s.int(f"width_{i}", 8, 64) for i in range(s.int("depth", 1, 3))],
        "cell": s.arch("cell", CellSpace()),
    }


def test_a_function_search_shows_its_best_configuration_as_json(tmp_path: Path) -> None:
    from morphml_dask.report import draw_figure
    from morphml_dask.space import FunctionSpace

    store = open_store(str(tmp_path / "store"))
    space = FunctionSpace(_arch_space)
    rng = np.random.default_rng(0)
    trials = [Trial(f"t{i:06d}", space.sample(rng), 2) for i in range(1, 7)]
    store.append_records(
        [
            TrialRecord(t, TrialResult.complete(t.id, {"val_loss": float(i)}), worker="w")
            for i, t in enumerate(trials, start=1)
        ]
    )
    store.append_curves(
        {t.id: [{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": 1.0}] for t in trials}
    )
    best = trials[0].arch
    figure = draw_figure("best_arch", store, objective="val_loss", direction="minimize")
    (axes,) = figure.axes
    assert axes.get_title().startswith(f"Best configuration: {trials[0].id} (")
    text = axes.texts[0].get_text()
    assert json.dumps(best.value["lr"]) in text  # type: ignore[union-attr]
    assert '"cell": "ArchGraph(' in text
    out = tmp_path / "report"
    assert (
        main(["report", str(tmp_path / "store"), "--out", str(out), "--objective", "val_loss"]) == 0
    )
    assert all((out / f"{name}.png").read_bytes().startswith(PNG_MAGIC) for name in FIGURES)


def _curve(epochs: int, quality: float) -> list[dict[str, float]]:
    return [
        {"epoch": e, "val_accuracy": quality * e, "val_loss": 1 / e} for e in range(1, epochs + 1)
    ]


def _pruned_store(url: str) -> tuple[list[TrialRecord], dict[str, list[dict[str, float]]]]:
    """A store of 8 trials of budget 9: 3 complete (the third reused), 1 failed, 4 pruned
    at epochs 1, 1, 3 and 4; returns the records and curves written."""
    asked = RandomSearch(CellSpace(), seed=0).ask(8)
    trials = [Trial(t.id, t.arch, 9) for t in asked]
    curves = {t.id: _curve(9, 10.0 - i) for i, t in enumerate(trials[:2])}
    results = [
        TrialResult.complete(t.id, {"val_accuracy": 9 * (10.0 - i)})
        for i, t in enumerate(trials[:2])
    ]
    results.append(TrialResult.complete(trials[2].id, {"val_accuracy": 5.0}))
    results.append(TrialResult.failed(trials[3].id, "CUDA error: launch failure", kind="cuda"))
    for t, stop in zip(trials[4:], (1, 1, 3, 4), strict=True):
        curves[t.id] = _curve(stop, 2.0)
        # A better value than any complete trial's, at a lower fidelity: never the best.
        results.append(TrialResult.pruned(t.id, {"val_accuracy": 100.0 + stop}))
    records = []
    for i, (trial, result) in enumerate(zip(trials, results, strict=True)):
        if i == 2:  # answered from an earlier trial: it ran nowhere
            records.append(TrialRecord(trial, result, reused=True))
        else:
            where = f"tcp://w{i % 2}"
            records.append(TrialRecord(trial, result, worker=where, start_time=i, end_time=i + 1))
    store = open_store(url)
    store.append_records(records)
    store.append_curves(curves)
    return records, curves


def test_the_report_counts_pruned_trials_and_the_epochs_pruning_saved(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    records, _ = _pruned_store(url)
    # Saved: 8 + 8 + 6 + 5 epochs of the pruned trials' budgets; the budget: the 7 that ran.
    saved = epochs_saved(open_store(url))
    assert saved == EpochsSaved(pruned=4, saved=27, budget=63)
    assert str(saved) == "27 of 63 epochs (42.9%)" and saved.share == pytest.approx(27 / 63)

    page = write_report(url, tmp_path / "report").read_text("utf-8")
    summary = dict(_section(page, "summary"))
    assert (summary["trials"], summary["complete"], summary["failed"]) == ("8", "3", "1")
    assert (summary["pruned"], summary["reused"]) == ("4", "1")
    assert summary["epochs saved by pruning"] == "27 of 63 epochs (42.9%)"
    # Pruned trials are no failures, nor the best: a lower fidelity.
    assert [row[:2] for row in _section(page, "failures")] == [["cuda", "1"]]
    assert summary["best trial"] == records[0].trial_id
    workers = {row[0]: row[1:4] for row in _section(page, "workers")}
    assert workers == {"tcp://w0": ["3", "0", "2"], "tcp://w1": ["4", "1", "2"]}


def test_a_pruned_trial_without_a_stored_curve_saves_nothing_and_no_pruning_saves_nothing(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "store")
    records, curves = _pruned_store(url)
    without = open_store(str(tmp_path / "without"))
    without.append_records(records)
    without.append_curves({k: v for k, v in curves.items() if k != records[-1].trial_id})
    assert epochs_saved(without) == EpochsSaved(pruned=4, saved=27 - 5, budget=63)

    complete = open_store(str(tmp_path / "complete"))
    complete.append_records(records[:2])
    assert epochs_saved(complete) == EpochsSaved(pruned=0, saved=0, budget=18)
    assert str(epochs_saved(complete)) == "0 of 18 epochs (0.0%)"


def _inherited(trial_id: str, parent: str, mutation: str, accuracy: float) -> TrialRecord:
    arch = CellSpace().sample(np.random.default_rng(len(trial_id) + ord(trial_id[-1])))
    trial = Trial(
        trial_id,
        arch,
        1,
        parent=parent,
        parent_budget=4,
        info={"mutation": mutation},
        inherits=True,
    )
    result = TrialResult.complete(trial_id, {"val_accuracy": accuracy})
    return TrialRecord(trial, result, inherited_fraction=0.75)


def test_the_family_tree_labels_each_edge_with_the_mutation(tmp_path: Path) -> None:
    from morphml_dask.report import draw_figure

    store = open_store(str(tmp_path / "store"))
    root = Trial("t000001", CellSpace().sample(np.random.default_rng(0)), 4)
    store.append_records(
        [
            TrialRecord(root, TrialResult.complete("t000001", {"val_accuracy": 90.0})),
            _inherited("t000002", "t000001", "widen n2 8->16", 92.0),
            _inherited("t000003", "t000002", "skip 0->3", 95.0),
            _inherited("t000004", "t000001", "kernel n1 3->5", 80.0),
        ]
    )
    figure = draw_figure("family_tree", store)
    texts = [text.get_text() for axes in figure.axes for text in axes.texts]
    assert "widen n2 8->16  (75% inherited)" in texts and "skip 0->3  (75% inherited)" in texts
    assert not any("kernel" in text for text in texts), "a cousin of the best was drawn"
    boxes = [text for text in texts if text.startswith("t0000")]
    assert boxes == [
        "t000001   val_accuracy 90   4 epochs",
        "t000002   val_accuracy 92   1 epoch",
        "t000003   val_accuracy 95   1 epoch",
    ]
    alone = open_store(str(tmp_path / "alone"))
    alone.append_records([TrialRecord(root, TrialResult.complete("t000001", {"val_accuracy": 1}))])
    texts = [t.get_text() for a in draw_figure("family_tree", alone).axes for t in a.texts]
    assert "the best trial, t000001, started from scratch: it has no ancestors" in texts
