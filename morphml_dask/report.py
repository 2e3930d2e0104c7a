"""A self-contained HTML report of a stored search, with its figures as PNG files.

`write_report` reads an experiment store (a folder, ``memory://`` or ``s3://``) and writes
``report.html`` (figures embedded as ``data:`` URIs, so the file travels alone) and, beside
it, ``best_so_far.png``, ``pareto.png``, ``curves.png``, ``failures.png``, ``timeline.png``,
``best_arch.png`` (the best architecture as a graph, or the best configuration of a
function space as JSON) and ``family_tree.png`` (the best trial's ancestors, when it
inherited its weights, with the mutation on each edge). The summary counts the trials by
state and the epochs pruning saved (`epochs_saved`). `draw_figure` returns one of those
figures as a matplotlib `Figure` (what ``Search.plot`` shows in a notebook). matplotlib is
imported only when a figure is drawn.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask._report_page import (
    COMPLETE as _COMPLETE,
)
from morphml_dask._report_page import (
    FAIL as _FAIL,
)
from morphml_dask._report_page import (
    PRUNED as _PRUNED,
)
from morphml_dask._report_page import (
    failure_counts as _failure_counts,
)
from morphml_dask._report_page import (
    page as _page,
)
from morphml_dask._report_page import (
    ran as _ran,
)
from morphml_dask._report_page import (
    short as _short,
)
from morphml_dask.exceptions import InputError, StorageError
from morphml_dask.optim import pareto_axis
from morphml_dask.space import ArchGraph
from morphml_dask.storage import ExperimentStore, open_store

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr
    from matplotlib.figure import Figure

__all__ = [
    "FIGURES",
    "EpochsSaved",
    "draw_figure",
    "epochs_saved",
    "ranking_objective",
    "write_report",
]

FIGURES = (
    "best_so_far",
    "pareto",
    "curves",
    "failures",
    "timeline",
    "best_arch",
    "family_tree",
)
"""The PNG files a report holds, without their ``.png`` suffix, in page order."""

_DEFAULT_OBJECTIVE = ("val_accuracy", "maximize")


def write_report(
    url: str,
    out_dir: str | Path,
    *,
    storage_options: dict[str, Any] | None = None,
    objective: str | None = None,
    top: int = 5,
) -> Path:
    """Write ``report.html`` and the report's PNG figures for the search stored at ``url``.

    Parameters
    ----------
    url
        The experiment store: a folder, ``memory://...`` or ``s3://...``.
    out_dir
        Folder to write into; created when missing, files of an earlier report replaced.
    storage_options
        fsspec options of the store (endpoint, credentials).
    objective
        The metric to rank trials by; by default the one the search optimized (from its
        checkpoint), else ``val_accuracy``. Its direction comes from the checkpoint when the
        search optimized that metric, else ``maximize``.
    top
        How many of the best trials the table and the learning curves show.

    Returns
    -------
    Path
        The HTML file.

    Raises
    ------
    StorageError
        When the store holds no trials, or has no column for ``objective``.
    """
    store = open_store(url, storage_options)
    context = _context(store, _read_trials(store), objective, None, top)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, bytes] = {}
    for name in FIGURES:
        images[name] = _png(_figure(_DRAWERS[name], context))
        (out / f"{name}.png").write_bytes(images[name])
    page = out / "report.html"
    page.write_text(_page(context, images), encoding="utf-8")
    return page


def draw_figure(
    name: str,
    store: ExperimentStore,
    *,
    table: pd.DataFrame | None = None,
    objective: str | None = None,
    direction: str | None = None,
    top: int = 5,
) -> Figure:
    """One of the report's figures, as a matplotlib `Figure` (shown inline by Jupyter).

    Parameters
    ----------
    name
        One of `FIGURES`.
    store
        The experiment store the search writes to.
    table
        Its trials table, when the caller has read it already; by default ``store.trials()``.
    objective, direction
        The metric to rank trials by and ``"maximize"`` or ``"minimize"``; by default as in
        `write_report`.
    top
        How many of the best trials the learning curves show.

    Raises
    ------
    InputError
        For a ``name`` not in `FIGURES`.
    StorageError
        When the store holds no trials, or has no column for ``objective``.
    """
    if name not in _DRAWERS:
        raise InputError(
            f"unknown report figure {name!r}",
            expected=f"one of {list(FIGURES)}",
            received=repr(name),
            fix='pass e.g. draw_figure("best_so_far", store)',
        )
    table = _read_trials(store) if table is None else table
    return _figure(_DRAWERS[name], _context(store, table, objective, direction, top))


def _context(
    store: ExperimentStore,
    table: pd.DataFrame,
    objective: str | None,
    direction: str | None,
    top: int,
) -> _Context:
    metric, direction = ranking_objective(store, table, objective, direction)
    best = store.best(max(top, 1), metric, direction)
    return _Context(store, table, metric, direction, best)


@dataclass(frozen=True)
class EpochsSaved:
    """The epochs a search's pruner saved.

    Attributes
    ----------
    pruned
        Trials the pruner stopped early.
    saved
        The epochs they did not train: for each, its budget minus the last epoch of its
        stored curve, summed (a pruned trial without a stored curve counts as trained to
        its budget).
    budget
        The budgets of the trials that ran (reused results trained nothing), summed: the
        epochs the search would have trained without pruning.
    """

    pruned: int
    saved: int
    budget: int

    @property
    def share(self) -> float:
        """The saved epochs' share of `budget`, from 0 to 1."""
        return self.saved / self.budget if self.budget else 0.0

    def __str__(self) -> str:
        return f"{self.saved} of {self.budget} epochs ({self.share:.1%})"


def epochs_saved(store: ExperimentStore, table: pd.DataFrame | None = None) -> EpochsSaved:
    """The epochs pruning saved the search stored in ``store`` (`EpochsSaved`).

    Parameters
    ----------
    store
        The experiment store.
    table
        Its trials table, when the caller has read it already; by default ``store.trials()``.
    """
    return _epochs_saved(store.trials() if table is None else table, store.curves)


def _epochs_saved(table: pd.DataFrame, curves: Callable[[], xr.Dataset]) -> EpochsSaved:
    """`EpochsSaved` of ``table``; ``curves`` is read only when a trial was pruned."""
    ran = table[~table["reused"].astype(bool)]
    pruned = ran[ran["state"] == _PRUNED]
    trained = _last_epochs(curves(), pruned["trial_id"].tolist()) if len(pruned) else {}
    saved = sum(
        max(int(budget) - trained[trial_id], 0)
        for trial_id, budget in zip(pruned["trial_id"], pruned["budget"], strict=True)
        if trial_id in trained
    )
    return EpochsSaved(len(pruned), saved, int(ran["budget"].sum()))


def _last_epochs(curves: xr.Dataset, trial_ids: list[str]) -> dict[str, int]:
    """The last epoch with any metric reported, of each of ``trial_ids`` that has one."""
    stored = set(curves["trial"].values.tolist())
    wanted = [trial_id for trial_id in trial_ids if trial_id in stored]
    if not wanted or not curves.data_vars:
        return {}
    reported = curves.sel(trial=wanted).to_array().notnull().any("variable")
    epochs = reported["epoch"].where(reported).max("epoch")
    return {
        str(trial_id): int(epoch)
        for trial_id, epoch in zip(wanted, epochs.values.tolist(), strict=True)
        if np.isfinite(epoch)
    }


class _Context:
    """What the figures and the tables are drawn from."""

    def __init__(
        self,
        store: ExperimentStore,
        table: pd.DataFrame,
        metric: str,
        direction: str,
        best: pd.DataFrame,
    ) -> None:
        self.store = store
        self.table = table
        self.metric = metric
        self.direction = direction
        self.best = best

    @functools.cached_property
    def curves(self) -> xr.Dataset:
        return self.store.curves()

    @functools.cached_property
    def saved(self) -> EpochsSaved:
        return _epochs_saved(self.table, lambda: self.curves)


def _read_trials(store: ExperimentStore) -> pd.DataFrame:
    table = store.trials()
    if table.empty:
        raise StorageError(
            f"no trials to report at {store.url!r}",
            expected="the store of a search that stored at least one trial",
            received="an empty or missing store",
            fix="check the URL (and --storage-options), or run `morphml run` first",
        )
    return table


def ranking_objective(
    store: ExperimentStore,
    table: pd.DataFrame,
    requested: str | None,
    requested_direction: str | None = None,
) -> tuple[str, str]:
    """The metric to rank by and its direction: as asked, else as the search optimized."""
    searched = _DEFAULT_OBJECTIVE
    checkpoint = store.load_checkpoint()
    if checkpoint is not None:
        stored = checkpoint.optimizer.get("objective") or {}
        if isinstance(stored, dict) and "metric" in stored:
            searched = (str(stored["metric"]), str(stored.get("direction", "maximize")))
    if requested is None:
        metric, direction = searched
    else:
        metric = requested
        direction = searched[1] if requested == searched[0] else "maximize"
    if metric not in table.columns:
        known = sorted(c for c in table.columns if table[c].dtype.kind == "f")
        raise StorageError(
            f"no metric {metric!r} in the trials table",
            expected=f"one of {known}",
            received=repr(metric),
            fix="pass --objective NAME with a metric the task reports, e.g. val_accuracy",
        )
    return metric, requested_direction or direction


# -- figures -----------------------------------------------------------------------------------


def _figure(draw: Callable[[Figure, _Context], None], context: _Context) -> Figure:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    draw(figure, context)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _message(figure: Figure, title: str, text: str) -> None:
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.text(0.5, 0.5, text, ha="center", va="center", fontsize=14, transform=axes.transAxes)
    axes.set_axis_off()


def _done(context: _Context) -> pd.DataFrame:
    table = context.table
    return table[(table["state"] == _COMPLETE) & table[context.metric].notna()]


def _draw_best_so_far(figure: Figure, context: _Context) -> None:
    done = _done(context)
    if done.empty:
        _message(figure, "Best so far", f"no completed trial reports {context.metric}")
        return
    accumulate = (np.fmax if context.direction == "maximize" else np.fmin).accumulate
    asked = done.sort_values("trial_id", kind="stable")  # ids count up in the order asked
    timed = done.dropna(subset=["end_time"]).sort_values("end_time", kind="stable")
    zero = float(context.table["start_time"].min())
    by_order, by_time = figure.subplots(1, 2, sharey=True)
    panels = (
        (by_order, asked, np.arange(1, len(asked) + 1), "trials in the order asked"),
        (by_time, timed, timed["end_time"].to_numpy(dtype=float) - zero, "seconds since start"),
    )
    for axes, rows, x, label in panels:
        values = rows[context.metric].to_numpy(dtype=float)
        axes.scatter(x, values, s=10, alpha=0.4, label="trial")
        axes.step(x, accumulate(values), where="post", color="C3", label="best so far")
        axes.set_xlabel(label)
    by_order.set_ylabel(context.metric)
    by_order.legend(loc="lower right" if context.direction == "maximize" else "upper right")
    figure.suptitle(f"Best {context.metric} so far ({context.direction})")


def _pareto_front(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats in both (lower cost, higher score)."""
    order = np.lexsort((-score, cost))
    front, best = [], -np.inf
    for index in order:
        if score[index] > best:
            front.append(index)
            best = score[index]
    return np.asarray(front, dtype=int)


def _draw_pareto(figure: Figure, context: _Context) -> None:
    cost, cost_direction = _pareto_cost(context)
    label = "parameters" if cost == "params" else cost
    done = _done(context)
    if cost not in done.columns or done[cost].isna().all():
        _message(figure, "Pareto front", f"the task reports no {cost!r} metric")
        return
    done = done.dropna(subset=[cost])
    costs = done[cost].to_numpy(dtype=float)
    values = done[context.metric].to_numpy(dtype=float)
    signed = costs if cost_direction == "minimize" else -costs
    front = _pareto_front(signed, values if context.direction == "maximize" else -values)
    axes = figure.add_subplot()
    axes.scatter(costs, values, s=12, alpha=0.4, label="trial")
    axes.plot(costs[front], values[front], "o-", color="C3", label="Pareto front")
    if costs.min() > 0:
        axes.set_xscale("log")
    axes.set_xlabel(f"{label} ({cost_direction})")
    axes.set_ylabel(context.metric)
    axes.set_title(f"{context.metric} against {label}")
    axes.legend()


def _pareto_cost(context: _Context) -> tuple[str, str]:
    """What the Pareto figure trades the objective against: the search's other objective,
    else the parameter count."""
    checkpoint = context.store.load_checkpoint()
    optimizer = (checkpoint.config or {}).get("optimizer") if checkpoint is not None else None
    objectives = optimizer.get("objectives") if isinstance(optimizer, dict) else None
    return pareto_axis(objectives, context.metric)


def _draw_curves(figure: Figure, context: _Context) -> None:
    curves = context.curves
    ids = [t for t in context.best["trial_id"] if t in set(curves["trial"].values.tolist())]
    names = [str(name) for name in curves.data_vars]
    if not ids or not names:
        _message(figure, "Learning curves", "no learning curves stored for the best trials")
        return
    metric = context.metric if context.metric in names else names[0]
    axes = figure.add_subplot()
    for trial_id in ids:
        curve = curves[metric].sel(trial=trial_id).dropna("epoch")
        axes.plot(curve["epoch"].values, curve.values, marker=".", label=trial_id)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title(f"Learning curves of the {len(ids)} best trials")
    axes.legend(fontsize="small")


def _draw_failures(figure: Figure, context: _Context) -> None:
    counts = _failure_counts(context.table)
    if counts.empty:
        _message(figure, "Failures", f"no failures in {len(context.table)} trials")
        return
    axes = figure.add_subplot()
    bars = axes.bar(counts["kind"], counts["count"], color="C3")
    axes.bar_label(bars)
    axes.set_ylabel("failed trials")
    axes.set_title(f"{int(counts['count'].sum())} failed of {len(context.table)} trials")


def _draw_timeline(figure: Figure, context: _Context) -> None:
    table = _ran(context.table)
    if table.empty:
        _message(figure, "Worker timeline", "no trial has start and end times")
        return
    zero = float(table["start_time"].min())
    workers = sorted(table["worker"].unique().tolist())
    axes = figure.add_subplot()
    for state, color in ((_COMPLETE, "C0"), (_FAIL, "C3"), (_PRUNED, "0.6")):
        rows = table[table["state"] == state]
        if rows.empty:
            continue
        lanes = [workers.index(w) for w in rows["worker"]]
        start = rows["start_time"].to_numpy(dtype=float) - zero
        width = rows["end_time"].to_numpy(dtype=float) - zero - start
        axes.barh(
            lanes,
            width,
            left=start,
            height=0.8,
            color=color,
            label=state,
            edgecolor="white",
            linewidth=0.3,
        )
    axes.set_yticks(range(len(workers)), [_short(w) for w in workers])
    axes.set_xlabel("seconds since the first start")
    axes.set_title(f"Trials on {len(workers)} workers")
    axes.legend(loc="upper right", fontsize="small")


def _draw_family_tree(figure: Figure, context: _Context) -> None:
    from morphml_dask._family_tree import draw_family_tree

    best = None if context.best.empty else str(context.best["trial_id"].iloc[0])
    draw_family_tree(figure, context.table, best, context.metric)


def _draw_best_arch(figure: Figure, context: _Context) -> None:
    """The best trial's architecture as a graph, or its configuration (a `FunctionSpace`'s)
    as formatted JSON."""
    from morphml_dask._arch_figure import config_text, draw_graph, draw_text

    if context.best.empty:
        _message(figure, "Best architecture", "no completed trial")
        return
    row = context.best.iloc[0]
    candidate = context.store.record(str(row["trial_id"])).trial.arch
    which = f"{row['trial_id']} ({str(row['fingerprint'])[:12]})"
    if isinstance(candidate, ArchGraph):
        draw_graph(figure, candidate, f"Best architecture: {which}")
    else:
        draw_text(figure, config_text(candidate.value), f"Best configuration: {which}")


_DRAWERS: dict[str, Callable[[Figure, _Context], None]] = {
    "best_so_far": _draw_best_so_far,
    "pareto": _draw_pareto,
    "curves": _draw_curves,
    "failures": _draw_failures,
    "timeline": _draw_timeline,
    "best_arch": _draw_best_arch,
    "family_tree": _draw_family_tree,
}
