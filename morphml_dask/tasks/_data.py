"""Image classification datasets: validated NumPy arrays split into train, val and test."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from morphml_dask.exceptions import DatasetError

__all__ = ["ImageDataset", "load_digits", "make_dataset", "open_xarray_dataset"]

FloatArray = np.ndarray[Any, np.dtype[np.float32]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageDataset:
    """Images ``(N, C, H, W)`` as float32 and integer labels, split three ways."""

    name: str
    x_train: FloatArray
    y_train: IntArray
    x_val: FloatArray
    y_val: IntArray
    x_test: FloatArray
    y_test: IntArray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)


def make_dataset(
    images: Any,
    labels: Any,
    *,
    name: str = "arrays",
    split: Any = None,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> ImageDataset:
    """Validate arrays and split them into train, validation and test sets.

    Parameters
    ----------
    images
        ``(N, H, W)`` or ``(N, C, H, W)`` real numbers, finite.
    labels
        ``(N,)`` integer class ids starting at 0.
    name
        Shown in results and errors.
    split
        Optional ``(N,)`` array of ``"train"``/``"val"``/``"test"``; without it the samples are
        shuffled with ``seed`` and split by ``fractions``.
    """
    x = _check_images(images, name)
    y = _check_labels(labels, len(x), name)
    if split is None:
        order = np.random.default_rng(seed).permutation(len(x))
        n_train = max(1, round(fractions[0] * len(x)))
        n_val = max(1, round(fractions[1] * len(x)))
        parts = np.split(order, [n_train, n_train + n_val])
    else:
        which = np.asarray(split).astype(str)
        if which.shape != (len(x),) or not set(which.tolist()) <= set(SPLITS):
            raise DatasetError(
                f"dataset {name!r} has a malformed split",
                expected=f"one of {list(SPLITS)} per sample ({len(x)} values)",
                received=f"shape {which.shape}, values {sorted(set(which.tolist()))[:5]}",
                fix="label every sample train, val or test, or leave the split out",
            )
        parts = [np.flatnonzero(which == s) for s in SPLITS]
    for part, split_name in zip(parts, SPLITS, strict=True):
        if len(part) == 0:
            raise DatasetError(
                f"dataset {name!r} has an empty {split_name} split",
                expected="at least one sample in each of train, val and test",
                received=f"{len(x)} samples with split sizes {[len(p) for p in parts]}",
                fix="provide more samples or change the split",
            )
    train, val, test = parts
    return ImageDataset(
        name,
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        x_test=x[test],
        y_test=y[test],
        num_classes=int(y.max()) + 1,
    )


@functools.cache
def load_digits(seed: int = 0) -> ImageDataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), scaled to [0, 1].

    Cached per process, so workers load it once.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return make_dataset(bunch.images / 16.0, bunch.target, name="digits", seed=seed)


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
    """
    import xarray as xr

    ds = xr.open_zarr(url, storage_options=storage_options)
    missing = [v for v in (images, labels) if v not in ds.variables]
    if missing:
        raise DatasetError(
            f"the Zarr store at {url!r} lacks variables {missing}",
            expected=f"variables {images!r} (images) and {labels!r} (labels)",
            received=f"variables {sorted(map(str, ds.variables))}",
            fix="pass images=... and labels=... naming the store's variables",
        )
    split_values = ds[split].values if split in ds.variables else None
    return make_dataset(
        ds[images].values, ds[labels].values, name=url, split=split_values, seed=seed
    )


def _check_images(images: Any, name: str) -> FloatArray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[0] == 0 or min(x.shape) == 0:
        raise DatasetError(
            f"dataset {name!r} has images of the wrong shape",
            expected="a non-empty array (N, H, W) or (N, C, H, W)",
            received=f"shape {np.shape(images)}",
            fix="reshape the images to (samples, channels, height, width)",
        )
    if not (np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)):
        raise DatasetError(
            f"dataset {name!r} has images of the wrong dtype",
            expected="real numbers (float or integer)",
            received=f"dtype {x.dtype}",
            fix="convert the images with images.astype('float32')",
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DatasetError(
            f"dataset {name!r} has NaN or infinite pixels",
            expected="finite values",
            received=f"{int((~np.isfinite(x)).sum())} non-finite values",
            fix="clean or impute the images before searching",
        )
    return x


def _check_labels(labels: Any, count: int, name: str) -> IntArray:
    y = np.asarray(labels)
    if y.shape != (count,):
        raise DatasetError(
            f"dataset {name!r} has labels of the wrong shape",
            expected=f"one label per image: shape ({count},)",
            received=f"shape {y.shape}",
            fix="give a 1-D array of class ids, as long as the image array",
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise DatasetError(
            f"dataset {name!r} has invalid labels",
            expected="non-negative integer class ids",
            received=f"dtype {y.dtype}, min {y.min()!r}",
            fix="encode classes as integers 0..K-1, e.g. numpy.unique(y, return_inverse=True)",
        )
    if int(y.max()) < 1:
        raise DatasetError(
            f"dataset {name!r} has a single class",
            expected="at least two classes",
            received=f"only class {int(y.max())}",
            fix="classification needs labels of two or more classes",
        )
    return y.astype(np.int64)
