"""The cluster a search runs on: the current client, or a LocalCluster made for it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from morphml_dask.config import config_value
from morphml_dask.exceptions import UnschedulableError

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

    from morphml_dask.driver._events import WorkersSeen

__all__ = [
    "WorkerWatch",
    "default_client",
    "keep_restarting_workers",
    "register_plugin",
    "running_slots",
    "slots_of",
]

# Seconds between two looks at the workers, and between two questions to every worker of
# when it retires (a round trip to each).
WORKER_CHECK_S = 5.0
RETIREMENT_REFRESH_S = 10.0


def default_client(gpus_per_trial: int = 0) -> tuple[Client, LocalCluster | None]:
    """The default client if one exists, else a new LocalCluster of worker processes.

    With GPUs: one worker per GPU, each with ``resources={"GPU": 1}``. Without: workers
    sized to the cores. Returns the client and the cluster to close (None if not ours).
    """
    from distributed import Client, LocalCluster, default_client

    try:
        current = default_client()
        if current.status == "running":  # not one that closed, or never connected
            return current, None
    except ValueError:
        pass
    gpus = _gpu_count()
    cores = os.cpu_count() or 1
    options: dict[str, Any] = {
        "processes": True,
        "dashboard_address": config_value("cluster.dashboard-address"),  # null: none
    }
    if gpus:
        options.update(n_workers=gpus, threads_per_worker=1, resources={"GPU": 1})
    else:
        options.update(n_workers=max(1, min(cores, 4)), threads_per_worker=1)
    # The morphml.cluster settings win over the defaults above.
    for key, option in (("n-workers", "n_workers"), ("threads-per-worker", "threads_per_worker")):
        value = config_value(f"cluster.{key}")
        if value is not None:
            options[option] = int(value)
    from morphml_dask.dashboard import serve_page

    with serve_page():
        cluster = LocalCluster(**options)
    return Client(cluster), cluster


def slots_of(client: Client, gpus_per_trial: int, wait: float = 10.0, none_ok: bool = False) -> int:
    """How many trials the cluster runs at once; raises if none can ever run.

    Waits up to ``wait`` seconds for workers (clusters that are still starting). With
    ``none_ok``, a cluster with no worker at all gives 0 rather than an error: an adaptive
    cluster starts workers only once trials wait.
    """
    deadline = time.monotonic() + wait
    while True:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        slots = _slots(workers, gpus_per_trial)
        if slots > 0:
            return slots
        if time.monotonic() > deadline:
            if none_ok and not workers:
                return 0
            break
        time.sleep(0.1)
    need = f"{gpus_per_trial} GPU resource(s)" if gpus_per_trial else "a thread"
    seen = [dict(w.get("resources", {})) for w in workers]
    raise UnschedulableError(
        "no worker can run the trials",
        expected=f"a worker offering {need} per trial",
        received=f"{len(seen)} worker(s) with resources {seen}",
        fix="start workers with `--resources GPU=1` (dask worker) or resources={'GPU': 1} "
        "(LocalCluster), or set gpus_per_trial=0 to train on CPUs",
    )


def running_slots(client: Client, gpus_per_trial: int) -> int:
    """How many trials the workers connected now can run at once (0 while none can)."""
    return _slots(client.scheduler_info(n_workers=-1)["workers"].values(), gpus_per_trial)


def _slots(workers: Any, gpus_per_trial: int) -> int:
    if gpus_per_trial:
        return sum(int(w.get("resources", {}).get("GPU", 0)) // gpus_per_trial for w in workers)
    return sum(int(w.get("nthreads", 1)) for w in workers)


@contextlib.contextmanager
def keep_restarting_workers() -> Iterator[None]:
    """Keep a `LocalCluster` from giving up on a worker process that died.

    A nanny starts a new process after a crash (an OOM kill, a segfault in a CUDA
    library), but a LocalCluster closes the nanny for good when its worker has not come
    back within ``distributed.deploy.lost-worker-timeout`` (15 s): a restart that imports
    torch on a loaded node, or a second crash during it, takes longer, and a cluster of a
    few workers then shrinks to none while trials wait. During a search the timeout is a
    day, so nannies keep restarting their workers.
    """
    import dask.config

    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1 day"}):
        yield


class WorkerWatch:
    """What the driver sees of the cluster's workers: the trial slots they offer and when
    each retires, as a `WorkersSeen` event for the search's state machine.

    Parameters
    ----------
    client
        The search's client.
    gpus_per_trial
        GPUs a trial needs (0: a thread).
    """

    def __init__(self, client: Client, gpus_per_trial: int) -> None:
        self.client = client
        self.gpus_per_trial = gpus_per_trial
        self.checked_at = -float("inf")
        self._retire_times: dict[str, float | None] = {}
        self._asked_at = -float("inf")

    def due(self, now: float) -> bool:
        """Whether it is time for another look (every few seconds)."""
        return now - self.checked_at >= WORKER_CHECK_S

    def look(self, now: float) -> WorkersSeen:
        """The workers connected now, their slots, and the seconds until each retires."""
        from morphml_dask.driver._events import WorkersSeen

        self.checked_at = now
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        times = self._retirement_times(now)
        wall = time.time()
        retire_in = {
            address: None if times.get(address) is None else float(times[address] or 0) - wall
            for address in workers
        }
        return WorkersSeen(_slots(workers.values(), self.gpus_per_trial), retire_in)

    def _retirement_times(self, now: float) -> dict[str, float | None]:
        """Worker address -> retirement time (unix seconds; None: never), at most
        `RETIREMENT_REFRESH_S` old."""
        if now - self._asked_at > RETIREMENT_REFRESH_S:
            from morphml_dask.driver._placement import retirement_time

            try:
                self._retire_times = self.client.run(retirement_time, on_error="ignore")
            except OSError:  # a worker left mid-question: keep the last answer
                return self._retire_times
            self._asked_at = now
        return self._retire_times


def register_plugin(client: Client, plugin: Any, attempts: int = 5) -> None:
    """Register a worker plugin; the scheduler fails the call when a worker dies while the
    plugin is handed out (it keeps the plugin for the workers that come), so try again."""
    for attempt in range(attempts):
        try:
            client.register_plugin(plugin)
            return
        except OSError:  # CommClosedError: a worker went away mid-broadcast
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def _gpu_count() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:
        return 0
