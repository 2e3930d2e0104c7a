"""The Grafana dashboard of ``clusters/monitoring``: a real Prometheus, configured from the
shipped scrape configuration, scrapes a scheduler during a search, and every query of every
panel returns data.

Grafana itself is not started: the dashboard's queries are what can go wrong silently (a
renamed metric or label draws an empty panel), and Prometheus answers them as Grafana would
ask, once the template variables are substituted.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from _watched import http_get, make_search
from distributed import Client

from morphml_dask.testing import free_port

MONITORING = Path(__file__).parents[2] / "clusters" / "monitoring"
INSTALL_HINT = "run scripts/install-prometheus.sh as root (apt-get install prometheus)"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's $__rate_interval is at least four scrape intervals; the test scrapes every 1 s.
RATE_INTERVAL = "4s"
_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return loaded


def _panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def _queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]


def _variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def _substitute(text: str, values: Mapping[str, str]) -> str:
    """``text`` with ``$name`` and ``${name}`` replaced; an unknown name fails the test."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"{name!r} in {text!r} is not a variable the test knows"
        return values[name]

    return _VARIABLE.sub(value, text)


def _scrape_config(target: str) -> dict[str, Any]:
    """The shipped scrape configuration, scraping ``target`` every second."""
    config: dict[str, Any] = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    for job in config["scrape_configs"]:
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        job["static_configs"] = [{"targets": [target]}]
    return config


@pytest.fixture
def prometheus_binary() -> str:
    """The path of ``prometheus``; skips without it (before any cluster starts)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(f"prometheus is not installed: {INSTALL_HINT}")
    return binary


@contextmanager
def _prometheus(binary: str, workdir: Path, target: str) -> Iterator[str]:
    """A Prometheus server on 127.0.0.1 scraping ``target``, with a throwaway TSDB; its URL."""
    workdir.mkdir()
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(_scrape_config(target)))
    address = f"127.0.0.1:{free_port()}"
    command = [
        binary,
        f"--config.file={config}",
        f"--web.listen-address={address}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        "--log.level=warn",
    ]
    with (workdir / "prometheus.log").open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://{address}", server, workdir / "prometheus.log")
        yield f"http://{address}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_ready(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prometheus exited with {server.returncode}:\n{log.read_text()}")
        try:
            http_get(f"{base}/-/ready")
            return
        except OSError:  # not listening yet, or 503 while it starts
            time.sleep(0.1)
    pytest.fail(f"prometheus was not ready after 30 s:\n{log.read_text()}")


def _api(base: str, path: str, **params: str) -> Any:
    """The ``data`` of a Prometheus API answer; an error answer fails with its message."""
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    try:
        answer = json.loads(http_get(url))
    except urllib.error.HTTPError as error:  # 400 and 422 carry the reason as JSON
        answer = json.loads(error.read().decode())
    assert answer["status"] == "success", f"{params}: {answer.get('error')}"
    return answer["data"]


def _label_values(base: str, query: str, values: Mapping[str, str]) -> list[str]:
    """The values a ``label_values(selector, label)`` template variable offers."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
    assert match is not None, f"expected label_values(selector, label), received {query!r}"
    selector, label = _substitute(match.group(1), values), match.group(2)
    found: list[str] = _api(base, f"label/{label}/values", **{"match[]": selector})
    return found


def test_every_panel_is_titled_uses_the_datasource_variable_and_parses(
    prometheus_binary: str, tmp_path: Path
) -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 39
    variables = _variables(dashboard)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "search"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
    assert "label_values(morphml_trials" in variables["search"]["definition"]

    panels = _panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {sorted(ids)}"
    for panel in panels:
        assert panel["title"].strip(), f"panel {panel['id']} has no title"
        if panel["type"] == "row":  # a row only groups panels: it queries nothing
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]

    everything = {"instance": ".*", "search": ".*", "__rate_interval": RATE_INTERVAL}
    nobody = f"127.0.0.1:{free_port()}"  # the queries only need to parse: nothing to scrape
    with _prometheus(prometheus_binary, tmp_path / "prometheus", nobody) as base:
        for _, expr in _queries(dashboard):
            _api(base, "query", query=_substitute(expr, everything))  # fails on a parse error
        for name in ("instance", "search"):
            _label_values(base, variables[name]["definition"], everything)

    promtool = shutil.which("promtool")
    if promtool is not None:  # it ships with Debian's prometheus
        check = [promtool, "check", "config", str(MONITORING / "prometheus.yml")]
        checked = subprocess.run(check, capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.slow
def test_every_panel_query_returns_data_during_a_search(
    prometheus_binary: str, dashboard_client: Client, tmp_path: Path
) -> None:
    dashboard = _dashboard()
    target = dashboard_client.dashboard_link.split("/")[2]  # host:port of the scheduler
    with _prometheus(prometheus_binary, tmp_path / "prometheus", target) as base:
        # More trials than the test waits for: it stops the search once every panel drew.
        search = make_search(dashboard_client, tmp_path / "store", trials=400, time_scale=0.005)
        values = {"instance": target, "search": search.name, "__rate_interval": RATE_INTERVAL}
        pending = {(title, _substitute(expr, values)) for title, expr in _queries(dashboard)}
        search.start()
        try:
            while pending and search.running:
                pending = {(t, q) for t, q in pending if not _api(base, "query", query=q)["result"]}
                time.sleep(0.5)
            offered = {
                name: _label_values(base, _variables(dashboard)[name]["definition"], values)
                for name in ("instance", "search")
            }
        finally:
            search.stop()
            search.wait()

    assert not pending, f"panels without data during the search: {sorted(pending)}"
    assert target in offered["instance"]
    assert search.name in offered["search"]


def test_the_scrape_configuration_in_the_docs_is_the_shipped_one() -> None:
    page = (Path(__file__).parents[2] / "docs" / "dashboard.md").read_text()
    section = page[page.index("## Grafana and Prometheus") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None, "docs/dashboard.md shows no scrape configuration"
    shipped = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert yaml.safe_load(block.group(1)) == shipped
