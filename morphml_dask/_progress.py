"""The live progress bar ``morphml run`` and ``morphml resume`` draw on a terminal.

The bar reads `Search.status` from the thread the command waits in, the way the status line
in logs does; the driver knows nothing of it. It is drawn with rich on standard error, and
only where standard error is a terminal: logs and CI keep their plain lines.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from morphml_dask.driver import Search
    from morphml_dask.status import SearchStatus

__all__ = ["ProgressBar", "bar_wanted", "describe"]

_UNKNOWN = "-:--:--"


def bar_wanted(enabled: bool = True) -> bool:
    """Whether to draw the bar: asked for, and standard error is a terminal.

    Parameters
    ----------
    enabled
        False for ``--no-progress``.
    """
    return enabled and sys.stderr.isatty()


def describe(
    status: SearchStatus,
    total: int | None,
    *,
    before: int = 0,
    best: str | None = None,
) -> str:
    """The bar's text beside the done / total count, e.g. ``"ETA 0:00:30; 2 running,
    1 failed, 0 pruned; best t000004 (score=0.91); 12s elapsed"``.

    Parameters
    ----------
    status
        The search's counters now; ``done`` and ``elapsed`` count from this run's start.
    total
        The trials the search will run in all (its ``max_trials``), or None if unknown.
    before
        Trials told before this run started (a resumed search's), not part of its pace.
    best
        The best trial's value as ``"name=value"``, shown beside its id.
    """
    best_trial = status.best_trial or "-"
    if best_trial != "-" and best:
        best_trial = f"{best_trial} ({best})"
    return (
        f"ETA {_eta(status, total, before)}; {status.running} running, {status.failed} failed, "
        f"{status.pruned} pruned; best {best_trial}; {status.elapsed:.0f}s elapsed"
    )


def _eta(status: SearchStatus, total: int | None, before: int) -> str:
    """Time left at this run's average pace so far (the trials of a resumed search that
    were done before it started took none of its time)."""
    if total is None:
        return _UNKNOWN
    left = max(total - before - status.done, 0)
    if left == 0 or status.finished:
        return "0:00:00"
    if status.done == 0 or status.elapsed <= 0:
        return _UNKNOWN
    seconds = round(left * status.elapsed / status.done)
    return str(datetime.timedelta(seconds=seconds))


class ProgressBar:
    """A rich progress bar of a running search, updated on each `show`.

    Parameters
    ----------
    search
        The search, before `Search.start`: a resumed one has its earlier trials counted
        as done, and its earlier failed and pruned trials among those.
    total
        The trials the search will run in all, or None if unknown.
    console
        Where to draw; standard error by default.
    """

    def __init__(self, search: Search, total: int | None, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        from rich.table import Column

        self.search = search
        self.total = total
        self.before = search.optimizer.num_told
        self._earlier = _stored_outcomes(search) if self.before else {}
        self.announced = False
        # Prints to standard output go above the bar only when both share the terminal;
        # redirected to a file, they stay there.
        self._progress = Progress(
            TextColumn("trials"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            # The counts wrap under themselves on a narrow terminal, the bar stays whole.
            TextColumn("{task.fields[text]}", markup=False, table_column=Column(ratio=1)),
            console=console or Console(stderr=True),
            auto_refresh=False,  # `show` refreshes: the command polls the status anyway
            redirect_stdout=sys.stdout.isatty(),
            redirect_stderr=False,
        )
        self._task = self._progress.add_task("trials", total=total, completed=self.before, text="")
        self._started = self._closed = False

    def show(self, final: bool = False) -> None:
        """Redraw the bar from the search's status; with ``final``, draw it a last time
        and stop. Once stopped, it draws no more."""
        if self._closed:
            return
        if not self.announced and (link := self.search.dashboard_link):
            self.announced = True
            # On standard output, as in logs; above the bar once it is drawn.
            print(f"dashboard: {link} (this search: {link.rsplit('/', 1)[0]}/morphml)", flush=True)
        status = self._whole_search(self.search.status())
        text = describe(status, self.total, before=self.before, best=self._best(status))
        completed = self.before + status.done
        self._progress.update(self._task, completed=completed, text=text, refresh=self._started)
        if not self._started:  # started once it has its first text: no empty bar flickers
            self._progress.start()
            self._started = True
        if final:
            self.close()

    def close(self) -> None:
        """Stop drawing, leaving the last bar on the screen; safe to call again."""
        if self._started and not self._closed:
            self._progress.stop()
        self._closed = True

    def _whole_search(self, status: SearchStatus) -> SearchStatus:
        """``status`` (which counts from this run's start) with the failed and pruned trials
        a resumed search stored before it."""
        if not self._earlier:
            return status
        return dataclasses.replace(
            status,
            failed=status.failed + self._earlier.get("fail", 0),
            pruned=status.pruned + self._earlier.get("pruned", 0),
        )

    def _best(self, status: SearchStatus) -> str | None:
        value = self.search.optimizer.best_value
        if status.best_trial is None or value is None:
            return None
        return f"{self.search.task.objective}={value:.4g}"


def _stored_outcomes(search: Search) -> dict[str, int]:
    """How many trials the store holds in each state (``"complete"``, ``"fail"``,
    ``"pruned"``): a resumed search's, from before this run."""
    states = search.store.trials()["state"]
    return {str(state): int(count) for state, count in states.value_counts().items()}
