"""The family tree of a search's best trial, for the report: its ancestors through the
weights each inherited, each edge labelled with the mutation that made the child."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from morphml_dask.storage import lineage_of

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw_family_tree"]

_MOST_SHOWN = 12  # ancestors drawn; older ones are summed up in one line


def draw_family_tree(
    figure: Figure, trials: pd.DataFrame, best_id: str | None, metric: str
) -> None:
    """Draw the chain from ``best_id`` back to the trial that started from scratch: one box
    per trial (id, ``metric``, epochs it trained), oldest at the top, and on each edge the
    child's ``mutation``."""
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.set_title("Family tree of the best trial (weights inherited down each edge)")
    if best_id is None:
        _say(axes, f"no completed trial reports {metric}")
        return
    chain = lineage_of(trials, best_id)
    if len(chain) < 2:
        _say(axes, f"the best trial, {best_id}, started from scratch: it has no ancestors")
        return
    shown = chain.iloc[:_MOST_SHOWN].iloc[::-1].reset_index(drop=True)
    hidden = len(chain) - len(shown)
    rows = len(shown)
    for row, trial in shown.iterrows():
        y = 1 - (int(str(row)) + 0.5) / rows
        _box(axes, y, trial, metric, best=trial["trial_id"] == best_id)
        if int(str(row)) > 0:
            fraction = float(trial["inherited_fraction"])  # NaN when not recorded
            _edge(axes, y, 1 / rows, str(trial["mutation"]), fraction)
    if hidden:
        axes.text(0.5, 1.0, f"{hidden} older ancestors not shown", ha="center", va="bottom")


def _box(axes: Axes, y: float, trial: pd.Series, metric: str, *, best: bool) -> None:
    value = trial.get(metric, math.nan)
    epochs = int(trial["epochs_trained"])
    trained = f"{epochs} epoch" if epochs == 1 else f"{epochs} epochs"
    text = f"{trial['trial_id']}   {metric} {float(value):.4g}   {trained}"
    style = {"boxstyle": "round", "facecolor": "#fde2b8" if best else "#e8eef7"}
    axes.text(0.5, y, text, ha="center", va="center", fontsize=10, bbox=style)


def _edge(axes: Axes, y: float, step: float, mutation: str, fraction: float) -> None:
    axes.annotate(
        "",
        xy=(0.5, y + 0.3 * step),
        xytext=(0.5, y + 0.7 * step),
        arrowprops={"arrowstyle": "->", "color": "0.4"},
    )
    share = "" if math.isnan(fraction) else f"  ({fraction:.0%} inherited)"
    axes.text(0.53, y + 0.5 * step, f"{mutation}{share}", va="center", fontsize=9, color="0.2")


def _say(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, transform=axes.transAxes)
