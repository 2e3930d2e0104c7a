"""The cluster a search runs on: the current client, or a LocalCluster made for it whose
workers each see only their own GPUs; how many trials a cluster runs at once."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from distributed import LocalCluster
from distributed.system import MEMORY_LIMIT

from morphml_dask.config import config_value
from morphml_dask.exceptions import ClusterError, SchedulerUnreachableError, UnschedulableError
from morphml_dask.gpus import gpus_per_worker, trial_slots, trials_per_gpu, visible_device_ids

if TYPE_CHECKING:
    from distributed import Client

    from morphml_dask.driver._events import WorkersSeen

__all__ = [
    "GPULocalCluster",
    "WorkerWatch",
    "default_client",
    "keep_restarting_workers",
    "local_cluster",
    "register_plugin",
    "running_slots",
    "slots_of",
    "workers_info",
]

# Seconds between two looks at the workers, and between two questions to every worker of
# when it retires (a round trip to each).
WORKER_CHECK_S = 5.0
RETIREMENT_REFRESH_S = 10.0


def default_client(gpus_per_trial: float = 0) -> tuple[Client, LocalCluster | None]:
    """The default client if one exists, else a new `local_cluster` for trials of
    ``gpus_per_trial`` GPUs and a client of it.

    Returns the client and the cluster to close (None if not ours).
    """
    from distributed import Client, default_client

    try:
        current = default_client()
        if current.status == "running":  # not one that closed, or never connected
            return current, None
    except ValueError:
        pass
    cluster = local_cluster(gpus_per_trial)
    return Client(cluster), cluster


def local_cluster(gpus_per_trial: float = 0) -> LocalCluster:
    """A `LocalCluster` of worker processes for trials of ``gpus_per_trial`` GPUs.

    GPU trials get one worker per group of GPUs, each seeing only its own through
    ``CUDA_VISIBLE_DEVICES`` (`GPULocalCluster`): for ``n >= 1`` GPUs per trial, groups of
    ``n`` GPUs, one thread and ``resources={"GPU": n}``; for a share of a GPU, one GPU, and
    as many threads as trials share it (`morphml_dask.gpus.trials_per_gpu`), with
    ``resources={"GPU": 1}``. CPU trials (or a machine without GPUs) get workers sized to
    the cores. The ``morphml.cluster`` settings ``n-workers`` (at most one worker per GPU
    group) and ``threads-per-worker`` win; ``morphml.cluster.gpus`` sets the GPUs assumed
    instead of asking CUDA (`worker_gpus`).

    Raises
    ------
    UnschedulableError
        When a trial wants more GPUs than the machine has.
    """
    options: dict[str, Any] = {
        "processes": True,
        "dashboard_address": config_value("cluster.dashboard-address"),  # null: none
    }
    groups = _device_groups(gpus_per_trial)
    if groups:
        threads = max(1, trials_per_gpu(gpus_per_trial))
        options.update(threads_per_worker=threads, resources={"GPU": len(groups[0])})
    else:
        cores = os.cpu_count() or 1
        options.update(n_workers=max(1, min(cores, 4)), threads_per_worker=1)
    # The morphml.cluster settings win over the defaults above.
    for key, option in (("n-workers", "n_workers"), ("threads-per-worker", "threads_per_worker")):
        value = config_value(f"cluster.{key}")
        if value is not None:
            options[option] = int(value)
    from morphml_dask.dashboard import serve_page

    with serve_page():
        if not groups:
            return LocalCluster(**options)
        workers = min(len(groups), options.pop("n_workers", len(groups)))
        return GPULocalCluster([",".join(group) for group in groups[:workers]], **options)


def _device_groups(gpus_per_trial: float) -> list[list[str]]:
    """The GPUs of each worker, as ``CUDA_VISIBLE_DEVICES`` names them: groups of
    ``ceil(gpus_per_trial)``; none for CPU trials or a machine without GPUs."""
    per_worker = gpus_per_worker(gpus_per_trial)
    if per_worker == 0:
        return []
    assumed = config_value("cluster.gpus")
    count = _gpu_count() if assumed is None else int(assumed)
    ids = visible_device_ids(count)[:count]
    if count and len(ids) < count:
        raise ClusterError(
            "morphml.cluster.gpus assumes more GPUs than CUDA_VISIBLE_DEVICES lists",
            expected=f"at most {len(ids)} GPU(s), the entries of CUDA_VISIBLE_DEVICES",
            received=f"morphml.cluster.gpus={count}, CUDA_VISIBLE_DEVICES={','.join(ids)!r}",
            fix="set morphml.cluster.gpus to null (ask CUDA), or list the GPUs in "
            "CUDA_VISIBLE_DEVICES",
        )
    if count == 0:
        return []  # the search then says that no worker offers GPUs (slots_of)
    if count < per_worker:
        raise UnschedulableError(
            "a trial wants more GPUs than this machine has",
            expected=f"at least {per_worker} GPUs for gpus_per_trial={gpus_per_trial}",
            received=f"{count} GPU(s)",
            fix=f"set gpus_per_trial to {count} or less, or run on a cluster with bigger workers",
        )
    return [
        ids[start : start + per_worker] for start in range(0, count - per_worker + 1, per_worker)
    ]


class GPULocalCluster(LocalCluster):
    """A `LocalCluster` whose worker ``i`` sees only the GPUs ``CUDA_VISIBLE_DEVICES`` of
    ``device_groups[i]``, as dask-cuda's ``LocalCUDACluster`` does it: each worker's nanny
    sets the variable for its process, and a restarted worker gets the same.

    Parameters
    ----------
    device_groups
        One ``CUDA_VISIBLE_DEVICES`` value per worker, e.g. ``["0", "1"]`` or ``["0,1"]``.
    **options
        For `LocalCluster` (not ``n_workers``: one worker per group).
    """

    def __init__(self, device_groups: Sequence[str], **options: Any) -> None:
        self.device_groups = list(device_groups)
        # LocalCluster's own default: the machine's memory split between the workers.
        options.setdefault("memory_limit", MEMORY_LIMIT // max(1, len(device_groups)))
        super().__init__(n_workers=0, **options)
        self.scale(len(self.device_groups))
        self.sync(self._correct_state)

    def new_worker_spec(self) -> dict[Any, dict[str, Any]]:
        """The next worker without one: its nanny's environment names its GPUs."""
        free = [name for name in range(len(self.device_groups)) if name not in self.worker_spec]
        if not free:
            raise ValueError(
                f"this cluster has a worker for each of its GPU groups {self.device_groups}; "
                "it cannot scale beyond them"
            )
        name = free[0]
        options = dict(self.new_spec["options"])
        options["env"] = {
            **dict(options.get("env") or {}),
            "CUDA_VISIBLE_DEVICES": self.device_groups[name],
        }
        return {name: {**self.new_spec, "options": options}}


def slots_of(
    client: Client, gpus_per_trial: float, wait: float = 10.0, none_ok: bool = False
) -> int:
    """How many trials the cluster runs at once; raises if none can ever run.

    Waits up to ``wait`` seconds for workers (clusters that are still starting). With
    ``none_ok``, a cluster with no worker at all gives 0 rather than an error: an adaptive
    cluster starts workers only once trials wait.
    """
    deadline = time.monotonic() + wait
    while True:
        workers = workers_info(client).values()
        slots = _slots(workers, gpus_per_trial)
        if slots > 0:
            return slots
        if time.monotonic() > deadline:
            if none_ok and not workers:
                return 0
            break
        time.sleep(0.1)
    need = f"{gpus_per_trial:g} GPU resource(s)" if gpus_per_trial else "a thread"
    seen = [dict(w.get("resources", {})) for w in workers]
    raise UnschedulableError(
        "no worker can run the trials",
        expected=f"a worker offering {need} per trial",
        received=f"{len(seen)} worker(s) with resources {seen}",
        fix="start workers with `--resources GPU=1` (dask worker) or resources={'GPU': 1} "
        "(LocalCluster), or set gpus_per_trial=0 to train on CPUs",
    )


def running_slots(client: Client, gpus_per_trial: float) -> int:
    """How many trials the workers connected now can run at once (0 while none can)."""
    return _slots(workers_info(client).values(), gpus_per_trial)


def workers_info(client: Client) -> dict[str, Any]:
    """Worker address -> what the scheduler says of it, asked now.

    Raises
    ------
    SchedulerUnreachableError
        When the client lost its scheduler (it is reconnecting, or gave up): the info it
        holds then is stale or empty.
    """
    if client.status == "running":
        info = client.scheduler_info(n_workers=-1)
        if client.status == "running" and "workers" in info:
            return dict(info["workers"])
    address = getattr(client.scheduler, "address", None)
    raise SchedulerUnreachableError(
        f"lost the connection to the Dask scheduler at {address}",
        expected="a scheduler that answers the driver",
        received=f"a client whose status is {client.status!r}",
        fix="check that the scheduler runs; restart it at the same address",
    )


def _slots(workers: Any, gpus_per_trial: float) -> int:
    """Trials at once: per worker, as many as its ``GPU`` resources hold (and its threads
    run), else one per thread."""
    if gpus_per_trial:
        return sum(
            min(
                trial_slots(float(w.get("resources", {}).get("GPU", 0)), gpus_per_trial),
                int(w.get("nthreads", 1)),
            )
            for w in workers
        )
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
        GPUs a trial needs (0: a thread; a fraction: a share of one).
    """

    def __init__(self, client: Client, gpus_per_trial: float) -> None:
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
        workers = workers_info(self.client)
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
