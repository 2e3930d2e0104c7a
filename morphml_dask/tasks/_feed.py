"""Feeding a dataset's batches to a trial's device.

A dataset up to ``device_data_mb`` lives on the device, copied there once per process and
device and shared, read-only, by every trial of the process that trains on it
(`device_tensors`). A larger one streams from host memory through a `DataLoader`: batches
are gathered by worker processes, pinned on CUDA and copied without blocking.
"""

from __future__ import annotations

import abc
import multiprocessing
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from morphml_dask.tasks._data import ImageDataset

__all__ = ["DEFAULT_DEVICE_DATA_MB", "DEFAULT_LOADER_WORKERS", "Feed", "device_tensors", "feed_for"]

DEFAULT_DEVICE_DATA_MB = 256.0
"""Datasets up to this size (all splits) live on the device; larger ones stream."""
DEFAULT_LOADER_WORKERS = 2
"""Worker processes of the `DataLoader` that streams a large dataset."""

Pair = tuple["torch.Tensor", "torch.Tensor"]
_ON_DEVICE: weakref.WeakKeyDictionary[ImageDataset, dict[str, dict[str, Pair]]] = (
    weakref.WeakKeyDictionary()
)
_ON_DEVICE_LOCK = threading.Lock()


def device_tensors(dataset: ImageDataset, device: str) -> dict[str, Pair]:
    """Every split of ``dataset`` as tensors on ``device``: ``{"train": (x, y), ...}``.

    Made once per process, dataset and device, and shared by every trial there: trials
    only read them (they index batches out of them). A dataset opened from a URL is
    shared by every task of the process that names the same store.
    """
    import torch

    loaded = dataset.load()
    with _ON_DEVICE_LOCK:
        per_device = _ON_DEVICE.setdefault(loaded, {})
        tensors = per_device.get(device)
        if tensors is None:
            tensors = {}
            for split in ("train", "val", "test"):
                x, y = loaded.split(split)
                tensors[split] = (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
            if torch.device(device).type == "cuda":
                # The copies ran on this thread's stream: finish them before trials on other
                # streams read the tensors.
                torch.cuda.current_stream(device).synchronize()
            per_device[device] = tensors
    return tensors


class Feed(abc.ABC):
    """Batches of one dataset on one device."""

    def __init__(self, dataset: ImageDataset, device: str) -> None:
        self.device = device
        self.sizes = dict(zip(("train", "val", "test"), dataset.sizes, strict=True))

    @abc.abstractmethod
    def batches(
        self, split: str, batch_size: int, order: torch.Tensor | None = None
    ) -> Iterator[Pair]:
        """``(images, labels)`` batches of ``split`` on the device: in the sample order
        ``order`` (a CPU tensor of indices), or in the stored order."""


class DeviceFeed(Feed):
    """Batches indexed out of the dataset's tensors on the device (`device_tensors`)."""

    def __init__(self, dataset: ImageDataset, device: str) -> None:
        super().__init__(dataset, device)
        self.tensors = device_tensors(dataset, device)

    def batches(
        self, split: str, batch_size: int, order: torch.Tensor | None = None
    ) -> Iterator[Pair]:
        x, y = self.tensors[split]
        if order is None:
            for start in range(0, len(x), batch_size):
                yield x[start : start + batch_size], y[start : start + batch_size]
            return
        order = order.to(x.device)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            yield x[batch], y[batch]


class _BatchesOfArrays:
    """A map-style dataset whose items are whole batches, ``(split, indices)`` ->
    ``(images, labels)``: one NumPy gather per batch instead of one item per sample."""

    def __init__(self, dataset: ImageDataset) -> None:
        self.arrays = {split: dataset.split(split) for split in ("train", "val", "test")}

    def __getitem__(self, key: tuple[str, np.ndarray[Any, Any]]) -> Pair:
        import torch

        split, indices = key
        x, y = self.arrays[split]
        return torch.from_numpy(x[indices]), torch.from_numpy(y[indices])


class LoaderFeed(Feed):
    """Batches gathered from host memory by a `DataLoader`'s worker processes, pinned on
    CUDA and copied to the device without blocking.

    A process that may not have children (a Dask worker is a daemon unless
    ``distributed.worker.daemon`` is false) gathers the batches itself.
    """

    def __init__(self, dataset: ImageDataset, device: str, workers: int) -> None:
        import torch

        super().__init__(dataset, device)
        self.source = _BatchesOfArrays(dataset.load())
        self.pinned = torch.device(device).type == "cuda"
        self.workers = 0 if multiprocessing.current_process().daemon else workers

    def _loader(self, keys: list[tuple[str, np.ndarray[Any, Any]]]) -> DataLoader[Pair]:
        from torch.utils.data import DataLoader

        return DataLoader(
            self.source,  # type: ignore[arg-type]
            batch_size=None,  # each item is a batch already
            sampler=keys,
            num_workers=self.workers,
            pin_memory=self.pinned,
        )

    def batches(
        self, split: str, batch_size: int, order: torch.Tensor | None = None
    ) -> Iterator[Pair]:
        count = self.sizes[split]
        indices = np.arange(count) if order is None else order.numpy()
        keys = [
            (split, indices[start : start + batch_size]) for start in range(0, count, batch_size)
        ]
        for x, y in self._loader(keys):
            yield (
                x.to(self.device, non_blocking=self.pinned),
                y.to(self.device, non_blocking=self.pinned),
            )


def feed_for(
    dataset: ImageDataset, device: str, *, device_data_mb: float, loader_workers: int
) -> Feed:
    """A `DeviceFeed` for a dataset of at most ``device_data_mb`` megabytes (2**20 bytes,
    all splits), else a `LoaderFeed` with ``loader_workers`` worker processes."""
    if dataset.nbytes <= device_data_mb * 2**20:
        return DeviceFeed(dataset, device)
    return LoaderFeed(dataset, device, loader_workers)
