"""The cluster a command runs on: a scheduler address, or a cluster of the configured kind.

``morphml run --cluster slurm`` starts a `slurm_cluster` from the site's dask-jobqueue
settings and lets it scale from 0 to ``morphml.cluster.maximum-workers`` jobs as trials
wait; ``--cluster kubernetes`` does the same with `kubernetes_cluster` and
``morphml.cluster.image``; ``local`` (the default) leaves it to the search, which starts a
`LocalCluster`. Whatever is started here is closed again on the way out.

Each job or pod asks for ``ceil(gpus_per_trial)`` whole GPUs, never a fraction, and its
worker offers them as ``GPU`` resources; with a share of a GPU (``gpus_per_trial`` below 1)
the worker runs as many trials at once as share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import dask.config

from morphml_dask.config import config_value
from morphml_dask.exceptions import ClusterError, SchedulerUnreachableError
from morphml_dask.gpus import gpus_per_worker, trials_per_gpu

__all__ = ["CLUSTER_KINDS", "connect"]

CLUSTER_KINDS = ("local", "slurm", "kubernetes")


@contextlib.contextmanager
def connect(
    address: str | None, kind: str | None, *, name: str, gpus_per_trial: float
) -> Iterator[Any]:
    """A `distributed.Client` for ``address``, or for a new cluster of ``kind``; None for
    the local kind, whose cluster the search starts itself.

    Raises
    ------
    ClusterError
        For an unknown ``kind``, both an address and a kind, or settings a cluster of that
        kind cannot use.
    SchedulerUnreachableError
        When no scheduler at ``address`` accepts this client (refused, timed out, TLS).
    """
    from distributed import Client

    kind = str(config_value("cluster.kind", kind))
    configured = config_value("scheduler-address", address)
    address = None if configured is None else str(configured)
    if kind not in CLUSTER_KINDS:
        raise ClusterError(
            f"unknown cluster kind {kind!r}",
            expected=f"one of {', '.join(CLUSTER_KINDS)}",
            received=repr(kind),
            fix="pass --cluster local, slurm or kubernetes (or set morphml.cluster.kind)",
        )
    if address is not None:
        if kind != "local":
            raise ClusterError(
                "both a scheduler address and a cluster kind",
                expected="--scheduler ADDRESS or --cluster KIND",
                received=f"--scheduler {address} --cluster {kind}",
                fix="drop one of them: --scheduler connects to a running cluster, "
                "--cluster starts one",
            )
        client = _client_of(address)
        try:
            yield client
        finally:
            _close(client)
        return
    if kind == "local":
        yield None
        return
    maximum = int(config_value("cluster.maximum-workers"))
    cluster = _start(kind, name, gpus_per_trial)
    try:
        cluster.adapt(minimum=0, maximum=maximum)
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _close(client: Any) -> None:
    """Close ``client``; one still trying to reach a lost scheduler stops trying, which
    distributed logs as an error with a traceback: the search has already said what
    happened and what to do, so that record is dropped."""
    quiet = _DropCancelledReconnect()
    logger = logging.getLogger("distributed.client")
    logger.addFilter(quiet)
    try:
        client.close()
    finally:
        logger.removeFilter(quiet)


class _DropCancelledReconnect(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)


def _start(kind: str, name: str, gpus_per_trial: float) -> Any:
    """A cluster of ``kind`` whose workers each own ``ceil(gpus_per_trial)`` whole GPUs (the
    site's scheduler gives the job or pod that allocation) and run as many trials at once
    as share them."""
    gpus = gpus_per_worker(gpus_per_trial)
    # A share of a GPU: each worker runs floor(1/f) trials per GPU, one per thread.
    threads = gpus * trials_per_gpu(gpus_per_trial) if 0 < gpus_per_trial < 1 else None
    if kind == "slurm":
        from morphml_dask.deploy._slurm import slurm_cluster

        _check_slurm_threads(threads)
        return slurm_cluster(gpus_per_worker=gpus, gres=str(config_value("cluster.gres")))
    from morphml_dask.deploy._kubernetes import kubernetes_cluster

    image = config_value("cluster.image")
    if not image:
        raise ClusterError(
            "no image for the Kubernetes workers",
            expected="the image built from clusters/kubernetes/Dockerfile",
            received="morphml.cluster.image is null",
            fix="set DASK_MORPHML__CLUSTER__IMAGE=registry/morphml-dask:TAG (or the key in "
            "a Dask config file)",
        )
    return kubernetes_cluster(
        f"morphml-{name}".lower().replace("_", "-")[:40],
        image=str(image),
        n_workers=0,
        gpus_per_worker=gpus,
        threads_per_worker=threads,
    )


def _check_slurm_threads(threads: int | None) -> None:
    """A SLURM job's worker has one thread per core of the job: enough for the trials that
    share its GPU?"""
    cores = dask.config.get("jobqueue.slurm.cores", None)
    if threads is None or not isinstance(cores, int) or cores >= threads:
        return
    raise ClusterError(
        "a SLURM job has fewer cores than trials share its GPU",
        expected=f"jobqueue.slurm.cores of {threads} or more: the job's worker runs a trial "
        "per core, and that many share its GPU",
        received=f"jobqueue.slurm.cores = {cores}",
        fix=f"set jobqueue.slurm.cores to {threads} (or more), or gpus_per_trial to "
        f"{1 / max(1, cores):g} or 1 to share the GPU between fewer trials",
    )


def _client_of(address: str) -> Any:
    from distributed import Client

    try:
        # Not the default client: one that fails to connect would stay registered as the
        # default, and keep dask.config pointing at a scheduler that is not there.
        # The client reconnects within its timeout: as long as the driver waits for a lost
        # scheduler to come back (morphml.scheduler-timeout).
        timeout = max(30.0, float(config_value("scheduler-timeout")))
        return Client(address, timeout=timeout, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TypeError) as error:  # refused, timed out, or a TLS mismatch
        raise SchedulerUnreachableError(
            f"cannot connect to the Dask scheduler at {address}",
            expected="a running scheduler that accepts this client",
            received=f"{type(error).__name__}: {error}",
            fix="check the address and that the scheduler runs; "
            + (
                "a tls:// scheduler needs --tls-ca-file, --tls-cert and --tls-key "
                "(or the distributed.comm.tls settings)"
                if address.startswith("tls://")
                else "a scheduler that requires TLS has a tls:// address and needs "
                "--tls-ca-file, --tls-cert and --tls-key"
            ),
        ) from error
