"""The devices of a worker process: its GPUs, found once, and what the running trials hold
of each (`DevicePool`), kept on the worker by `GPUPlugin` across searches."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from morphml_dask.config import config_value
from morphml_dask.gpus import trials_per_gpu, visible_device_ids

__all__ = ["DevicePool", "GPUPlugin", "device_pool", "worker_gpus"]


class GPUPlugin(WorkerPlugin):
    """A worker plugin that gives the worker its `DevicePool`, from which each running trial
    borrows its devices.

    Register it with ``client.register_plugin(GPUPlugin())``. Registering it again (every
    search does) keeps the pool the worker has: a fresh pool would lend devices that running
    trials hold. On a machine without CUDA the pool is empty and trials run on the CPU.
    """

    name = "morphml-gpus"

    def setup(self, worker: Any) -> None:
        # Finding the GPUs imports torch (about a second): only when a trial first wants one,
        # so that registering the plugin costs nothing and CPU searches never pay for it.
        _pool_of(worker)


class DevicePool:
    """The devices of one worker process, and what the trials running there hold of each.

    A trial borrows ``n >= 1`` whole devices that no other trial holds, or a share ``1/k`` of
    one device for a ``gpus_per_trial`` below 1 (``k = floor(1/f)``,
    `morphml_dask.gpus.trials_per_gpu`): the shares lent on one device never add up above
    1, so at most ``k`` such trials run on it at once. Thread-safe: each trial borrows from
    the thread it runs in.

    Parameters
    ----------
    devices
        The worker's devices (``"cuda:0"``, ...), or None to find them when a trial first
        asks for one (`worker_gpus`).
    """

    def __init__(self, devices: Sequence[str] | None) -> None:
        self._devices = None if devices is None else tuple(devices)
        self._held: dict[str, Fraction] = {}
        self._lock = threading.Lock()

    @property
    def devices(self) -> tuple[str, ...]:
        """The worker's devices, found now if not yet."""
        with self._lock:
            return self._discovered()

    @property
    def size(self) -> int:
        return len(self.devices)

    def held(self) -> dict[str, float]:
        """How much of each device the running trials hold now, from 0 to 1."""
        with self._lock:
            return {device: float(amount) for device, amount in self._held.items()}

    def _discovered(self) -> tuple[str, ...]:
        """The devices, found now if not yet (call with the lock held)."""
        if self._devices is None:
            self._devices = tuple(worker_gpus())
        return self._devices

    @contextmanager
    def borrow(self, gpus: float) -> Iterator[tuple[str, ...]]:
        """The devices of one trial of ``gpus`` GPUs, lent until the block ends.

        ``("cpu",)`` when ``gpus`` is 0 or the worker has no GPU; else ``int(gpus)`` whole
        devices, or, for a fraction, the device whose share it holds.

        Raises
        ------
        RuntimeError
            When less is free than the trial asks for: the worker's Dask ``GPU`` resources
            promise more than its devices hold.
        """
        taken: dict[str, Fraction] = {}
        if gpus > 0:
            with self._lock:
                devices = self._discovered()
                if devices:
                    taken = self._take(devices, gpus)
        if not taken:
            yield ("cpu",)
            return
        try:
            yield tuple(taken)
        finally:
            with self._lock:
                for device, amount in taken.items():
                    left = self._held[device] - amount
                    if left:
                        self._held[device] = left
                    else:
                        del self._held[device]

    def _take(self, devices: tuple[str, ...], gpus: float) -> dict[str, Fraction]:
        """Hold and return what one trial of ``gpus`` GPUs takes (call with the lock held)."""
        fix = f"start the worker with --resources GPU={len(devices)}, the GPUs it has"
        if gpus >= 1:
            wanted = int(gpus)
            free = [device for device in devices if device not in self._held]
            if len(free) < wanted:
                raise RuntimeError(
                    f"a trial asked for {wanted} GPU(s) but {len(free)} of this worker's "
                    f"{len(devices)} are free: its Dask GPU resources promise more; {fix}"
                )
            taken = dict.fromkeys(free[:wanted], Fraction(1))
        else:
            share = Fraction(1, trials_per_gpu(gpus))
            fitting = [d for d in devices if self._held.get(d, 0) + share <= 1]
            if not fitting:
                raise RuntimeError(
                    f"a trial asked for {share} of a GPU but none of this worker's "
                    f"{len(devices)} has that much free: its Dask GPU resources promise "
                    f"more; {fix}"
                )
            # The fullest device that still fits: whole devices stay free for trials that
            # want one (another search on the same cluster).
            taken = {max(fitting, key=lambda device: self._held.get(device, 0)): share}
        for device, amount in taken.items():
            self._held[device] = self._held.get(device, Fraction(0)) + amount
        return taken


def worker_gpus() -> list[str]:
    """This process's GPUs as torch devices, ``["cuda:0", ..., "cuda:<n-1>"]``.

    torch counts them (``CUDA_VISIBLE_DEVICES`` limits what it sees). Under the
    ``morphml.cluster.gpus`` override (for tests, and machines where discovery fails) CUDA is
    not asked: the process has one device per entry of its ``CUDA_VISIBLE_DEVICES``, or
    ``morphml.cluster.gpus`` devices when that is not set.
    """
    assumed = config_value("cluster.gpus")
    if assumed is not None:
        count = len(visible_device_ids(int(assumed)))
    else:
        try:
            import torch

            count = int(torch.cuda.device_count())
        except Exception:  # a broken CUDA install means no GPU, not a dead worker
            count = 0
    return [f"cuda:{index}" for index in range(count)]


# One pool per worker process, made by whoever asks first: the plugin or a trial.
_POOL_LOCK = threading.Lock()


def _pool_of(worker: Any) -> DevicePool:
    """``worker``'s device pool, made on first use and kept for the life of the process."""
    with _POOL_LOCK:
        pool: DevicePool | None = getattr(worker, "morphml_devices", None)
        if pool is None:
            pool = DevicePool(None)
            setattr(worker, "morphml_devices", pool)  # noqa: B010 (a plugin-owned attribute)
        return pool


def device_pool() -> DevicePool:
    """The device pool of the worker this runs on (an empty one outside a worker)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except ValueError:  # not on a Dask worker (tests, local runs)
        return _LOCAL_POOL
    return _pool_of(worker)


_LOCAL_POOL = DevicePool([])
