"""Searches in Jupyter: a compact HTML summary, a live widget and figures.

`Search` shows itself through these functions: ``_repr_html_`` is `search_html`, and while a
search runs ``_repr_mimebundle_`` adds an ``ipywidgets.HTML`` that a daemon thread refreshes
every second until the search ends (`LiveSummary`). ``Search.plot`` draws the figures of
`morphml_dask.report`. ipywidgets and matplotlib are optional: without ipywidgets a search
shows the summary of the moment it was displayed, and matplotlib is imported only when a
figure is drawn.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import InputError, StorageError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from morphml_dask.driver import Search

__all__ = [
    "PLOT_KINDS",
    "LiveSummary",
    "live_summary",
    "plot_search",
    "search_html",
    "search_mimebundle",
]

PLOT_KINDS = {
    "best": "best_so_far",
    "pareto": "pareto",
    "curves": "curves",
    "timeline": "timeline",
}
"""`Search.plot` kinds and the report figures they draw."""

REFRESH_S = 1.0
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_STYLE = (
    "border-collapse:collapse;font-size:0.9em;text-align:left;"
    "font-family:var(--jp-ui-font-family, sans-serif)"
)
_CELL = 'style="padding:0.1em 0.8em 0.1em 0;text-align:left"'


def search_html(search: Search) -> str:
    """A compact HTML table of ``search``: its state, trial counts, best result, elapsed
    time, store and the Dask dashboard's link.

    It reads only the driver's memory (never the store), so it is cheap enough to render
    every second while the search runs.
    """
    status = search.status()
    objective = search.optimizer.objective
    best_value = search.optimizer.best_value
    best_trial = html.escape(str(status.best_trial))
    best = "-" if best_value is None else f"{best_value:.6g} ({best_trial})"
    counts = {
        "done": status.done,
        "failed": status.failed,
        "pruned": status.pruned,
        "reused": status.reused,
        "retried": status.retried,
        "running": status.running,
        "submitted": status.submitted,
    }
    rows = [
        ("state", html.escape(search.state)),
        *((name, str(count)) for name, count in counts.items()),
        (f"best {html.escape(objective.metric)} ({objective.direction})", best),
        ("elapsed", _duration(status.elapsed)),
        ("store", f"<code>{html.escape(search.store.url)}</code>"),
    ]
    link = search.dashboard_link
    if link:
        target = html.escape(link, quote=True)
        rows.append(("dashboard", f'<a href="{target}" target="_blank">{html.escape(link)}</a>'))
    body = "".join(
        f"<tr><th {_CELL}>{label}</th><td {_CELL}>{value}</td></tr>" for label, value in rows
    )
    title = f"<strong>morphml search</strong> <code>{html.escape(search.name)}</code>"
    return f'<div class="morphml-search">{title}<table style="{_STYLE}">{body}</table></div>'


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class LiveSummary:
    """An ``ipywidgets.HTML`` of `search_html`, refreshed every ``interval`` seconds by a
    daemon thread that renders once more after the search ends, then stops.

    Parameters
    ----------
    search
        The search to show.
    widget
        The ``ipywidgets.HTML`` to update.
    interval
        Seconds between refreshes.
    """

    def __init__(self, search: Search, widget: Any, interval: float = REFRESH_S) -> None:
        self.search = search
        self.widget = widget
        self.interval = interval
        self.refreshes = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(
            target=self._refresh_until_done, name="morphml-live-summary", daemon=True
        )
        self.thread.start()

    def _refresh_until_done(self) -> None:
        while True:
            # Read before rendering, so that the last render shows the search's end.
            ended = not self.search.running
            self.widget.value = search_html(self.search)
            self.refreshes += 1
            if ended or self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        """Stop refreshing before the search ends."""
        self._stop.set()


def live_summary(search: Search, interval: float = REFRESH_S) -> LiveSummary | None:
    """A `LiveSummary` of ``search``; None when ipywidgets is not installed."""
    try:
        import ipywidgets  # type: ignore[import-untyped]
    except ImportError:
        return None
    return LiveSummary(search, ipywidgets.HTML(search_html(search)), interval)


def search_mimebundle(search: Search) -> dict[str, Any] | None:
    """The live widget's view while ``search`` runs and ipywidgets is installed, else None
    (Jupyter then shows ``_repr_html_``, which frontends without widgets show as well)."""
    if not search.running:
        return None
    live = live_summary(search)
    if live is None:
        return None
    bundle = live.widget._repr_mimebundle_()
    if not bundle or _WIDGET_VIEW not in bundle:
        live.stop()
        return None
    return {_WIDGET_VIEW: bundle[_WIDGET_VIEW]}


def plot_search(search: Search, kind: str = "best", *, top: int = 5) -> Figure:
    """A figure of ``search``'s stored trials (see `Search.plot`).

    Raises
    ------
    InputError
        For a ``kind`` not in `PLOT_KINDS`.
    StorageError
        When the store holds no trial yet.
    """
    if kind not in PLOT_KINDS:
        raise InputError(
            f"unknown plot kind {kind!r}",
            expected=f"one of {list(PLOT_KINDS)}",
            received=repr(kind),
            fix='call e.g. search.plot("best")',
        )
    table = search.store.trials()
    if table.empty:
        raise StorageError(
            "no results to plot yet",
            expected="a search with at least one stored trial",
            received=f"no trials in {search.store.url!r}",
            fix=(
                "start the search (search.start()) and plot once trials have finished; "
                "results reach the store every persist_interval seconds"
            ),
        )
    from morphml_dask.report import draw_figure

    objective = search.optimizer.objective
    return draw_figure(
        PLOT_KINDS[kind],
        search.store,
        table=table,
        objective=objective.metric,
        direction=objective.direction,
        top=top,
    )
