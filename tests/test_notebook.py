"""`Search` in Jupyter: the HTML summary, the live widget and the figures, on real searches
on a cluster of worker processes."""

from __future__ import annotations

import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="Search.plot draws with matplotlib")

from distributed import Client
from IPython.core.formatters import DisplayFormatter

from morphml_dask import notebook
from morphml_dask.driver import Search
from morphml_dask.exceptions import InputError, StorageError
from morphml_dask.faults import FlakyTask
from morphml_dask.optim import RandomSearch, RegularizedEvolution
from morphml_dask.report import draw_figure
from morphml_dask.space import CellSpace
from morphml_dask.tasks import NB201TabularTask
from morphml_dask.testing import local_client

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
TRIALS = 40


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with local_client(n_workers=2, threads_per_worker=1) as client:
        yield client


@pytest.fixture(scope="module")
def finished(client: Client, tmp_path_factory: pytest.TempPathFactory) -> Search:
    """A finished search of 40 trials, about a tenth of them failed, some reused."""
    search = Search(
        RegularizedEvolution(CellSpace(), population_size=8, max_trials=TRIALS, seed=0),
        FlakyTask(NB201TabularTask(), raise_rate=0.1, nan_rate=0.0),
        # A folder: the workers, processes of their own, reach it too (not the driver's memory).
        store=str(tmp_path_factory.mktemp("notebook") / "store"),
        client=client,
        persist_interval=0.2,
    )
    search.run()
    return search


def _summary(page: str) -> dict[str, str]:
    """The summary's rows as {label: cell text}, tags stripped."""
    rows = re.findall(r"<tr><th[^>]*>(.*?)</th><td[^>]*>(.*?)</td></tr>", page)
    return {label: re.sub(r"<[^>]+>", "", value) for label, value in rows}


def _live_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "morphml-live-summary"]


def test_the_summary_counts_are_those_of_the_stored_table(finished: Search, client: Client) -> None:
    table = finished.results()
    summary = _summary(finished._repr_html_())
    failed = int((table["state"] == "fail").sum())
    reused = int(table["reused"].sum())
    assert len(table) == TRIALS and failed > 0 and reused > 0
    assert summary["state"] == "finished"
    assert summary["done"] == str(len(table))
    assert summary["failed"] == str(failed)
    assert summary["reused"] == str(reused)
    assert summary["pruned"] == "0"  # no pruner
    assert summary["running"] == "0" and summary["retried"] == "0"
    assert summary["submitted"] == str(len(table) - reused)  # reused results ran nowhere
    best = finished.store.best(1, "val_accuracy", "maximize").iloc[0]
    assert summary["best val_accuracy (maximize)"] == (
        f"{best['val_accuracy']:.6g} ({best['trial_id']})"
    )
    assert summary["store"] == finished.store.url
    assert summary["dashboard"] == client.dashboard_link
    assert re.fullmatch(r"\d+\.\d s", summary["elapsed"])
    elapsed = float(summary["elapsed"].split()[0])
    time.sleep(0.2)  # a finished search's elapsed time stands still
    assert _summary(finished._repr_html_())["elapsed"] == summary["elapsed"]
    assert finished.finished_at is not None and finished.started_at is not None
    assert elapsed == pytest.approx(finished.finished_at - finished.started_at, abs=0.06)


def test_the_summary_counts_the_trials_a_pruner_stopped(client: Client, tmp_path: Path) -> None:
    import scripted_trials

    from morphml_dask.prune import SuccessiveHalving
    from morphml_dask.space import FunctionSpace
    from morphml_dask.tasks import FunctionTask

    optimizer = RandomSearch(
        FunctionSpace(scripted_trials.space), budget=9, max_trials=12, seed=2, objective="score"
    )
    search = Search(
        optimizer,
        FunctionTask(scripted_trials.climb, objective="score"),
        store=str(tmp_path / "store"),
        client=client,
        pruner=SuccessiveHalving(min_budget=1, eta=3, max_budget=9),
    )
    table = search.run()
    pruned = int((table["state"] == "pruned").sum())
    assert pruned > 0
    summary = _summary(search._repr_html_())
    assert summary["pruned"] == str(pruned) and summary["done"] == str(len(table))
    assert summary["failed"] == "0"


def test_a_finished_search_shows_html_and_no_widget(finished: Search) -> None:
    data, _ = DisplayFormatter().format(finished)  # type: ignore[no-untyped-call]
    assert WIDGET_VIEW not in data
    assert data["text/html"] == finished._repr_html_()
    assert not _live_threads()


def test_a_running_search_shows_a_widget_that_stops_refreshing_when_it_ends(
    client: Client, tmp_path: Path
) -> None:
    # Far more trials than it can run in the test: it runs until stopped.
    search = Search(
        RandomSearch(CellSpace(), max_trials=100_000, seed=1),
        NB201TabularTask(),
        store=str(tmp_path / "store"),
        client=client,
        persist_interval=0.2,
    ).start()
    try:
        data, _ = DisplayFormatter().format(search)  # type: ignore[no-untyped-call]
        assert set(data[WIDGET_VIEW]) >= {"model_id", "version_major"}
        assert _summary(data["text/html"])["state"] == "running"
        assert len(_live_threads()) == 1  # the displayed widget's
        live = notebook.live_summary(search, interval=0.1)
        assert live is not None
        deadline = time.monotonic() + 30
        while int(_summary(live.widget.value)["done"]) < 10:
            assert time.monotonic() < deadline, "the widget never showed 10 finished trials"
            time.sleep(0.1)
        assert _summary(live.widget.value)["state"] == "running"
    finally:
        search.stop()
        table = search.wait()
    live.thread.join(timeout=5)
    assert not live.thread.is_alive()
    deadline = time.monotonic() + 5  # the displayed widget refreshes once a second
    while _live_threads():
        assert time.monotonic() < deadline, "a live summary kept refreshing after the end"
        time.sleep(0.1)
    final = _summary(live.widget.value)
    assert final["state"] == "stopped"
    assert final["done"] == str(len(table))
    assert final["running"] == "0"
    refreshes = live.refreshes
    time.sleep(0.3)
    assert live.refreshes == refreshes


def test_without_ipywidgets_a_running_search_shows_static_html(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import raises ImportError
    search = Search(
        RandomSearch(CellSpace(), max_trials=100_000, seed=2),
        NB201TabularTask(),
        store=str(tmp_path / "store"),
        client=client,
    ).start()
    try:
        assert notebook.live_summary(search) is None
        data, _ = DisplayFormatter().format(search)  # type: ignore[no-untyped-call]
        assert WIDGET_VIEW not in data
        assert _summary(data["text/html"])["state"] == "running"
        assert not _live_threads()
    finally:
        search.stop()
        search.wait()


def _points(figure: object, axes_index: int = 0) -> int:
    axes = figure.axes[axes_index]  # type: ignore[attr-defined]
    return sum(len(collection.get_offsets()) for collection in axes.collections)


def test_plots_have_a_point_per_trial(finished: Search) -> None:
    table = finished.results()
    complete = table[table["state"] == "complete"]
    best = finished.plot("best")
    assert _points(best, 0) == len(complete)  # by the order asked
    assert _points(best, 1) == complete["end_time"].notna().sum() > 0  # by time: those that ran
    assert _points(finished.plot("pareto")) == len(complete)
    ran = table[~table["reused"]]
    assert len(finished.plot("timeline").axes[0].patches) == len(ran)
    with_curves = set(finished.curves()["trial"].values.tolist())
    top = finished.store.best(3, "val_accuracy", "maximize")["trial_id"]
    lines = finished.plot("curves", top=3).axes[0].lines
    assert [line.get_label() for line in lines] == [t for t in top if t in with_curves]


def test_results_and_curves_are_the_stores(finished: Search) -> None:
    results = finished.results()
    assert results.equals(finished.store.trials())
    curves = finished.curves()
    trained = results[(results["state"] == "complete") & ~results["reused"]]
    assert sorted(curves["trial"].values.tolist()) == sorted(trained["trial_id"])
    assert set(curves.dims) == {"trial", "epoch"}
    assert curves["epoch"].values.tolist() == [12]


def test_an_unknown_plot_kind_is_refused(finished: Search) -> None:
    with pytest.raises(
        InputError,
        match=r"unknown plot kind 'loss'\n  expected: one of \['best', 'pareto', 'curves', 'timeline'\]\n  received: 'loss'\n  fix: call e.g. search.plot\(\"best\"\)",
    ):
        finished.plot("loss")


def test_an_unknown_report_figure_is_refused(finished: Search) -> None:
    with pytest.raises(
        InputError, match=r"unknown report figure 'best'\n  expected: one of \['best_so_far', "
    ):
        draw_figure("best", finished.store)


def test_plotting_before_any_result_is_refused() -> None:
    url = f"memory://notebook-{uuid.uuid4().hex}"
    search = Search(RandomSearch(CellSpace(), max_trials=4, seed=0), NB201TabularTask(), store=url)
    assert search.state == "not started"
    with pytest.raises(
        StorageError,
        match=rf"no results to plot yet\n  expected: a search with at least one stored trial\n  received: no trials in '{url}'\n  fix: start the search \(search.start\(\)\) and plot once trials have finished",
    ):
        search.plot("best")
