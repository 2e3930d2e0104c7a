"""The morphml metrics: a collector scraped from an injected source, and the scheduler's
/metrics endpoint following a real search."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

from _watched import SLOTS, http_get, make_search
from distributed import Client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from morphml_dask.dashboard._board import SchedulerBoards
from morphml_dask.dashboard._metrics import METRIC_NAMES, SearchCollector, register_metrics
from morphml_dask.status import SearchStatus

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


def _worker(*executing: tuple[str, dict[str, float] | None]) -> SimpleNamespace:
    """A scheduler's WorkerState as `SchedulerBoards.busy` reads it."""
    tasks = [SimpleNamespace(key=key, resource_restrictions=r) for key, r in executing]
    return SimpleNamespace(executing=tasks)


def test_the_collector_reports_the_boards_its_source_returns() -> None:
    scheduler = SimpleNamespace(
        workers={
            "a": _worker(("gpu-search/t000001", {"GPU": 1.0}), ("other/t000001", None)),
            "b": _worker(("gpu-search/t000002", {"GPU": 0.5})),
        }
    )
    boards = SchedulerBoards(scheduler)
    board = boards.board("run", "gpu-search", "val_accuracy", "maximize")
    board.update(
        [
            ("t000001", "complete", 0.8, 10.0, 1, 0, None, None, None, 1.0, None, None),
            ("t000002", "complete", 0.9, 20.0, 1, 0, None, None, None, 2.0, None, None),
            ("t000003", "fail", None, None, 1, 0, None, None, None, 3.0, None, None),
            ("t000004", "pruned", None, 30.0, 9, 0, None, None, None, 4.0, None, None),
            ("t000005", "pruned", None, None, 9, 0, None, None, None, 5.0, None, None),
        ],
        SearchStatus(
            running=2,
            waiting_for_a_worker=3,
            waiting_for_a_twin=5,
            store_last_write_s=0.5,
            store_backlog_batches=4,
        ),
    )
    sources: list[list[SchedulerBoards]] = [[]]
    registry = CollectorRegistry()
    registry.register(SearchCollector(lambda: sources[-1]))
    assert _samples(registry) == {}  # nothing to report yet: no board, no sample

    sources.append([boards])  # read at every scrape
    # Five trials over the board's short life so far: the rate falls as time passes.
    rate_before = board.results_per_second()
    samples = _samples(registry)
    rate_after = board.results_per_second()
    assert {name for name, _ in samples} == set(METRIC_NAMES)
    assert rate_before >= samples.pop(("morphml_results_per_second", "")) >= rate_after > 0
    assert samples == {
        ("morphml_trials", "complete"): 2,
        ("morphml_trials", "failed"): 1,
        ("morphml_trials", "pruned"): 2,
        ("morphml_trials", "in_flight"): 2,
        ("morphml_trials", "waiting"): 3,
        ("morphml_trials", "waiting_for_twin"): 5,
        ("morphml_best_objective", "val_accuracy"): 0.9,
        ("morphml_busy_slots", ""): 2,
        ("morphml_busy_gpu_slots", ""): 1.5,
        ("morphml_store_write_seconds", ""): 0.5,
        ("morphml_store_backlog_batches", ""): 4,
    }


def test_one_collector_per_process_reports_every_scheduler_a_search_reported_to() -> None:
    from prometheus_client import REGISTRY

    from morphml_dask.dashboard import receive

    schedulers = [SimpleNamespace(extensions={}, workers={}) for _ in range(2)]
    names = [f"collected-{i}-{uuid.uuid4().hex[:6]}" for i in range(2)]
    for scheduler, name in zip(schedulers, names, strict=True):
        status = SearchStatus(running=1).to_dict()
        trial = (f"{name}-t1", "complete", 0.5, None, 1, 0, None, None, None, 1.0, None, None)
        receive(name, name, "val_accuracy", "maximize", [trial], status, scheduler)
    register_metrics(lambda: [])  # a second registration keeps the first collector

    scraped = [
        (sample.name, sample.labels["search"], sample.labels.get("state"))
        for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
        for sample in family.samples
        if sample.labels.get("search") in names
    ]
    assert len(scraped) == len(set(scraped))  # each sample once: one collector
    for name in names:
        assert ("morphml_trials", name, "complete") in scraped
        assert ("morphml_best_objective", name, None) in scraped


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """{(metric, state or objective label): value} of the search "gpu-search"."""
    samples = {}
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels["search"] == "gpu-search"
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
        history.append((time.monotonic(), search.status().done))
        metrics = _scrape(base, search.name)
        done_after = search.status().done
        if not metrics:
            time.sleep(0.2)
            continue
        scrapes += 1
        reported = sum(metrics[("morphml_trials", s)] for s in ("complete", "failed", "pruned"))
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
    stored_best = max(r.result.value("val_accuracy") for r in search.store.records() if r.ok)
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
