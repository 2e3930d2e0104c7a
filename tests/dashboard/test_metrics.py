"""The morphml metrics on the scheduler's /metrics endpoint follow a real search."""

from __future__ import annotations

import json
import time
from pathlib import Path

from _watched import SLOTS, http_get, make_search
from distributed import Client
from prometheus_client.parser import text_string_to_metric_families

from morphml_dask.dashboard._metrics import METRIC_NAMES

# The driver reports once a second; a scrape may trail its counters by that and a scrape.
LAG_S = 3.0


def _scrape(base: str, search: str) -> dict[tuple[str, str], float]:
    """{(metric, state or objective label): value} of one search."""
    samples = {}
    for family in text_string_to_metric_families(http_get(f"{base}/metrics")):
        for sample in family.samples:
            if sample.name in METRIC_NAMES and sample.labels.get("search") == search:
                label = sample.labels.get("state") or sample.labels.get("objective") or ""
                samples[(sample.name, label)] = sample.value
    return samples


def test_metrics_report_the_running_search(dashboard_client: Client, tmp_path: Path) -> None:
    base = dashboard_client.dashboard_link.rsplit("/", 1)[0]
    search = make_search(dashboard_client, tmp_path / "store", trials=120, time_scale=0.005)
    search.start()
    history: list[tuple[float, int]] = []  # (when, trials done) as the driver counts them
    scrapes = busy = 0
    rates, writes = [], []
    while search.running:
        history.append((time.monotonic(), search.status()["done"]))
        metrics = _scrape(base, search.name)
        done_after = search.status()["done"]
        if not metrics:
            time.sleep(0.2)
            continue
        scrapes += 1
        reported = metrics[("morphml_trials", "complete")] + metrics[("morphml_trials", "failed")]
        done_before = max(
            (done for when, done in history if when <= time.monotonic() - LAG_S), default=0
        )
        assert done_before <= reported <= done_after
        assert 0 <= metrics[("morphml_busy_slots", "")] <= SLOTS
        assert metrics[("morphml_busy_gpu_slots", "")] == 0  # CPU trials hold no GPU
        busy = max(busy, int(metrics[("morphml_busy_slots", "")]))
        rates.append(metrics[("morphml_results_per_second", "")])
        writes.append(metrics[("morphml_store_write_seconds", "")])
        assert metrics[("morphml_store_backlog_batches", "")] >= 0
        time.sleep(0.5)
    table = search.wait()

    assert scrapes >= 5
    assert busy > 0  # trials were seen executing on the workers
    assert max(rates) > 1.0
    assert max(writes) > 0.0
    final = _scrape(base, search.name)
    complete = table[table.state == "complete"]
    assert final[("morphml_trials", "complete")] == len(complete) > 0
    assert final[("morphml_trials", "failed")] == (table.state == "fail").sum() > 0
    assert final[("morphml_trials", "in_flight")] == 0
    stored_best = max(json.loads(m)["val_accuracy"] for m in complete.metrics)
    assert final[("morphml_best_objective", "val_accuracy")] == stored_best


def test_state_json_lists_searches_and_nothing_is_sent_when_turned_off(
    dashboard_client: Client, tmp_path: Path
) -> None:
    import dask.config

    base = dashboard_client.dashboard_link.rsplit("/", 1)[0]
    with dask.config.set({"morphml.dashboard": False}):
        quiet = make_search(dashboard_client, tmp_path / "quiet", trials=20, time_scale=0.0)
        quiet.run()
    assert json.loads(http_get(f"{base}/morphml/state.json")) == {}
    assert not _scrape(base, quiet.name)

    search = make_search(dashboard_client, tmp_path / "watched", trials=20, time_scale=0.0)
    table = search.run()
    (state,) = json.loads(http_get(f"{base}/morphml/state.json")).values()
    assert state["name"] == search.name
    assert state["done"] == len(table) == 20
    assert state["failed"] == (table.state == "fail").sum()
    assert state["finished"] is True
