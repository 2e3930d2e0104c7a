"""Stores the workers cannot share: refused before a search submits its first trial.

Workers write to the store themselves (weights, ``ctx.save`` state). A ``memory://`` store
lives in one process, and a local folder on one host unless a shared filesystem holds it: a
worker elsewhere would write into a store of its own, and a later load would find nothing.
`check_shared_store` is a pure function of where the driver and the workers run and of
what they see; `worker_processes` asks the workers, after the driver left a probe file in
a local store's folder (a folder on a shared filesystem shows it on every host).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, NamedTuple

from fsspec.core import split_protocol

from morphml_dask.exceptions import StorageInputError

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["Process", "check_shared_store", "local_folder", "this_process", "worker_processes"]

# Filesystems that live in the memory of one process.
IN_PROCESS_PROTOCOLS = frozenset({"memory"})
LOCAL_PROTOCOLS = frozenset({None, "file", "local"})


class Process(NamedTuple):
    """Where a process runs: its host name and process id, and whether it sees the probe
    file the driver left in a local store's folder (True when there is none)."""

    host: str
    pid: int
    sees_store: bool = True


def this_process(probe: str | None = None) -> Process:
    """The calling process (run on each worker too); ``probe``: a path it should see."""
    sees = probe is None or os.path.exists(probe)
    return Process(socket.gethostname(), os.getpid(), sees)


def worker_processes(client: Client, folder: str | None = None) -> dict[str, Process]:
    """Worker address -> the `Process` it runs in, for the workers connected now (a worker
    that leaves while asked is left out); with ``folder`` (a local store's), whether each
    sees a probe file the driver writes there for the question."""
    with _probe(folder) as probe:
        answers = client.run(this_process, probe, on_error="ignore")
    return {address: Process(*answer) for address, answer in answers.items()}


@contextlib.contextmanager
def _probe(folder: str | None) -> Iterator[str | None]:
    if folder is None:
        yield None
        return
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f".shared-probe-{uuid.uuid4().hex}")
    with open(path, "wb"):
        pass
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)


def local_folder(url: str) -> str | None:
    """The folder of a local store URL (a path or ``file://``), else None."""
    protocol, path = split_protocol(url)
    return os.path.abspath(path) if protocol in LOCAL_PROTOCOLS and "::" not in url else None


def check_shared_store(url: str, driver: Process, workers: Mapping[str, Process]) -> None:
    """Refuse a store that some worker cannot share with the driver.

    Parameters
    ----------
    url
        The store's URL.
    driver
        The driver's `Process`.
    workers
        Worker address -> its `Process`.

    Raises
    ------
    StorageInputError
        For a ``memory://`` store with a worker in another process than the driver, or a
        local path (no protocol, ``file://``) with a worker on another host that does not
        see the folder's probe file.
    """
    protocol = split_protocol(url.split("::")[-1])[0]
    if protocol in IN_PROCESS_PROTOCOLS:
        apart = sorted(address for address, p in workers.items() if (p.host, p.pid) != driver[:2])
        if apart:
            raise StorageInputError(
                f"the store {url} lives in the driver's memory, which the workers cannot reach",
                expected="a store every worker process can read and write, or workers in the "
                f"driver's process (pid {driver.pid} on {driver.host})",
                received=f"{len(apart)} worker(s) in other processes: {', '.join(apart[:3])}",
                fix="use a folder (./runs/my-search) or an s3:// URL, or run the workers in "
                "this process: LocalCluster(processes=False)",
            )
    elif protocol in LOCAL_PROTOCOLS:
        elsewhere = sorted(
            {p.host for p in workers.values() if p.host != driver.host and not p.sees_store}
        )
        if elsewhere:
            raise StorageInputError(
                f"the store {url} is a folder of {driver.host} that workers on other hosts "
                "do not see",
                expected=f"workers on {driver.host} only, or a store every worker reaches",
                received=f"workers on {', '.join(elsewhere[:5])}, which do not see the folder",
                fix="use an s3:// URL (s3://bucket/my-search), or a folder on a filesystem "
                "every host mounts at the same path (NFS, Lustre)",
            )
