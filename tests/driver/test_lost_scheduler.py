"""A scheduler killed mid-search (``kill -9``), with real `dask scheduler` and `dask worker`
processes and the search run as a user runs it, `morphml run --scheduler ADDRESS`: without a
restart it exits 2 with an error that names the address and the resume command, and
`morphml resume` completes exactly; with a restart at the same address the search goes on by
itself. And the state machine's part:
a restarted scheduler gets every task in flight again, under its key."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from morphml_dask.driver._events import SchedulerRestarted, Submit, TaskFinished, WorkersSeen
from morphml_dask.driver._state import Policy, SearchState
from morphml_dask.exceptions import StorageError
from morphml_dask.optim import RandomSearch
from morphml_dask.space import DagSpace
from morphml_dask.storage import open_store
from morphml_dask.testing import free_port, synthetic_result
from morphml_dask.trial import Trial

MAX_TRIALS = 80
DASK = str(Path(sys.executable).with_name("dask"))
MORPHML = str(Path(sys.executable).with_name("morphml"))
EXPERIMENT = {
    "name": "lost-scheduler",
    "space": {"name": "nb201-cell"},
    # trials of about 0.2 s
    "task": {"name": "nb201-tabular", "dataset": "cifar10", "time_scale": 0.002},
    "optimizer": {"name": "regularized-evolution", "population_size": 20, "seed": 0},
    "max_trials": MAX_TRIALS,
}


@contextlib.contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The processes started in the block, killed at its end."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=30)


def _start(started: list[subprocess.Popen[bytes]], *args: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [DASK, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy()
    )
    started.append(process)
    return process


def _wait_for_rows(url: str, rows: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while len(_rows(url)) < rows:
        assert time.monotonic() < deadline, f"fewer than {rows} rows after {timeout} s"
        time.sleep(0.2)


def _rows(url: str) -> Any:
    with contextlib.suppress(StorageError):  # no trials part written yet
        return open_store(url).trials()
    return ()


def _scheduler(started: list[subprocess.Popen[bytes]], port: str) -> subprocess.Popen[bytes]:
    return _start(started, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")


def _worker(started: list[subprocess.Popen[bytes]], address: str) -> None:
    _start(started, "worker", address, "--nthreads", "2", "--host", "127.0.0.1", "--no-dashboard")


def _morphml_run(
    tmp_path: Path, address: str, url: str, scheduler_timeout: int
) -> subprocess.Popen[str]:
    """`morphml run --scheduler ADDRESS`, as a user starts it, in its own process."""
    experiment = tmp_path / "lost-scheduler.yaml"
    experiment.write_text(yaml.safe_dump(EXPERIMENT), encoding="utf-8")
    env = {**os.environ, "DASK_MORPHML__SCHEDULER_TIMEOUT": str(scheduler_timeout)}
    return subprocess.Popen(
        [MORPHML, "run", str(experiment), "--scheduler", address, "--store", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finished(run: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    try:
        _, stderr = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.kill()
        _, stderr = run.communicate()
        raise AssertionError(f"`morphml run` still running after {timeout} s:\n{stderr}") from None
    return run.returncode, stderr


def _killed_mid_search(
    started: list[subprocess.Popen[bytes]], tmp_path: Path, url: str, scheduler_timeout: int
) -> tuple[subprocess.Popen[str], str, str]:
    """A scheduler and two workers, `morphml run` on them, and the scheduler SIGKILLed once
    10 rows are stored: the run, the scheduler's port and its address."""
    port = str(free_port())
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _scheduler(started, port)
    _worker(started, address)
    _worker(started, address)
    run = _morphml_run(tmp_path, address, url, scheduler_timeout=scheduler_timeout)
    _wait_for_rows(url, 10)
    scheduler.send_signal(signal.SIGKILL)
    scheduler.wait()
    return run, port, address


def _assert_exact(url: str) -> Any:
    table = open_store(url).trials()
    assert len(table) == MAX_TRIALS and table["trial_id"].is_unique
    assert (table["state"] == "complete").all(), table.query("state != 'complete'")["error"]
    return table


@pytest.mark.skipif(not Path(DASK).exists(), reason="the `dask` command is not installed")
def test_a_killed_scheduler_stops_morphml_run_with_exit_2_and_the_resume_command(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "store")
    with _processes() as started:
        run, _, address = _killed_mid_search(started, tmp_path, url, scheduler_timeout=3)
        lost_at = time.monotonic()
        status, stderr = _finished(run, timeout=60)
        waited = time.monotonic() - lost_at
    assert status == 2, stderr
    assert f"lost the Dask scheduler at {address}; waiting up to 3 s" in stderr
    error = stderr[stderr.index("morphml: error:") :]
    assert f"at {address}" in error and "within 3 s (morphml.scheduler-timeout)" in error
    assert f"morphml resume {url}" in error
    assert "install" not in stderr and "Traceback" not in stderr, stderr
    assert waited < 30, f"stopped {waited:.1f} s after the kill"
    stopped = open_store(url).trials()
    assert 10 <= len(stopped) < MAX_TRIALS and stopped["trial_id"].is_unique
    assert (stopped["state"] == "complete").all()

    resumed = subprocess.run(
        [MORPHML, "resume", url], capture_output=True, text=True, timeout=300, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    table = _assert_exact(url)
    assert set(stopped["trial_id"]) <= set(table["trial_id"])


@pytest.mark.skipif(not Path(DASK).exists(), reason="the `dask` command is not installed")
def test_a_scheduler_restarted_at_the_same_address_lets_morphml_run_finish(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "store")
    with _processes() as started:
        run, port, address = _killed_mid_search(started, tmp_path, url, scheduler_timeout=25)
        at_kill = len(_rows(url))
        _scheduler(started, port)
        _worker(started, address)  # `dask worker` exits with its scheduler
        _worker(started, address)
        status, stderr = _finished(run, timeout=180)
    assert status == 0, stderr
    assert at_kill < MAX_TRIALS, "the search ended before the kill"
    assert f"the scheduler at {address} answers again; resubmitting" in stderr
    _assert_exact(url)


@pytest.mark.skipif(not Path(DASK).exists(), reason="the `dask` command is not installed")
def test_a_killed_scheduler_does_not_answer_though_the_client_may_still_say_running() -> None:
    """The race behind a lost gather: the connection is closed before the client notices,
    so its status is no proof that the scheduler is there."""
    from distributed import Client

    from morphml_dask.driver._session import _answers

    port = str(free_port())
    with _processes() as started:
        scheduler = _scheduler(started, port)
        with Client(f"tcp://127.0.0.1:{port}", timeout=30) as client:  # type: ignore[no-untyped-call]
            assert _answers(client, timeout=5.0)
            scheduler.send_signal(signal.SIGKILL)
            scheduler.wait()
            began = time.monotonic()
            assert not _answers(client, timeout=1.0)
            assert time.monotonic() - began < 10, "a probe of a dead scheduler hung"


def _trial_machine() -> SearchState:
    optimizer = RandomSearch(DagSpace(max_nodes=6), max_trials=6, seed=0)
    return SearchState(optimizer, Policy(name="s"))


def test_a_restarted_scheduler_gets_the_tasks_in_flight_again_under_their_keys() -> None:
    state = _trial_machine()
    first = [i for i in state.handle([WorkersSeen(2, {"w1": None})], 0.0) if isinstance(i, Submit)]
    assert len(first) == 4  # two slots and a lookahead of two
    done = first[0]
    refill = state.handle([TaskFinished(done.key, (_outcome(done.trials[0]),))], 1.0)
    added = [i for i in refill if isinstance(i, Submit)]
    out = state.handle([SchedulerRestarted()], 2.0)
    again = [i for i in out if isinstance(i, Submit)]
    assert again == [*first[1:], *added], "not the same tasks, keys, trials and placement"
    assert {s.key for s in state.flight} == {s.key for s in again}
    assert all(s.attempts == (1,) for s in state.flight), "a restart is not another attempt"


def _outcome(trial: Trial) -> Any:
    from morphml_dask.driver._events import Outcome

    return Outcome(synthetic_result(trial), ({"epoch": 1},), "w1", "cpu", None, 1.0, 1.5)
