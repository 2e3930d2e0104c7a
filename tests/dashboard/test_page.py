"""The morphml page's components, refilled through `SearchPage.update`: from a board fed by
hand, and from the scheduler's board during a real search whose trials report live and are
pruned."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import scripted_trials
from _watched import BUDGET, http_get, make_pruned_search
from distributed import Client
from prometheus_client.parser import text_string_to_metric_families

from morphml_dask.dashboard._board import LIVE_TRIALS, SearchBoard
from morphml_dask.dashboard._extension import boards_of
from morphml_dask.dashboard._page import STATE_COLOURS, STOPPED_COLOUR, SearchPage, live_colour
from morphml_dask.space import Config
from morphml_dask.status import SearchStatus


def _rows(page: SearchPage) -> list[dict[str, Any]]:
    """The page's live curves, one dict per line."""
    data = dict(page.live.data)
    return [dict(zip(data, values, strict=True)) for values in zip(*data.values(), strict=True)]


def test_the_live_curves_are_drawn_a_line_per_running_trial_the_stopped_greyed() -> None:
    board = SearchBoard("search", "val_loss", "minimize")
    board.update(
        [("t0", "pruned", None, None, 9, 0, "w", None, 0.0, 1.0, None, None)],
        SearchStatus(running=3),
        [
            ("t1", False, [1.0, 2.0], [0.9, 0.7]),
            ("t2", True, [1.0], [1.4]),
            ("t3", False, [1.0, 2.0, 3.0], [0.8, 0.6, 0.5]),
        ],
    )
    page = SearchPage(lambda: board)
    page.update()
    rows = _rows(page)
    # The stopped trial first, drawn under the others; then in the order they came.
    assert [row["trial"] for row in rows] == ["t2", "t1", "t3"]
    assert [row["state"] for row in rows] == ["told to stop", "running", "running"]
    assert rows[0]["colour"] == STOPPED_COLOUR and rows[0]["alpha"] < rows[1]["alpha"]
    assert [rows[1]["colour"], rows[2]["colour"]] == [live_colour("t1"), live_colour("t3")]
    assert live_colour("t1") != live_colour("t3")
    assert (rows[2]["steps"], rows[2]["values"]) == ([1.0, 2.0, 3.0], [0.8, 0.6, 0.5])
    assert page.figures["live"].yaxis.axis_label == "val_loss"
    # The pruned trial: a state of its own in the history, the header and the timeline.
    assert page.history.data["pruned"] == [1] and page.history.data["failed"] == [0]
    assert page.history.data["complete"] == [0]
    assert "morphml-pruned' data-trials='1'>1</b> pruned" in page.summary.text
    assert page.timeline.data["colour"] == [STATE_COLOURS["pruned"]]

    board.update([], SearchStatus(), [])  # every trial ended
    page.update()
    assert _rows(page) == []


def _scrape(base: str, search: str) -> dict[str, float]:
    """``morphml_trials`` of one search, by state."""
    return {
        sample.labels["state"]: sample.value
        for family in text_string_to_metric_families(http_get(f"{base}/metrics"))
        for sample in family.samples
        if sample.name == "morphml_trials" and sample.labels.get("search") == search
    }


def test_a_pruned_search_shows_its_live_curves_and_pruned_count(
    dashboard_client: Client, tmp_path: Path
) -> None:
    search = make_pruned_search(dashboard_client, tmp_path / "store", trials=12)
    cluster = dashboard_client.cluster
    assert cluster is not None  # a LocalCluster: its scheduler runs in this process
    page = SearchPage(boards_of(cluster.scheduler).latest)
    seen: list[dict[str, Any]] = []
    search.start()
    while search.running:
        page.update()
        rows = _rows(page)
        assert len(rows) <= LIVE_TRIALS
        seen.extend(rows)
        time.sleep(0.1)
    table = search.wait()

    configs = {r.trial_id: r.trial.arch for r in search.store.records()}
    quality = {t: c.value["quality"] for t, c in configs.items() if isinstance(c, Config)}
    # Every line is a running trial's objective, step by step, as the trial reported it.
    assert seen and {row["trial"] for row in seen} <= set(quality)
    for row in seen:
        assert row["steps"] == sorted(row["steps"]) and max(row["steps"], default=1) <= BUDGET
        expected = [scripted_trials.score(quality[row["trial"]], int(s)) for s in row["steps"]]
        assert row["values"] == pytest.approx(expected)
    # Trials told to stop are shown greyed until they return; only those the pruner stopped.
    greyed = {row["trial"] for row in seen if row["colour"] == STOPPED_COLOUR}
    _, decisions = search.pruning
    assert greyed and greyed <= {trial_id for trial_id, _ in decisions}
    running = [row for row in seen if row["state"] == "running"]
    assert running and all(row["colour"] == live_colour(row["trial"]) for row in running)

    # The search over: no live curve left; the pruned count on the page and in the metrics.
    page.update()
    assert _rows(page) == []
    pruned = int((table["state"] == "pruned").sum())
    assert pruned > 0 and search.status().pruned == pruned
    board = page.board()
    assert board is not None and (board.pruned, board.history[-1][3]) == (pruned, pruned)
    base = dashboard_client.dashboard_link.rsplit("/", 1)[0]
    metrics = _scrape(base, search.name)
    assert metrics["pruned"] == pruned
    assert metrics["complete"] == (table["state"] == "complete").sum() == len(table) - pruned
    assert metrics["failed"] == 0
