"""Image datasets in Zarr stores on any fsspec URL, opened with xarray: validated on their
metadata and labels where they are opened, their images read where they are used."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from morphml_dask.exceptions import DatasetError
from morphml_dask.tasks._data import (
    ImageDataset,
    check_image_layout,
    check_labels,
    check_seed,
    make_dataset,
    split_indices,
)

__all__ = ["ZarrSource", "open_xarray_dataset"]

_ZARR_FIX = "check the URL and storage_options (credentials, endpoint_url)"


@dataclass(frozen=True)
class ZarrSource:
    """A Zarr store of images and labels: what a dataset opened from it travels as.

    Attributes
    ----------
    url
        Any fsspec URL or path.
    storage_options
        The store's fsspec options (credentials, ``endpoint_url``); never shown in reprs.
    images, labels, split
        The names of the store's variables.
    seed
        Shuffles the samples before the split when the store has no ``split`` variable.
    """

    url: str
    storage_options: dict[str, Any] | None = field(default=None, repr=False)
    images: str = "images"
    labels: str = "labels"
    split: str = "split"
    seed: int = 0

    @property
    def key(self) -> str:
        """Identifies the dataset within a process: URL, options, variables and seed."""
        fields = [self.url, self.storage_options, self.images, self.labels, self.split]
        return json.dumps([*fields, self.seed], sort_keys=True, default=repr)

    def open(self) -> Any:
        """The store as an `xarray.Dataset` of lazily read variables: opening reads the
        metadata only."""
        import xarray as xr

        try:
            # chunks=None: no Dask arrays, so that reading on a Dask worker stays local
            # instead of submitting tasks to the cluster from inside a task.
            return xr.open_zarr(self.url, storage_options=self.storage_options, chunks=None)
        except Exception as error:  # any failure to read a store the user named
            raise DatasetError(
                f"cannot open the Zarr dataset at {self.url!r}",
                expected="a readable Zarr store with images and labels variables",
                received=f"{type(error).__name__}: {error}"[:300],
                fix=_ZARR_FIX,
            ) from error

    def load(self) -> ImageDataset:
        """Read the whole store and split it, as `make_dataset` does."""
        store = self.open()
        self._check_variables(store)
        split = store[self.split].values if self.split in store.variables else None
        images, labels = store[self.images].values, store[self.labels].values
        return make_dataset(images, labels, name=self.url, split=split, seed=self.seed)

    def _check_variables(self, store: Any) -> None:
        missing = [v for v in (self.images, self.labels) if v not in store.variables]
        if missing:
            raise DatasetError(
                f"the Zarr store at {self.url!r} lacks variables {missing}",
                expected=f"variables {self.images!r} (images) and {self.labels!r} (labels)",
                received=f"variables {sorted(map(str, store.variables))}",
                fix="pass images=... and labels=... naming the store's variables",
            )


def open_xarray_dataset(
    url: str,
    *,
    images: str = "images",
    labels: str = "labels",
    split: str = "split",
    storage_options: dict[str, Any] | None = None,
    seed: int = 0,
) -> ImageDataset:
    """Open a Zarr store of images and labels on any fsspec URL (S3 included) with xarray.

    The store holds a variable ``images`` with the sample dimension first, a variable
    ``labels`` along the same dimension and, optionally, a ``split`` variable of
    ``"train"``/``"val"``/``"test"``.

    Opening reads the metadata, the labels and the split (a value per sample) to check
    them, count the classes and size the splits; never the images. They are read where
    the dataset is first used, once per process: on the workers of a search, since the
    dataset pickles as its URL, storage options, variable names and seed.

    Raises
    ------
    DatasetError
        When the store cannot be opened, lacks a variable, or its images or labels have
        the wrong shape or type.
    """
    _check_storage_options(storage_options)
    check_seed(seed, url)
    options = None if storage_options is None else copy.deepcopy(dict(storage_options))
    source = ZarrSource(url, options, images, labels, split, int(seed))
    store = source.open()
    source._check_variables(store)
    pixels = store[images]
    check_image_layout(pixels.shape, pixels.dtype, url)
    y = check_labels(store[labels].values, pixels.shape[0], url)
    which = store[split].values if split in store.variables else None
    parts = split_indices(len(y), which, (0.6, 0.2, 0.2), int(seed), url)
    *channels, h, w = (int(d) for d in pixels.shape[1:])
    c = channels[0] if channels else 1
    sizes = (len(parts[0]), len(parts[1]), len(parts[2]))
    return ImageDataset.from_source(source, url, int(y.max()) + 1, (c, h, w), sizes)


def _check_storage_options(storage_options: object) -> None:
    if storage_options is not None and not (
        isinstance(storage_options, Mapping) and all(isinstance(k, str) for k in storage_options)
    ):
        shown = [repr(k) for k in storage_options] if isinstance(storage_options, Mapping) else []
        raise DatasetError(
            "invalid storage_options for the Zarr dataset",
            expected="None or a mapping of fsspec options with string names, e.g. {'anon': True}",
            # The names only, never the values: they may be secrets.
            received=f"a {type(storage_options).__name__}"
            + (f" with names {shown}" if shown else ""),
            fix="pass storage_options={'key': ..., 'secret': ...} as a dict",
        )
