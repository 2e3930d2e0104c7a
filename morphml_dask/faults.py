"""Fault injection for chaos tests and benchmarks: trials that fail, workers that die,
an endpoint that goes away.

- `FlakyTask` wraps a task so that a fixed share of architectures raise or diverge.
- `BrokenWorkerTask` wraps a task so that every trial fails on some workers, as on a node
  whose GPU is broken.
- `WorkerKiller` SIGKILLs a random worker process of a cluster every few seconds (the nanny
  starts a new one) and records which trials each kill interrupted.
- `TcpOutage` forwards a local port to a server and can refuse every connection for a while,
  as an object store does during an outage, while the server keeps its data.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import TaskError
from morphml_dask.tasks import BaseTask, Evaluation

if TYPE_CHECKING:
    import torch
    from distributed import Client

    from morphml_dask.space import ArchGraph

__all__ = ["BrokenWorkerTask", "FlakyTask", "Kill", "TcpOutage", "WorkerKiller"]


class FlakyTask(BaseTask):
    """``task``, except that a share of architectures raise and another share diverge.

    Which ones is decided by a hash of the architecture, the budget and ``seed``, the same in
    every process, so a failing architecture fails wherever and however often it runs.

    Parameters
    ----------
    task
        The task that does the work for the others.
    raise_rate, nan_rate
        Shares of architectures whose evaluation raises `RuntimeError`, or returns a NaN
        objective (a diverged training).
    seed
        Picks which architectures.
    message
        What the raised errors say; "CUDA out of memory" makes them out-of-memory failures.
    """

    def __init__(
        self,
        task: BaseTask,
        raise_rate: float = 0.2,
        nan_rate: float = 0.05,
        seed: int = 0,
        message: str = "injected failure",
    ) -> None:
        if min(raise_rate, nan_rate) < 0 or raise_rate + nan_rate > 1:
            raise TaskError(
                "invalid failure rates of FlakyTask",
                expected="raise_rate and nan_rate in [0, 1], summing to at most 1",
                received=f"raise_rate={raise_rate!r}, nan_rate={nan_rate!r}",
                fix="lower the rates, e.g. FlakyTask(task, raise_rate=0.2, nan_rate=0.05)",
            )
        self.task = task
        self.raise_rate = raise_rate
        self.nan_rate = nan_rate
        self.seed = seed
        self.message = message
        self.objective = task.objective
        self.direction = task.direction

    def evaluate(
        self,
        arch: ArchGraph,
        budget: int,
        *,
        device: str = "cpu",
        weights: dict[str, torch.Tensor] | None = None,
        trained_epochs: int = 0,
    ) -> Evaluation:
        draw = self._draw(arch, budget)
        evaluation = self.task.evaluate(
            arch, budget, device=device, weights=weights, trained_epochs=trained_epochs
        )
        if draw < self.raise_rate:
            raise RuntimeError(f"{self.message} (architecture {arch.fingerprint[:8]})")
        if draw < self.raise_rate + self.nan_rate:
            metrics = {**evaluation.metrics, self.objective: math.nan}
            return Evaluation(metrics=metrics, curve=evaluation.curve, weights=None)
        return evaluation

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": "flaky",
            "task": self.task.to_dict(),
            "raise_rate": self.raise_rate,
            "nan_rate": self.nan_rate,
            "seed": self.seed,
            "message": self.message,
        }

    def _draw(self, arch: ArchGraph, budget: int) -> float:
        digest = hashlib.sha256(f"{self.seed}/{arch.fingerprint}/{budget}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64


class BrokenWorkerTask(BaseTask):
    """``task``, except that every evaluation on the Dask workers named ``broken`` raises
    ``error`` (by default a CUDA error), as on a node with a faulty GPU.

    Parameters
    ----------
    task
        The task that does the work on the healthy workers.
    broken
        Names of the broken workers (``LocalCluster`` names them 0, 1, ...).
    error
        The message of the `RuntimeError` raised there.
    """

    def __init__(
        self,
        task: BaseTask,
        broken: set[str],
        error: str = "CUDA error: an illegal memory access was encountered",
    ) -> None:
        self.task = task
        self.broken = {str(name) for name in broken}
        self.error = error
        self.objective = task.objective
        self.direction = task.direction

    def evaluate(
        self,
        arch: ArchGraph,
        budget: int,
        *,
        device: str = "cpu",
        weights: dict[str, torch.Tensor] | None = None,
        trained_epochs: int = 0,
    ) -> Evaluation:
        from distributed import get_worker

        name = str(get_worker().name)
        if name in self.broken:
            raise RuntimeError(f"{self.error} (injected on worker {name})")
        return self.task.evaluate(
            arch, budget, device=device, weights=weights, trained_epochs=trained_epochs
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": "broken-worker",
            "task": self.task.to_dict(),
            "broken": sorted(self.broken),
            "error": self.error,
        }


@dataclass
class Kill:
    """One worker process killed: when, which, and the trial keys it was running."""

    time: float
    worker: str
    pid: int
    keys: list[str] = field(default_factory=list)


class WorkerKiller:
    """SIGKILLs a random worker process of ``client``'s cluster every ``interval`` seconds.

    Use it as a context manager around the work to disturb. The workers must run under
    nannies (``LocalCluster(processes=True)``, ``dask worker``), which start a new worker
    process after each kill.

    Parameters
    ----------
    client
        A client of the cluster; the worker processes must be on this machine.
    interval
        Seconds between kills (each drawn uniformly from 0.5x to 1.5x of it).
    seed
        Picks the victims and the intervals.
    """

    def __init__(self, client: Client, interval: float = 3.0, seed: int = 0) -> None:
        self.client = client
        self.interval = interval
        self.kills: list[Kill] = []
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="morphml-worker-killer")
        self._thread.daemon = True

    def __enter__(self) -> WorkerKiller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval * self._random.uniform(0.5, 1.5)):
            with contextlib.suppress(Exception):  # a worker may be restarting: try later
                self._kill_one()

    def _kill_one(self) -> None:
        pids: dict[str, int] = self.client.run(os.getpid)
        if not pids:
            return
        worker = self._random.choice(sorted(pids))
        processing = self.client.processing(workers=[worker])  # type: ignore[no-untyped-call]
        keys = [str(key) for key in processing.get(worker, ())]
        os.kill(pids[worker], signal.SIGKILL)
        self.kills.append(Kill(time.time(), worker, pids[worker], keys))


class TcpOutage:
    """A TCP forwarder from a free local port to ``target_port``, with an off switch.

    `down` closes the listening socket and every open connection, so clients see refused
    and reset connections; `up` listens on the same port again. The server behind it keeps
    running, and keeps its data, all along.

    Parameters
    ----------
    target_port
        The port of the server on 127.0.0.1.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> TcpOutage:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by down()
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    client.close()
                    server.close()
                    return
                self._open.update((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
