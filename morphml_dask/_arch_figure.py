"""An architecture drawn as a graph, or a configuration as text, on a matplotlib figure: the
report's ``best_arch.png``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from morphml_dask.space import ArchGraph

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["config_text", "draw_graph", "draw_text"]


def _depths(count: int, edges: Sequence[tuple[int, int]], order: Sequence[int]) -> list[int]:
    """Each node's longest distance from a source: its column in the drawing."""
    depth = [0] * count
    for node in order:
        for src, dst in edges:
            if src == node:
                depth[dst] = max(depth[dst], depth[src] + 1)
    return depth


# A figure of the report's size shows about this many lines of monospaced text.
_TEXT_LINES = 34
_TEXT_WIDTH = 96


def config_text(value: Any) -> str:
    """A configuration as indented JSON, architectures inside written as their repr, cut
    to what a figure shows."""
    lines = json.dumps(_plain(value), indent=2, sort_keys=False, default=repr).splitlines()
    shown = [
        line if len(line) <= _TEXT_WIDTH else line[: _TEXT_WIDTH - 3] + "..." for line in lines
    ]
    if len(shown) > _TEXT_LINES:
        shown = [*shown[: _TEXT_LINES - 1], f"... ({len(lines) - _TEXT_LINES + 1} more lines)"]
    return "\n".join(shown)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, ArchGraph):
        return repr(value)
    return value


def draw_text(figure: Figure, text: str, title: str) -> None:
    axes = figure.add_subplot()
    axes.text(0.0, 1.0, text, ha="left", va="top", family="monospace", fontsize=8)
    axes.set_axis_off()
    axes.set_title(title)


def draw_graph(figure: Figure, arch: ArchGraph, title: str) -> None:
    depth = _depths(len(arch.nodes), arch.edges, arch.topological_order())
    position: dict[int, tuple[float, float]] = {}
    for column in set(depth):
        members = [i for i, d in enumerate(depth) if d == column]
        for k, member in enumerate(members):
            position[member] = (float(column), k - (len(members) - 1) / 2)
    axes = figure.add_subplot()
    for src, dst in arch.edges:
        axes.annotate(
            "",
            xy=position[dst],
            xytext=position[src],
            arrowprops={
                "arrowstyle": "-|>",
                "color": "0.4",
                "shrinkA": 18,
                "shrinkB": 18,
                "connectionstyle": "arc3,rad=0.1",
            },
        )
    for index, node in enumerate(arch.nodes):
        axes.text(
            *position[index],
            node.label,
            ha="center",
            va="center",
            fontsize=9,
            bbox={"boxstyle": "round", "facecolor": "#dbe8f5", "edgecolor": "C0"},
        )
    xs, ys = zip(*position.values(), strict=True)
    axes.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    axes.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    axes.set_axis_off()
    axes.set_title(title)
