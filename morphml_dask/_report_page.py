"""The HTML page of a search's report (`morphml_dask.report.write_report`): summary,
top trials, failures and workers as tables, and the figures embedded."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from morphml_dask.report import _Context

__all__ = ["COMPLETE", "FAIL", "PRUNED", "failure_counts", "page", "ran", "short"]

COMPLETE, FAIL, PRUNED = "complete", "fail", "pruned"


def failure_counts(table: pd.DataFrame) -> pd.DataFrame:
    failed = table[table["state"] == FAIL]
    kinds = failed["error_kind"].fillna("unknown")
    groups = failed.assign(kind=kinds).groupby("kind", sort=True)
    counts = groups.agg(count=("trial_id", "size"), example=("error", "first"))
    return counts.sort_values("count", ascending=False, kind="stable").reset_index()


def ran(table: pd.DataFrame) -> pd.DataFrame:
    """The trials that ran on a worker (reused results did not)."""
    return table.dropna(subset=["worker", "start_time", "end_time"])


def short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else f"...{text[-(width - 3) :]}"


# -- HTML --------------------------------------------------------------------------------------

_CAPTIONS = {
    "best_so_far": "Best so far, by completed trial and by time",
    "pareto": "Objective against the search's other objective (else the parameter count), "
    "Pareto front highlighted",
    "curves": "Learning curves of the best trials",
    "failures": "Failures by kind",
    "timeline": "Trials per worker over time",
    "best_arch": "The best architecture (or configuration, for a function space)",
    "family_tree": "The best trial's ancestors and the mutation that made each child",
}
_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:left}"
    "th{background:#eee}img{max-width:100%}"
)


def _format(value: float) -> str:
    """How the report shows a metric value."""
    return f"{value:.6g}"


def _table(id_: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f'<table id="{id_}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _summary(context: _Context) -> str:
    table = context.table
    counts = {state: int((table["state"] == state).sum()) for state in (COMPLETE, FAIL, PRUNED)}
    wall = float(table["end_time"].max() - table["start_time"].min())
    rows: list[tuple[str, object]] = [
        ("store", context.store.url),
        ("trials", len(table)),
        ("complete", counts[COMPLETE]),
        ("failed", counts[FAIL]),
        ("pruned", counts[PRUNED]),
        ("epochs saved by pruning", str(context.saved)),
        ("reused", int(table["reused"].sum())),
        ("objective", f"{context.metric} ({context.direction})"),
        ("wall time", f"{wall:.1f} s" if np.isfinite(wall) else "-"),
    ]
    if not context.best.empty:
        best = context.best.iloc[0]
        rows += [
            ("best trial", best["trial_id"]),
            (f"best {context.metric}", _format(float(best[context.metric]))),
            ("best fingerprint", best["fingerprint"]),
        ]
    return _table("summary", ["", ""], rows)


def _top_table(context: _Context) -> str:
    extra = [c for c in ("params",) if c in context.best.columns and c != context.metric]
    header = ["rank", "trial", context.metric, *extra, "budget", "fingerprint", "worker"]
    rows = [
        [
            rank,
            row["trial_id"],
            _format(float(row[context.metric])),
            *(_format(float(row[c])) for c in extra),
            row["budget"],
            str(row["fingerprint"])[:12],
            row["worker"],
        ]
        for rank, (_, row) in enumerate(context.best.iterrows(), start=1)
    ]
    return _table("top", header, rows)


def _failure_table(context: _Context) -> str:
    counts = failure_counts(context.table)
    rows = [[r.kind, r.count, short(str(r.example), 200)] for r in counts.itertuples()]
    return _table("failures", ["kind", "count", "example error"], rows)


def _worker_table(context: _Context) -> str:
    table = ran(context.table)
    rows = []
    for worker in sorted(table["worker"].unique().tolist()):
        mine = table[table["worker"] == worker]
        busy = float((mine["end_time"] - mine["start_time"]).sum())
        failed, pruned = (int((mine["state"] == state).sum()) for state in (FAIL, PRUNED))
        rows.append([worker, len(mine), failed, pruned, f"{busy:.1f}"])
    return _table("workers", ["worker", "trials", "failed", "pruned", "busy seconds"], rows)


def page(context: _Context, images: dict[str, bytes]) -> str:
    """The report's HTML, with ``images`` (PNG bytes by figure name) embedded."""
    from morphml_dask.report import FIGURES

    figures = "".join(
        f'<figure id="fig-{name}"><img alt="{html.escape(_CAPTIONS[name])}" '
        f'src="data:image/png;base64,{base64.b64encode(images[name]).decode("ascii")}">'
        f"<figcaption>{html.escape(_CAPTIONS[name])}</figcaption></figure>"
        for name in FIGURES
    )
    title = html.escape(f"morphml report: {context.store.url}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>"
        f"<h2>Summary</h2>{_summary(context)}"
        f"<h2>Top {len(context.best)} trials</h2>{_top_table(context)}"
        f"<h2>Failures</h2>{_failure_table(context)}"
        f"<h2>Workers</h2>{_worker_table(context)}"
        f"<h2>Figures</h2>{figures}</body></html>\n"
    )
