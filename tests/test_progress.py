"""`morphml run`'s progress bar: drawn on a real pseudo-terminal, absent from pipes."""

from __future__ import annotations

import io
import os
import re
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from morphml_dask import open_store
from morphml_dask._progress import ProgressBar, describe
from morphml_dask.status import SearchStatus

MORPHML = [sys.executable, "-m", "morphml_dask.cli"]
TRIALS = 16
COLUMNS = 160

# Trials below quality 0.2 raise (failed trials); the others climb step by step and stop
# when the pruner says so (pruned trials).
_MODULE = """
import time


def space(s):
    return {"quality": s.float("quality", 0.0, 1.0)}


def fit(config, ctx):
    if config["quality"] < 0.2:
        raise RuntimeError("this trial diverged")
    for step in range(ctx.trained_epochs + 1, ctx.budget + 1):
        time.sleep(0.05)
        ctx.report(step, score=config["quality"] * (1 - 0.7**step))
        if ctx.should_stop():
            return
"""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BAR = re.compile(
    r"trials \S* *(\d+)/(\d+) ETA (\S+); (\d+) running, (\d+) failed, (\d+) pruned; "
    r"best (\S+?)(?: \((\S+)\))?; \d+s elapsed"
)


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a local cluster the runs share: each would start its own otherwise,
    which takes longer than its search."""
    from morphml_dask.testing import local_client

    with local_client(n_workers=2, threads_per_worker=2) as client:
        yield str(client.scheduler.address)


def _run(tmp_path: Path, scheduler: str) -> list[str]:
    """``morphml run`` of a function search, its module uploaded to the cluster: 16 short
    trials, some failing, some pruned."""
    (tmp_path / "progress_trials.py").write_text(_MODULE)
    document = {
        "name": "progress",
        "space": {"function": "progress_trials:space"},
        "task": {"function": "progress_trials:fit", "objective": "score"},
        "optimizer": {"name": "random-search", "budget": 9, "seed": 1},
        "pruner": {"name": "successive-halving", "min_budget": 1, "eta": 3, "max_budget": 9},
        "max_trials": TRIALS,
        "store": str(tmp_path / "store"),
    }
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump(document))
    module = str(tmp_path / "progress_trials.py")
    return [*MORPHML, "run", str(experiment), "--scheduler", scheduler, "--upload", module]


def _in_a_terminal(args: list[str], timeout: float = 240) -> tuple[int, str]:
    """Run ``args`` with a pseudo-terminal as stdin, stdout and stderr; its exit status and
    everything it wrote there."""
    master, slave = os.openpty()
    termios.tcsetwinsize(slave, (40, COLUMNS))
    env = {key: value for key, value in os.environ.items() if not key.startswith("TTY_")}
    env.pop("NO_COLOR", None)
    env.update(TERM="xterm-256color", COLUMNS=str(COLUMNS), LINES="40")
    process = subprocess.Popen(
        args, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every process that had the terminal closed it
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        return process.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(master)


def _counts(store: Path) -> tuple[int, int, str]:
    """Failed and pruned trials in the store, and the best trial's id."""
    opened = open_store(str(store))
    table = opened.trials()
    failed, pruned = (int((table["state"] == state).sum()) for state in ("fail", "pruned"))
    best = opened.best(1, "score", "maximize")
    return failed, pruned, str(best["trial_id"].iloc[0])


@pytest.mark.slow
def test_run_on_a_terminal_draws_a_bar_that_ends_at_the_budget(
    tmp_path: Path, scheduler: str
) -> None:
    status, output = _in_a_terminal(_run(tmp_path, scheduler))
    assert status == 0, output
    assert "\x1b[" in output  # the bar is redrawn in place
    shown = _ANSI.sub("", output)
    bars = _BAR.findall(shown)
    assert bars, output
    assert re.search(r"dashboard: http://127.0.0.1:\d+/status \(this search: \S+/morphml\)", shown)
    assert any(int(done) < TRIALS for done, *_ in bars)  # drawn while the search ran
    done, total, eta, running, failed, pruned, best, value = bars[-1]
    stored_failed, stored_pruned, stored_best = _counts(tmp_path / "store")
    assert stored_failed > 0 and stored_pruned > 0  # the experiment shows both counts
    assert (done, total, running) == (str(TRIALS), str(TRIALS), "0")
    assert (int(failed), int(pruned), best) == (stored_failed, stored_pruned, stored_best)
    assert value.startswith("score=") and eta == "0:00:00"
    assert f"{TRIALS} trials, {stored_failed} failed, {stored_pruned} pruned" in output


@pytest.mark.slow
def test_run_through_pipes_prints_plain_lines_without_escape_codes(
    tmp_path: Path, scheduler: str
) -> None:
    done = subprocess.run(_run(tmp_path, scheduler), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\x1b" not in done.stdout + done.stderr
    assert f"trials {TRIALS}/{TRIALS} done, 0 running" in done.stdout


@pytest.mark.slow
def test_no_progress_on_a_terminal_prints_the_plain_lines(tmp_path: Path, scheduler: str) -> None:
    status, output = _in_a_terminal([*_run(tmp_path, scheduler), "--no-progress"])
    assert status == 0, output
    assert "\x1b" not in output
    assert f"trials {TRIALS}/{TRIALS} done, 0 running" in output
    assert not _BAR.search(output)


@pytest.mark.parametrize(
    ("status", "total", "before", "eta"),
    [
        (SearchStatus(done=0, running=4, elapsed=3.0), 20, 0, "-:--:--"),
        (SearchStatus(done=5, running=4, elapsed=10.0), 20, 0, "0:00:30"),
        # Resumed with 10 done before: the 5 of this run took 10 s, 5 are left.
        (SearchStatus(done=5, running=4, elapsed=10.0), 20, 10, "0:00:10"),
        (SearchStatus(done=5, running=4, elapsed=10.0), None, 0, "-:--:--"),
        (SearchStatus(done=20, elapsed=40.0, finished=True), 20, 0, "0:00:00"),
    ],
)
def test_the_eta_is_the_time_left_at_this_runs_pace(
    status: SearchStatus, total: int | None, before: int, eta: str
) -> None:
    assert describe(status, total, before=before).startswith(f"ETA {eta}; ")


def test_the_bar_text_names_the_counts_and_the_best_trial() -> None:
    status = SearchStatus(done=9, running=2, failed=1, pruned=3, best_trial="t000007", elapsed=12.4)
    assert describe(status, 12, best="score=0.912") == (
        "ETA 0:00:04; 2 running, 1 failed, 3 pruned; best t000007 (score=0.912); 12s elapsed"
    )
    assert "; best -; " in describe(SearchStatus(), 12, best="score=0.5")


def _stored_before(url: str, complete: int, failed: int, pruned: int) -> Any:
    """A store holding what a search stored before it was resumed."""
    import numpy as np

    from morphml_dask.space import CellSpace
    from morphml_dask.trial import Trial, TrialRecord, TrialResult

    store = open_store(url)
    made: list[TrialRecord] = []
    for n in range(complete + failed + pruned):
        trial = Trial(f"t{n:06d}", CellSpace().sample(np.random.default_rng(n)), budget=1)
        if n < complete:
            result = TrialResult.complete(trial.id, {"score": 0.5})
        elif n < complete + failed:
            result = TrialResult.failed(trial.id, "diverged")
        else:
            result = TrialResult.pruned(trial.id, {"score": 0.1})
        made.append(TrialRecord(trial, result))
    store.append_records(made)
    return store


def test_a_resumed_search_starts_its_bar_at_the_trials_done_before(tmp_path: Path) -> None:
    from rich.console import Console

    statuses = iter(
        [
            SearchStatus(done=0, running=4, elapsed=1.0),
            SearchStatus(done=5, failed=1, best_trial="t000012", elapsed=10.0, finished=True),
        ]
    )
    search = SimpleNamespace(
        optimizer=SimpleNamespace(num_told=15, best_value=0.875),
        task=SimpleNamespace(objective="score"),
        dashboard_link=None,
        status=lambda: next(statuses),
        store=_stored_before(str(tmp_path / "store"), complete=11, failed=3, pruned=1),
    )
    screen = io.StringIO()
    console = Console(file=screen, width=COLUMNS, force_terminal=True, color_system=None)
    bar = ProgressBar(cast(Any, search), 20, console=console)
    bar.show()
    bar.show(final=True)
    bar.show()  # stopped: nothing more is drawn, and the status is not read
    bar.close()
    bars = _BAR.findall(_ANSI.sub("", screen.getvalue()))
    frames = [(done, total, eta) for done, total, eta, *_ in bars]
    # rich draws a frame again as it stops: the distinct frames, in order.
    assert list(dict.fromkeys(frames)) == [
        ("15", "20", "-:--:--"),
        ("20", "20", "0:00:00"),
    ]
    assert bars[-1][-2:] == ("t000012", "score=0.875")
    # failed and pruned count the whole search: 3 and 1 stored before, 1 failed now
    assert [(failed, pruned) for *_, failed, pruned, _, _ in bars][-1] == ("4", "1")
    assert screen.getvalue().endswith("\x1b[?25h")  # the cursor is shown again
