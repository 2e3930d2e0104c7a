"""Chaos experiments: a search under worker kills or driver kills, and what it lost.

`worker_chaos` runs a search while `WorkerKiller` SIGKILLs worker processes; `training_chaos`
does so with a task that trains and writes weights (or state) to an S3 store whose endpoint
also goes down for a while (`TcpOutage`), then checks that every promoted trial's parent
left what its promotion loads; `driver_chaos` runs ``morphml run`` in a subprocess, SIGKILLs
it at random moments and continues each time with ``morphml resume``. All count what the
store ends with against what was asked, and, from an `ExecutionLog` kept by every worker, how
often trials ran again and how long a trial interrupted by a kill waited to run again.
``benchmarks/chaos.py`` prints and saves them; the tests run short versions.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distributed.diagnostics.plugin import WorkerPlugin

from morphml_dask.exceptions import InputError, StorageError
from morphml_dask.faults import Kill, WorkerKiller
from morphml_dask.trial import TrialState

if TYPE_CHECKING:
    from distributed import Client

    from morphml_dask.driver import Search
    from morphml_dask.faults import TcpOutage
    from morphml_dask.optim import BaseOptimizer
    from morphml_dask.prune import BasePruner
    from morphml_dask.storage import ExperimentStore
    from morphml_dask.tasks import BaseTask

__all__ = [
    "ChaosReport",
    "ExecutionLog",
    "driver_chaos",
    "executions",
    "stored_id_counts",
    "training_chaos",
    "worker_chaos",
]

# A FAIL row whose error reads like this was caused by the store's outage, not the trial.
_OUTAGE_TEXT = re.compile(r"s3|connect|endpoint|outage|unreachable", re.IGNORECASE)
# Failure kinds that a kill or an outage leaves: a worker lost too often, a store unreachable.
_CHAOS_FAILURES = frozenset({"lost", "store"})


class ExecutionLog(WorkerPlugin):
    """Appends ``<unix time> <key>`` to ``folder/<pid>.log`` whenever a task starts running.

    Plugins registered with the scheduler reach restarted workers too, so the log survives
    kills. The folder must be shared by the workers (one machine here).
    """

    name = "morphml-execution-log"

    def __init__(self, folder: str | Path) -> None:
        self.folder = str(folder)

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        """Append a line for ``key`` when it starts executing; other transitions pass."""
        if finish == "executing":
            line = f"{time.time():.6f} {key}\n"
            with open(os.path.join(self.folder, f"{os.getpid()}.log"), "a") as log:
                log.write(line)


def executions(folder: str | Path) -> list[tuple[float, str]]:
    """Every (start time, key) an `ExecutionLog` wrote to ``folder``, oldest first."""
    found = []
    for path in Path(folder).glob("*.log"):
        for line in path.read_text().splitlines():
            stamp, key = line.split(" ", 1)
            found.append((float(stamp), key))
    return sorted(found)


@dataclass
class ChaosReport:
    """What a chaos run asked for and what the store ended with.

    ``duplicated`` counts rows beyond the first for an id in the raw Parquet parts, before
    readers deduplicate; ``lost`` counts requested trials the store lacks; ``reruns`` counts
    trial executions beyond the first of each id, ``resubmitted`` the trials the driver
    submitted again after Dask gave them up (their workers kept dying);
    ``in_flight_at_kills`` (driver kills) the
    trials the driver held when it was killed, ``interrupted`` (worker kills) the trials the
    killed workers held; ``longest_kill_to_rerun_s`` is the longest wait from a worker kill
    to an interrupted trial starting again.

    `training_chaos` fills the rest: ``failed_by_chaos`` counts FAIL rows a kill or the
    outage caused (kind ``lost`` or ``store``, or an error about the store's connection),
    ``promoted`` the trials that trained on from a parent (not those whose result was
    reused), ``parents_missing`` the parents whose weights (or saved state) are absent or
    do not load, with why in
    ``parent_errors``, and ``outage_s`` when the store's endpoint went down and came back,
    in seconds from the start.
    """

    mode: str
    requested: int
    stored: int
    duplicated: int
    lost: int
    failed: int
    failed_lost: int
    kills: int
    pruned: int = 0
    interrupted: int = 0
    in_flight_at_kills: int = 0
    reruns: int = 0
    resubmitted: int = 0
    longest_kill_to_rerun_s: float | None = None
    seconds: float = 0.0
    kill_times_s: list[float] = field(default_factory=list)
    failed_by_chaos: int = 0
    promoted: int = 0
    parents_missing: list[str] = field(default_factory=list)
    parent_errors: dict[str, str] = field(default_factory=dict)
    outage_s: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worker_chaos(
    client: Client,
    optimizer: BaseOptimizer,
    task: BaseTask,
    store_url: str,
    log_folder: str | Path,
    *,
    interval: float = 3.0,
    seed: int = 0,
    pruner: BasePruner | None = None,
) -> tuple[ChaosReport, Search]:
    """Run a search on ``client`` while a worker process is SIGKILLed every ``interval``
    seconds; ``optimizer.max_trials`` trials are asked for. Returns the report and the
    search (its `Search.pruning`, `Search.events`)."""
    from morphml_dask.driver import Search, keep_restarting_workers
    from morphml_dask.storage import open_store

    client.register_plugin(ExecutionLog(log_folder))
    name = f"chaos-{seed}"
    started = time.time()
    search = Search(optimizer, task, store=store_url, client=client, name=name, pruner=pruner)
    with keep_restarting_workers(), WorkerKiller(client, interval=interval, seed=seed) as killer:
        search.run()
    store = open_store(store_url)
    return _killed_report("worker-kills", search, store, killer.kills, log_folder, started), search


def training_chaos(
    client: Client,
    optimizer: BaseOptimizer,
    task: BaseTask,
    store_url: str,
    log_folder: str | Path,
    outage: TcpOutage,
    *,
    storage_options: dict[str, Any] | None = None,
    interval: float = 3.0,
    outage_after: float = 5.0,
    outage_seconds: float = 10.0,
    seed: int = 0,
    max_retries: int | None = None,
) -> tuple[ChaosReport, Search]:
    """`worker_chaos` with trials that train and write to the store (weights, or a function
    task's state), while the store's endpoint also goes down for ``outage_seconds``,
    ``outage_after`` seconds after the first trial started. ``store_url`` and
    ``storage_options`` reach the store through ``outage`` (its ``endpoint``), for the
    driver and the workers alike; a kill is skipped while only one worker is up. With
    `ASHA`, the report names the promoted trials' parents that left nothing their promotion
    can load."""
    from morphml_dask.driver import Search, keep_restarting_workers
    from morphml_dask.storage import open_store

    client.register_plugin(ExecutionLog(log_folder))
    name = f"training-chaos-{seed}"
    started = time.time()
    search = Search(
        optimizer,
        task,
        store=store_url,
        storage_options=storage_options,
        client=client,
        name=name,
        max_retries=max_retries,
    )
    with (
        keep_restarting_workers(),
        _outage_once(outage, log_folder, outage_after, outage_seconds, started) as window,
        _SparingKiller(client, interval=interval, seed=seed) as killer,
    ):
        search.run()
    store = open_store(store_url, storage_options)
    report = _killed_report(
        "training-kills-outage", search, store, killer.kills, log_folder, started
    )
    _check_training(report, store, window)
    return report, search


def driver_chaos(
    scheduler: str,
    experiment: str | Path,
    store_url: str,
    log_folder: str | Path,
    *,
    kills: int = 3,
    seed: int = 0,
    first_kill_after: tuple[float, float] = (3.0, 8.0),
    timeout: float = 600.0,
) -> ChaosReport:
    """``morphml run EXPERIMENT --store URL --scheduler ADDRESS`` in a subprocess, SIGKILLed
    ``kills`` times at random moments (each ``first_kill_after`` seconds after it started,
    drawn uniformly) and continued with ``morphml resume`` after each kill, to the end."""
    from distributed import Client

    from morphml_dask.experiment import load_experiment
    from morphml_dask.storage import open_store

    rng = random.Random(seed)
    document = load_experiment(experiment)
    name = document.name
    started = time.time()
    in_flight = 0
    kill_times = []
    with Client(scheduler) as client:  # type: ignore[no-untyped-call]
        client.register_plugin(ExecutionLog(log_folder))
        command = ["run", str(experiment), "--store", store_url]
        for _ in range(kills):
            driver = _morphml(command, scheduler)
            # Kill only once trials are under way (the first start imports torch).
            _wait_until(lambda d=driver: _held_keys(client, name) > 0 or d.poll() is not None)
            time.sleep(rng.uniform(*first_kill_after))
            if driver.poll() is not None:
                break  # finished before its kill
            in_flight += _held_keys(client, name)
            driver.send_signal(signal.SIGKILL)
            driver.wait()
            kill_times.append(time.time() - started)
            # The scheduler forgets a dead client's trials once it sees the comm close.
            _wait_until(lambda: _held_keys(client, name) == 0)
            command = ["resume", store_url]
        final = _morphml(command, scheduler)
        if final.wait(timeout=timeout) != 0:
            output = final.stdout.read() if final.stdout is not None else ""
            raise RuntimeError(f"the last morphml {command[0]} failed:\n{output}")
    store = open_store(store_url)
    requested = int(document.max_trials)
    return _report(
        "driver-kills",
        store,
        requested,
        _runs_by_id(executions(log_folder), name),
        kills=len(kill_times),
        in_flight=in_flight,
        seconds=time.time() - started,
        kill_times=kill_times,
    )


def stored_id_counts(store: ExperimentStore) -> Counter[str]:
    """How many rows each trial id has in the raw Parquet parts of ``store``, before readers
    drop repeats: every count is 1 when nothing was written twice."""
    import pyarrow.parquet as pq

    fs, root = store.location.fs, store.location.root
    counts: Counter[str] = Counter()
    for part in fs.glob(f"{root}/**/*.parquet"):
        with fs.open(part, "rb") as handle:
            counts.update(pq.read_table(handle, columns=["trial_id"]).column(0).to_pylist())
    return counts


def _morphml(args: list[str], scheduler: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "morphml_dask.cli", *args, "--scheduler", scheduler],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _held_keys(client: Client, name: str) -> int:
    def count(dask_scheduler: Any, prefix: str = f"{name}/") -> int:
        return sum(str(key).startswith(prefix) for key in dask_scheduler.tasks)

    return int(client.run_on_scheduler(count))  # type: ignore[no-untyped-call]


def _wait_until(condition: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("a chaos run waited too long for its cluster")
        time.sleep(0.05)


class _SparingKiller(WorkerKiller):
    """A `WorkerKiller` that kills only while another worker process is up: a restart that
    imports torch takes seconds, and killing the last worker meanwhile only stalls the
    search (every trial it held counts one more death) without testing anything new."""

    def _kill_one(self) -> None:
        if len(self.client.run(os.getpid)) > 1:
            super()._kill_one()


def _check_training(report: ChaosReport, store: ExperimentStore, window: list[float]) -> None:
    """Fill the fields of ``report`` that `training_chaos` adds."""
    records = store.records()
    # A reused trial loaded nothing: its result is an earlier identical trial's, and a
    # reused promotion's parent may be a reused trial too, with no weights of its own.
    trained = [r for r in records if not r.reused]
    parents = sorted({r.trial.parent for r in trained if r.trial.parent is not None})
    report.failed_by_chaos = sum(
        r.result.state is TrialState.FAIL
        and (
            r.result.error_kind in _CHAOS_FAILURES
            or bool(_OUTAGE_TEXT.search(r.result.error or ""))
        )
        for r in records
    )
    report.promoted = sum(r.trial.parent is not None for r in trained)
    errors = {parent: error for parent in parents if (error := _load_error(store, parent))}
    report.parents_missing = sorted(errors)
    report.parent_errors = errors
    report.outage_s = [round(t, 3) for t in window]


def _kill_to_rerun(
    kills: list[Kill], runs: dict[str, list[float]], name: str
) -> tuple[int, list[float]]:
    """The trials of search ``name`` the kills interrupted, and for each one that ran again,
    the seconds from its kill to its next start."""
    waits = []
    interrupted = 0
    for kill in kills:
        for key in kill.keys:
            if not key.startswith(f"{name}/"):
                continue
            interrupted += 1
            again = [t for t in runs.get(key.split("/")[1], []) if t > kill.time]
            if again:
                waits.append(again[0] - kill.time)
    return interrupted, waits


@contextlib.contextmanager
def _outage_once(
    outage: TcpOutage, log_folder: str | Path, after: float, seconds: float, started: float
) -> Iterator[list[float]]:
    """Take ``outage`` down for ``seconds``, ``after`` seconds after the first trial started
    (an `ExecutionLog` line in ``log_folder``); yields the list that receives the moments it
    went down and came back up (seconds from ``started``). Leaving waits for it to be up."""
    window: list[float] = []
    stop = threading.Event()

    def run() -> None:
        while not executions(log_folder):
            if stop.wait(0.2):
                return
        if stop.wait(after):
            return
        outage.down()
        window.append(time.time() - started)
        time.sleep(seconds)  # the whole outage, even when the search ends meanwhile
        outage.up()
        window.append(time.time() - started)

    thread = threading.Thread(target=run, name="morphml-store-outage", daemon=True)
    thread.start()
    try:
        yield window
    finally:
        stop.set()
        thread.join()


def _load_error(store: ExperimentStore, trial_id: str) -> str | None:
    """Why neither the weights nor the saved state of ``trial_id`` load from ``store``;
    None when one of them does."""
    errors = []
    for load in (store.load_weights, store.load_state):
        try:
            if load(trial_id) is not None:
                return None
            errors.append(f"{load.__name__}: nothing saved")
        except (InputError, StorageError) as error:
            errors.append(f"{load.__name__}: {type(error).__name__}: {error}"[:300])
    return "; ".join(errors)


def _runs_by_id(found: list[tuple[float, str]], name: str) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {}
    for stamp, key in found:
        if key.startswith(f"{name}/"):
            runs.setdefault(key.split("/")[1], []).append(stamp)  # <name>/<id>[/<attempt>]
    return runs


def _killed_report(
    mode: str,
    search: Search,
    store: ExperimentStore,
    kills: list[Kill],
    log_folder: str | Path,
    started: float,
) -> ChaosReport:
    """The report of a search run while worker processes were killed (``kills``)."""
    runs = _runs_by_id(executions(log_folder), search.name)
    interrupted, waits = _kill_to_rerun(kills, runs, search.name)
    return _report(
        mode,
        store,
        int(search.optimizer.max_trials or 0),
        runs,
        kills=len(kills),
        interrupted=interrupted,
        longest=max(waits, default=None),
        resubmitted=search.status().retried,
        seconds=time.time() - started,
        kill_times=[k.time - started for k in kills],
    )


def _report(
    mode: str,
    store: ExperimentStore,
    requested: int,
    runs: dict[str, list[float]],
    *,
    kills: int,
    seconds: float,
    kill_times: list[float],
    interrupted: int = 0,
    in_flight: int = 0,
    longest: float | None = None,
    resubmitted: int = 0,
) -> ChaosReport:
    records = store.records()
    raw = stored_id_counts(store)
    requested_ids = {f"t{i:06d}" for i in range(1, requested + 1)}
    stored_ids = {record.trial_id for record in records}
    failed = [record.result for record in records if record.result.state is TrialState.FAIL]
    return ChaosReport(
        mode=mode,
        requested=requested,
        stored=len(records),
        duplicated=sum(n - 1 for n in raw.values()),
        lost=len(requested_ids - stored_ids),
        failed=len(failed),
        failed_lost=sum(result.error_kind == "lost" for result in failed),
        pruned=sum(record.result.state is TrialState.PRUNED for record in records),
        kills=kills,
        interrupted=interrupted,
        in_flight_at_kills=in_flight,
        reruns=sum(len(times) - 1 for times in runs.values()),
        resubmitted=resubmitted,
        longest_kill_to_rerun_s=None if longest is None else round(longest, 3),
        seconds=round(seconds, 3),
        kill_times_s=[round(t, 3) for t in kill_times],
    )
