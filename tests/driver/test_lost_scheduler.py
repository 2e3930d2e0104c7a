"""A scheduler killed mid-search (``kill -9``), with real `dask scheduler` and `dask worker`
processes: without a restart the search stops with a `SchedulerUnreachableError` that names
the address and the resume command, and `resume` on a fresh cluster completes exactly; with
a restart at the same address the search goes on by itself. And the state machine's part:
a restarted scheduler gets every task in flight again, under its key."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config
import pytest
from distributed import Client

from morphml_dask.driver import resume, search_from_experiment
from morphml_dask.driver._events import SchedulerRestarted, Submit, TaskFinished, WorkersSeen
from morphml_dask.driver._state import Policy, SearchState
from morphml_dask.exceptions import SchedulerUnreachableError
from morphml_dask.experiment import load_experiment
from morphml_dask.optim import RandomSearch
from morphml_dask.space import DagSpace
from morphml_dask.storage import open_store
from morphml_dask.testing import local_client, synthetic_result
from morphml_dask.trial import Trial

MAX_TRIALS = 80
DASK = str(Path(sys.executable).with_name("dask"))
EXPERIMENT = {
    "name": "lost-scheduler",
    "space": {"name": "nb201-cell"},
    # trials of about 0.2 s
    "task": {"name": "nb201-tabular", "dataset": "cifar10", "time_scale": 0.002},
    "optimizer": {"name": "regularized-evolution", "population_size": 20, "seed": 0},
    "max_trials": MAX_TRIALS,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def _wait_for_rows(url: str, rows: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(open_store(url).trials()) < rows:
        assert time.monotonic() < deadline, f"fewer than {rows} rows after {timeout} s"
        time.sleep(0.2)


@pytest.mark.skipif(not Path(DASK).exists(), reason="the `dask` command is not installed")
def test_a_killed_scheduler_stops_the_search_with_the_resume_command(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "morphml_dask")
    url = str(tmp_path / "store")
    address = f"tcp://127.0.0.1:{_free_port()}"
    port = address.rsplit(":", 1)[1]
    with _processes() as started, dask.config.set({"morphml.scheduler-timeout": 3}):
        scheduler = _start(
            started, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"
        )
        worker = ["worker", address, "--nthreads", "2", "--host", "127.0.0.1", "--no-dashboard"]
        _start(started, *worker)
        _start(started, *worker)
        client: Any = Client(address, timeout=30)  # type: ignore[no-untyped-call]
        try:
            client.wait_for_workers(2, timeout=60)
            experiment = load_experiment({**EXPERIMENT, "store": url})
            search = search_from_experiment(experiment, client=client)
            search.start()
            _wait_for_rows(url, 10)
            scheduler.send_signal(signal.SIGKILL)
            lost_at = time.monotonic()
            with pytest.raises(
                SchedulerUnreachableError, match="lost the Dask scheduler"
            ) as caught:
                search.wait(60)
            waited = time.monotonic() - lost_at
        finally:
            client.close()
    message = str(caught.value)
    assert f"at {address}" in message and "within 3 s (morphml.scheduler-timeout)" in message
    assert f"morphml resume {url}" in caught.value.fix
    assert "install" not in message and "install" not in caplog.text
    assert f"lost the Dask scheduler at {address}; waiting up to 3 s" in caplog.text
    assert 2.5 < waited < 30, f"stopped {waited:.1f} s after the kill"
    stopped = open_store(url).trials()
    assert 10 <= len(stopped) < MAX_TRIALS and stopped["trial_id"].is_unique
    assert (stopped["state"] == "complete").all()

    with local_client(n_workers=2, threads_per_worker=2) as fresh:
        resume(url, client=fresh).run()
    table = open_store(url).trials()
    assert len(table) == MAX_TRIALS and table["trial_id"].is_unique
    assert (table["state"] == "complete").all()
    assert set(stopped["trial_id"]) <= set(table["trial_id"])


def _scheduler(started: list[subprocess.Popen[bytes]], port: str) -> subprocess.Popen[bytes]:
    return _start(started, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard")


def _worker(started: list[subprocess.Popen[bytes]], address: str) -> None:
    _start(started, "worker", address, "--nthreads", "2", "--host", "127.0.0.1", "--no-dashboard")


@pytest.mark.skipif(not Path(DASK).exists(), reason="the `dask` command is not installed")
def test_a_scheduler_restarted_at_the_same_address_lets_the_search_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "morphml_dask.driver")
    url = str(tmp_path / "store")
    port = str(_free_port())
    address = f"tcp://127.0.0.1:{port}"
    with _processes() as started, dask.config.set({"morphml.scheduler-timeout": 25}):
        scheduler = _scheduler(started, port)
        _worker(started, address)
        _worker(started, address)
        client: Any = Client(address, timeout=30)  # type: ignore[no-untyped-call]
        try:
            client.wait_for_workers(2, timeout=60)
            experiment = load_experiment({**EXPERIMENT, "store": url})
            search = search_from_experiment(experiment, client=client)
            search.start()
            _wait_for_rows(url, 10)
            scheduler.send_signal(signal.SIGKILL)
            scheduler.wait()
            at_kill = len(open_store(url).trials())
            _scheduler(started, port)
            _worker(started, address)  # the old workers may have given up
            _worker(started, address)
            search.wait(120)
        finally:
            client.close()
    assert not search.running, "the search did not end"
    assert at_kill < MAX_TRIALS, "the search ended before the kill"
    assert f"the scheduler at {address} answers again; resubmitting" in caplog.text
    table = open_store(url).trials()
    assert len(table) == MAX_TRIALS and table["trial_id"].is_unique
    assert (table["state"] == "complete").all(), table.query("state != 'complete'")["error"]


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
