"""Image classification datasets: validated NumPy arrays split into train, val and test."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from morphml_dask.exceptions import DatasetError
from morphml_dask.validation import is_int, is_number

__all__ = ["ImageDataset", "load_digits", "make_dataset", "open_xarray_dataset"]

FloatArray = np.ndarray[Any, np.dtype[np.float32]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageDataset:
    """Images ``(N, C, H, W)`` as float32 and integer labels, split three ways.

    Build one with `make_dataset`; built by hand, it raises `DatasetError` when the splits'
    arrays disagree or a label is not below ``num_classes``.
    """

    name: str
    x_train: FloatArray
    y_train: IntArray
    x_val: FloatArray
    y_val: IntArray
    x_test: FloatArray
    y_test: IntArray
    num_classes: int

    def __post_init__(self) -> None:
        classes = self.num_classes
        if not is_int(classes) or classes < 2:
            raise DatasetError(
                f"dataset {self.name!r} has an invalid num_classes",
                expected="an integer >= 2",
                received=repr(classes),
                fix="build datasets with make_dataset(images, labels), which counts the classes",
            )
        shape = np.shape(self.x_train)[1:]
        for split in SPLITS:
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            _check_split_arrays(self.name, split, x, y, shape)
            if len(y) and (y.min() < 0 or y.max() >= classes):
                raise DatasetError(
                    f"dataset {self.name!r} has {split} labels out of range",
                    expected=f"class ids from 0 to num_classes - 1 = {classes - 1}",
                    received=f"labels from {int(y.min())} to {int(y.max())}",
                    fix="raise num_classes, or build the dataset with make_dataset",
                )

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
    if not is_int(seed) or seed < 0:
        raise DatasetError(
            f"dataset {name!r} has an invalid seed",
            expected="a non-negative integer",
            received=repr(seed),
            fix="pass e.g. seed=0",
        )
    parts = _split(len(x), split, fractions, seed, name)
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


def _split(
    count: int, split: Any, fractions: tuple[float, float, float], seed: int, name: str
) -> list[IntArray]:
    """The sample indices of train, val and test: as ``split`` labels them, or shuffled
    with ``seed`` and cut by ``fractions``."""
    if split is None:
        _check_fractions(fractions, name)
        order = np.random.default_rng(seed).permutation(count)
        n_train = max(1, round(fractions[0] * count))
        n_val = max(1, round(fractions[1] * count))
        parts = np.split(order, [n_train, n_train + n_val])
    else:
        which = _as_array(split, name, "split").astype(str)
        if which.shape != (count,) or not set(which.tolist()) <= set(SPLITS):
            raise DatasetError(
                f"dataset {name!r} has a malformed split",
                expected=f"one of {list(SPLITS)} per sample ({count} values)",
                received=f"shape {which.shape}, values {sorted(set(which.tolist()))[:5]}",
                fix="label every sample train, val or test, or leave the split out",
            )
        parts = [np.flatnonzero(which == s) for s in SPLITS]
    for part, split_name in zip(parts, SPLITS, strict=True):
        if len(part) == 0:
            raise DatasetError(
                f"dataset {name!r} has an empty {split_name} split",
                expected="at least one sample in each of train, val and test",
                received=f"{count} samples with split sizes {[len(p) for p in parts]}",
                fix="provide more samples or change the split",
            )
    return parts


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
    try:
        ds = xr.open_zarr(url, storage_options=storage_options)
    except Exception as error:  # any failure to read a store the user named
        raise DatasetError(
            f"cannot open the Zarr dataset at {url!r}",
            expected="a readable Zarr store with images and labels variables",
            received=f"{type(error).__name__}: {error}"[:300],
            fix="check the URL and storage_options (credentials, endpoint_url)",
        ) from error
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


def _as_array(values: Any, name: str, what: str) -> np.ndarray[Any, Any]:
    try:
        return np.asarray(values)
    except (ValueError, TypeError) as error:  # ragged nested lists
        raise DatasetError(
            f"dataset {name!r} has {what} that are not an array",
            expected=f"{what} of one shape, as a NumPy array or evenly nested lists",
            received=f"{type(values).__name__}: {error}"[:300],
            fix=f"give every sample the same shape, then pass numpy.stack({what})",
        ) from error


def _check_images(images: Any, name: str) -> FloatArray:
    x = _as_array(images, name, "images")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[0] == 0 or min(x.shape) == 0:
        raise DatasetError(
            f"dataset {name!r} has images of the wrong shape",
            expected="a non-empty array (N, H, W) or (N, C, H, W)",
            received=f"shape {np.shape(images)}",
            fix="reshape the images to (samples, channels, height, width)",
        )
    if x.dtype.kind not in "iuf":  # timedelta64 counts as an integer type to NumPy
        raise DatasetError(
            f"dataset {name!r} has images of the wrong dtype",
            expected="real numbers (float or integer)",
            received=f"dtype {x.dtype}",
            fix="convert the images with images.astype('float32')",
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DatasetError(
            f"dataset {name!r} has NaN or infinite pixels",
            expected=f"finite values within float32's range (+-{np.finfo(np.float32).max:.3g})",
            received=f"{int((~np.isfinite(x)).sum())} non-finite values as float32",
            fix="clean or impute the images, and scale them, e.g. to [0, 1], before searching",
        )
    return x


def _check_labels(labels: Any, count: int, name: str) -> IntArray:
    y = _as_array(labels, name, "labels")
    if y.shape != (count,):
        raise DatasetError(
            f"dataset {name!r} has labels of the wrong shape",
            expected=f"one label per image: shape ({count},)",
            received=f"shape {y.shape}",
            fix="give a 1-D array of class ids, as long as the image array",
        )
    fix = "encode classes as integers 0..K-1, e.g. numpy.unique(y, return_inverse=True)"
    if y.dtype.kind not in "iu":  # not y.min(): strings and mixed objects cannot be ordered
        raise DatasetError(
            f"dataset {name!r} has invalid labels",
            expected="non-negative integer class ids",
            received=f"dtype {y.dtype}",
            fix=fix,
        )
    if y.min() < 0 or y.max() > np.iinfo(np.int64).max:
        raise DatasetError(
            f"dataset {name!r} has labels out of range",
            expected="non-negative integer class ids",
            received=f"labels from {y.min()} to {y.max()}",
            fix=fix,
        )
    if int(y.max()) < 1:
        raise DatasetError(
            f"dataset {name!r} has a single class",
            expected="at least two classes",
            received=f"only class {int(y.max())}",
            fix="classification needs labels of two or more classes",
        )
    return y.astype(np.int64)


def _check_fractions(fractions: Any, name: str) -> None:
    ok = (
        isinstance(fractions, list | tuple)
        and len(fractions) == 3
        and all(is_number(f) and 0 < f < 1 for f in fractions)
        and abs(sum(fractions) - 1.0) <= 1e-6
    )
    if not ok:
        raise DatasetError(
            f"dataset {name!r} has invalid split fractions",
            expected="three fractions (train, val, test), each between 0 and 1, summing to 1",
            received=repr(fractions),
            fix="pass e.g. fractions=(0.6, 0.2, 0.2)",
        )


def _check_split_arrays(name: str, split: str, x: Any, y: Any, shape: tuple[int, ...]) -> None:
    ok = (
        isinstance(x, np.ndarray)
        and isinstance(y, np.ndarray)
        and x.dtype == np.float32
        and x.ndim == 4
        and x.shape[1:] == shape
        and y.dtype.kind in "iu"
        and y.shape == (len(x),)
    )
    if not ok:
        raise DatasetError(
            f"dataset {name!r} has malformed {split} arrays",
            expected=f"float32 images (N, C, H, W) with (C, H, W) = {shape} and N integer labels",
            received=f"images {getattr(x, 'dtype', type(x).__name__)} {np.shape(x)}, "
            f"labels {getattr(y, 'dtype', type(y).__name__)} {np.shape(y)}",
            fix="build datasets with make_dataset(images, labels), which checks and splits them",
        )
