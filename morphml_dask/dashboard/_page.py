"""The morphml page of the Dask dashboard: a Bokeh document fed from the scheduler's boards.

Each open page redraws once a second, and only when the board changed; every source it
fills is bounded (see `SearchBoard`), so a page costs the scheduler the same whatever the
number of trials.
"""

from __future__ import annotations

import html
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bokeh.core.properties import field
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, NumeralTickFormatter
from bokeh.models.widgets import Div
from bokeh.palettes import Category10
from bokeh.plotting import figure as bokeh_figure

from morphml_dask.dashboard._board import LiveCurve, SearchBoard
from morphml_dask.dashboard._extension import boards_of

__all__ = ["SearchPage", "live_colour", "morphml_doc"]

REFRESH_MS = 1000
STATE_COLOURS = {
    "complete": "#1f77b4",
    "failed": "#d62728",
    "pruned": "#7f7f7f",
    "in flight": "#2ca02c",
}
# The running trials' live curves: a colour each (Category10, by trial id, so that a line
# keeps its colour while others come and go), grey once told to stop.
LIVE_COLOURS = Category10[10]
STOPPED_COLOUR = "#b0b0b0"


def figure(**options: Any) -> Any:
    """`bokeh.plotting.figure`, loosely typed: its stubs reject options passed as a dict."""
    return bokeh_figure(**options)


def _millis(seconds: float) -> float:
    """Bokeh's datetime axes count milliseconds."""
    return seconds * 1000.0


class SearchPage:
    """The page's sources and figures, refilled from a board.

    Parameters
    ----------
    board
        Called at every `update` for the board to show, or None when no search has
        reported yet; on a scheduler, ``boards_of(scheduler).latest``.
    """

    def __init__(self, board: Callable[[], SearchBoard | None]) -> None:
        self.board = board
        self.drawn: tuple[int, int] | None = None  # (board id, version) on the page
        self.summary = Div(text=_summary_html(None), sizing_mode="stretch_width")
        self.history = ColumnDataSource({"time": [], **{state: [] for state in STATE_COLOURS}})
        self.best_time = ColumnDataSource({"time": [], "best": []})
        self.best_trials = ColumnDataSource({"trials": [], "best": []})
        self.scatter = ColumnDataSource({"params": [], "value": [], "trial": []})
        self.front = ColumnDataSource({"params": [], "value": [], "trial": []})
        self.rungs = ColumnDataSource({"budget": [], "trials": []})
        self.timeline = ColumnDataSource(
            {"y": [], "start": [], "end": [], "trial": [], "where": [], "colour": []}
        )
        self.live = ColumnDataSource(
            {"steps": [], "values": [], "trial": [], "state": [], "colour": [], "alpha": []},
            name="morphml-live-curves",  # what a browser looks the curves up by
        )
        self.figures = self._figures()

    def _figures(self) -> dict[str, Any]:
        common: dict[str, Any] = {
            "height": 260,
            "sizing_mode": "stretch_width",
            "toolbar_location": "above",
        }
        states = figure(title="Trials by state", x_axis_type="datetime", **common)
        for state, colour in STATE_COLOURS.items():
            states.line("time", field(state), source=self.history, color=colour, legend_label=state)
        states.legend.location = "top_left"

        over_time = figure(title="Best so far vs time", x_axis_type="datetime", **common)
        over_time.step("time", "best", source=self.best_time, mode="after")
        over_trials = figure(title="Best so far vs trials", **common)
        over_trials.step("trials", "best", source=self.best_trials, mode="after")

        pareto = figure(title="Objective vs parameters", x_axis_type="log", **common)
        pareto.scatter("params", "value", source=self.scatter, alpha=0.4, size=4)
        pareto.step("params", "value", source=self.front, mode="after", color="#d62728")
        pareto.scatter("params", "value", source=self.front, color="#d62728", size=6)
        pareto.add_tools(HoverTool(tooltips=[("trial", "@trial"), ("value", "@value")]))
        pareto.xaxis.axis_label = "parameters"
        pareto.xaxis.formatter = NumeralTickFormatter(format="0.0a")

        rungs = figure(title="Trials per budget (rungs)", x_range=FactorRange(), **common)
        rungs.vbar(x="budget", top="trials", source=self.rungs, width=0.8)
        rungs.xaxis.axis_label = "budget (epochs)"

        timeline = figure(
            title="Trials by worker and GPU (latest)",
            x_axis_type="datetime",
            height=320,
            sizing_mode="stretch_width",
        )
        timeline.hbar(
            y="y",
            left="start",
            right="end",
            height=0.8,
            color="colour",
            source=self.timeline,
        )
        timeline.add_tools(HoverTool(tooltips=[("trial", "@trial"), ("where", "@where")]))
        return {
            "states": states,
            "best_time": over_time,
            "best_trials": over_trials,
            "pareto": pareto,
            "rungs": rungs,
            "live": self._live_figure(common),
            "timeline": timeline,
        }

    def _live_figure(self, common: dict[str, Any]) -> Any:
        """The objective against the step of each trial running now, one line each."""
        live = figure(title="Running trials: objective by step (grey: told to stop)", **common)
        live.multi_line(
            "steps",
            "values",
            source=self.live,
            line_color="colour",
            line_alpha="alpha",
            line_width=2,
        )
        live.add_tools(HoverTool(tooltips=[("trial", "@trial"), ("", "@state")]))
        live.xaxis.axis_label = "step (epoch)"
        return live

    @property
    def root(self) -> Any:
        f = self.figures
        return column(
            self.summary,
            row(f["states"], f["best_time"], sizing_mode="stretch_width"),
            row(f["best_trials"], f["pareto"], f["rungs"], sizing_mode="stretch_width"),
            f["live"],
            f["timeline"],
            sizing_mode="stretch_width",
        )

    def update(self) -> None:
        board = self.board()
        if board is None or self.drawn == (id(board), board.version):
            return
        self.drawn = (id(board), board.version)
        self.summary.text = _summary_html(board)
        history = board.history or [(board.updated_at, 0, 0, 0, 0)]
        times, done, failed, pruned, running = (list(c) for c in zip(*history, strict=True))
        self.history.data = {
            "time": [_millis(t) for t in times],
            "complete": [d - f - p for d, f, p in zip(done, failed, pruned, strict=True)],
            "failed": failed,
            "pruned": pruned,
            "in flight": running,
        }
        self.best_time.data = {
            "time": [_millis(t) for t, _, _ in board.best_curve] + [_millis(board.updated_at)],
            "best": [b for _, _, b in board.best_curve] + [board.best],
        }
        self.best_trials.data = {
            "trials": [n for _, n, _ in board.best_curve] + [board.done],
            "best": [b for _, _, b in board.best_curve] + [board.best],
        }
        self.scatter.data = _points(board.scatter)
        self.front.data = _points(board.front)
        pareto = self.figures["pareto"]
        pareto.title.text = f"Objective vs {board.cost}"
        pareto.xaxis.axis_label = "parameters" if board.cost == "params" else board.cost
        budgets = sorted(board.rungs)
        self.figures["rungs"].x_range.factors = [str(b) for b in budgets]
        self.rungs.data = {
            "budget": [str(b) for b in budgets],
            "trials": [board.rungs[b] for b in budgets],
        }
        self._draw_live(board)
        self._draw_timeline(board)

    def _draw_live(self, board: SearchBoard) -> None:
        """A line per running trial: a colour of its own, grey once told to stop (drawn
        first, under the trials that go on)."""
        curves: list[tuple[str, LiveCurve]] = list(board.live.items())
        curves.sort(key=lambda item: not item[1].stopped)  # stable: otherwise as they came
        colours = [STOPPED_COLOUR if c.stopped else live_colour(trial_id) for trial_id, c in curves]
        self.live.data = {
            "steps": [list(curve.steps) for _, curve in curves],
            "values": [list(curve.values) for _, curve in curves],
            "trial": [trial_id for trial_id, _ in curves],
            "state": ["told to stop" if c.stopped else "running" for _, c in curves],
            "colour": colours,
            "alpha": [0.5 if curve.stopped else 0.9 for _, curve in curves],
        }
        self.figures["live"].yaxis.axis_label = board.objective

    def _draw_timeline(self, board: SearchBoard) -> None:
        """One row per worker (and GPU) and per trial running there at once (threads)."""
        trials = sorted(board.timeline, key=lambda t: t[2])
        lanes: dict[str, list[float]] = {}  # place -> when each of its lanes is free
        lane_of = []
        for _, where, start, end, _ in trials:
            ends = lanes.setdefault(where, [])
            lane = next((i for i, free in enumerate(ends) if free <= start), len(ends))
            ends[lane : lane + 1] = [end]
            lane_of.append(lane)
        base, rows = {}, 0
        for where in sorted(lanes):
            base[where], rows = rows, rows + len(lanes[where])
        self.timeline.data = {
            "y": [base[t[1]] + lane for t, lane in zip(trials, lane_of, strict=True)],
            "start": [_millis(t[2]) for t in trials],
            "end": [_millis(t[3]) for t in trials],
            "trial": [t[0] for t in trials],
            "where": [t[1] for t in trials],
            "colour": [STATE_COLOURS[_STATE_NAMES.get(t[4], t[4])] for t in trials],
        }
        axis = self.figures["timeline"].yaxis
        axis.ticker = list(base.values())
        axis.major_label_overrides = {row: where for where, row in base.items()}


def live_colour(trial_id: str) -> str:
    """The colour of a running trial's live curve: the same on every redraw."""
    return str(LIVE_COLOURS[zlib.crc32(trial_id.encode()) % len(LIVE_COLOURS)])


# The states of finished trials as the legend names them.
_STATE_NAMES = {"fail": "failed"}


def _points(points: list[tuple[float, float, str]]) -> dict[str, Any]:
    return {
        "params": [p for p, _, _ in points],
        "value": [v for _, v, _ in points],
        "trial": [t for _, _, t in points],
    }


def _summary_html(board: SearchBoard | None) -> str:
    if board is None:
        return (
            "<h3>morphml</h3><p class='morphml-waiting'>No search has reported to this "
            "scheduler yet. Searches send their progress once a second while they run.</p>"
        )
    best = "none yet" if board.best is None else f"{board.best:.4g} ({board.best_trial})"
    state = "finished" if board.status.finished else "running"
    updated = datetime.fromtimestamp(board.updated_at).strftime("%H:%M:%S")
    return (
        f"<h3>morphml search <code>{html.escape(board.name)}</code> ({state})</h3>"
        f"<p><b class='morphml-done' data-trials='{board.done}'>{board.done}</b> trials done, "
        f"<b class='morphml-failed'>{board.failed}</b> failed, "
        f"<b class='morphml-pruned' data-trials='{board.pruned}'>{board.pruned}</b> pruned, "
        f"<b class='morphml-in-flight'>{board.running}</b> in flight; "
        f"{board.results_per_second():.1f} results/s; "
        f"best {html.escape(board.objective)}: <b class='morphml-best'>{html.escape(best)}</b>"
        f"; updated {updated}</p>{_lineage_html(board)}"
    )


def _lineage_html(board: SearchBoard) -> str:
    """The best trial's ancestors, oldest first, each arrow labelled with the mutation that
    made the next one; nothing when the best trial started from scratch."""
    if len(board.best_lineage) < 2:
        return ""
    steps = []
    for trial_id, mutation, value in board.best_lineage:
        if mutation is not None:
            steps.append(f" &rarr;<i>{html.escape(mutation)}</i>&rarr; ")
        score = "" if value is None else f" ({value:.4g})"
        steps.append(f"<code>{html.escape(trial_id)}</code>{score}")
    return f"<p class='morphml-lineage'>Lineage of the best trial: {''.join(steps)}</p>"


def morphml_doc(scheduler: Any, extra: dict[str, Any], doc: Any) -> None:
    """The Bokeh document of the page (the signature distributed's dashboard calls)."""
    from distributed.dashboard.components.scheduler import BOKEH_THEME, env

    page = SearchPage(boards_of(scheduler).latest)
    page.update()
    doc.title = "Dask: morphml search"
    doc.add_root(page.root)
    doc.add_periodic_callback(page.update, REFRESH_MS)
    doc.template = env.get_template("simple.html")
    doc.template_variables.update(extra)
    doc.theme = BOKEH_THEME
