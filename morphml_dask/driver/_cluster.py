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

__all__ = [
    "dashboard_routes",
    "default_client",
    "keep_restarting_workers",
    "running_slots",
    "slots_of",
]


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
    with dashboard_routes():
        cluster = LocalCluster(**options)
    return Client(cluster), cluster


def dashboard_routes() -> contextlib.AbstractContextManager[None]:
    """Schedulers started within serve the morphml dashboard page, unless
    ``morphml.dashboard`` is off."""
    from morphml_dask.dashboard import enable

    return enable() if config_value("dashboard") else contextlib.nullcontext()


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


def _gpu_count() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:
        return 0
