"""The morphml page of the Dask dashboard, opened in headless Chromium during searches."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _watched import http_get, make_pruned_search, make_search, wait_for
from distributed import Client

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Kept by CI as an artifact (and ignored by git): what the page looked like in this run.
SCREENSHOT = Path(__file__).parents[2] / "docs" / "_artifacts" / "dashboard-morphml.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.browser


def _shown_trials(page: object) -> int:
    """The trial count the page shows now (Playwright's CSS engine sees into Bokeh's
    shadow DOM)."""
    text = page.locator(".morphml-done").first.get_attribute("data-trials")  # type: ignore[attr-defined]
    return int(text or 0)


# The number of live curves the page draws now, read from its Bokeh document.
LIVE_LINES_JS = """() => {
    const source = Bokeh.documents[0].get_model_by_name("morphml-live-curves");
    const data = source.data;
    return (data instanceof Map ? data.get("trial") : data["trial"]).length;
}"""


def test_the_page_shows_the_live_trial_count_and_curves(
    dashboard_client: Client, tmp_path: Path
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium: apt-get install chromium (the CI script does)")
    base = dashboard_client.dashboard_link.rsplit("/", 1)[0]
    assert "morphml" in http_get(f"{base}/morphml")  # served next to the built-in pages
    search = make_search(dashboard_client, tmp_path / "store", trials=200, time_scale=0.01)
    search.start()
    try:
        wait_for(lambda: search.status().done >= 5)
        with playwright.sync_playwright() as p:
            # A persistent context is how Playwright takes a (fresh) --user-data-dir.
            browser = p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1100},
            )
            page = browser.new_page()
            page.goto(f"{base}/morphml")
            page.wait_for_selector("canvas", timeout=60_000)
            page.wait_for_selector(".morphml-done", timeout=60_000)

            before = search.status().done
            shown = _shown_trials(page)
            after = search.status().done
            assert 0 < shown <= after
            # Live: the count moves on while the search runs, without reloading.
            wait_for(lambda: _shown_trials(page) > max(shown, before), timeout=30)
            assert _shown_trials(page) <= search.status().done
            assert page.evaluate(LIVE_LINES_JS) == 0  # tabular trials report no curve
            search.stop()
            search.wait()

            # A search whose trials report live: the page turns to it and draws their curves.
            search = make_pruned_search(dashboard_client, tmp_path / "pruned", trials=40)
            search.start()
            wait_for(lambda: page.evaluate(LIVE_LINES_JS) > 0, timeout=30)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            browser.close()
    finally:
        search.stop()
        search.wait()
    assert SCREENSHOT.stat().st_size > 20_000
