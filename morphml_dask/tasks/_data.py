"""Image classification datasets: validated NumPy arrays split into train, val and test, in
memory or opened from a URL.

A dataset opened from a Zarr store (`open_xarray_dataset`, in ``_zarr.py``), and the digits,
travel as their recipe (the URL, its storage options, the variable names and the seed), never
as their arrays: the process that unpickles one (a Dask worker) loads the arrays on first
use, once, and every task there that names the same store and seed shares them
(`opened_datasets` lists them).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from morphml_dask.exceptions import DatasetError
from morphml_dask.validation import is_int, is_number

__all__ = ["ImageDataset", "load_digits", "make_dataset", "opened_datasets"]

FloatArray = np.ndarray[Any, np.dtype[np.float32]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
SPLITS = ("train", "val", "test")


class DatasetSource(Protocol):
    """Where a dataset's arrays come from, small enough to travel in its place."""

    @property
    def key(self) -> str:
        """Identifies the arrays: two sources with one key load the same dataset."""

    def load(self) -> ImageDataset:
        """Read and validate the arrays."""


@dataclass(frozen=True, eq=False)
class _Splits:
    """The arrays of a dataset loaded in this process (compared by identity)."""

    x_train: FloatArray
    y_train: IntArray
    x_val: FloatArray
    y_val: IntArray
    x_test: FloatArray
    y_test: IntArray


class ImageDataset:
    """Images ``(N, C, H, W)`` as float32 and integer labels, split three ways.

    Build one with `make_dataset`, or open a Zarr store with `open_xarray_dataset`; built by
    hand from arrays, it raises `DatasetError` when the splits' arrays disagree or a label is
    not below ``num_classes``.

    Parameters
    ----------
    name
        Shown in results and errors; the URL of a dataset opened from one.
    x_train, y_train, x_val, y_val, x_test, y_test
        The images and labels of each split.
    num_classes
        The number of classes, above every label.

    Notes
    -----
    A dataset opened from a URL holds its metadata (name, classes, image shape, split
    sizes) and reads its arrays on first use of one, then keeps them for the life of the
    process. Pickled, it is its URL, storage options, variable names and seed: a worker
    that unpickles it opens the store itself. Datasets are immutable.
    """

    name: str
    num_classes: int
    _shape: tuple[int, int, int]
    _sizes: tuple[int, int, int]
    _splits: _Splits | None
    _source: DatasetSource | None
    _loaded: ImageDataset | None

    def __init__(
        self,
        name: str,
        x_train: FloatArray,
        y_train: IntArray,
        x_val: FloatArray,
        y_val: IntArray,
        x_test: FloatArray,
        y_test: IntArray,
        num_classes: int,
    ) -> None:
        splits = _Splits(x_train, y_train, x_val, y_val, x_test, y_test)
        _check_splits(name, splits, num_classes)
        c, h, w = x_train.shape[1:]
        self._set(
            name=name,
            num_classes=num_classes,
            _shape=(int(c), int(h), int(w)),
            _sizes=(len(y_train), len(y_val), len(y_test)),
            _splits=splits,
            _source=None,
            _loaded=None,
        )

    @classmethod
    def from_source(
        cls,
        source: DatasetSource,
        name: str,
        num_classes: int,
        shape: tuple[int, int, int],
        sizes: tuple[int, int, int],
    ) -> ImageDataset:
        """A dataset whose arrays ``source`` loads on first use (once per process), with
        the metadata it was opened with: `open_xarray_dataset` makes them."""
        dataset = cls.__new__(cls)
        dataset._set(
            name=name,
            num_classes=num_classes,
            _shape=shape,
            _sizes=sizes,
            _splits=None,
            _source=source,
            _loaded=None,
        )
        return dataset

    def _set(self, **values: Any) -> None:
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"ImageDataset is immutable: cannot set {key!r}")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._source is not None:  # it travels as its recipe, never as its arrays
            state.update(_splits=None, _loaded=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._set(**state)

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, num_classes={self.num_classes}, "
            f"input_shape={self._shape}, sizes={self._sizes})"
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one image."""
        return self._shape

    @property
    def sizes(self) -> tuple[int, int, int]:
        """The samples in train, val and test."""
        return self._sizes

    @property
    def nbytes(self) -> int:
        """The bytes of all its arrays (float32 images, int64 labels), known without
        loading them."""
        c, h, w = self._shape
        return sum(self._sizes) * (4 * c * h * w + 8)

    @property
    def url(self) -> str | None:
        """The URL the dataset was opened from; None for arrays given in memory."""
        return getattr(self._source, "url", None)

    @property
    def is_loaded(self) -> bool:
        """Whether this object holds its arrays (or has looked them up in this process)."""
        return self._splits is not None or self._loaded is not None

    def load(self) -> ImageDataset:
        """The dataset with its arrays in memory: itself, or for one opened from a URL (or
        unpickled), the copy this process loaded, once, and shares among its tasks.

        Raises
        ------
        DatasetError
            When the store cannot be read, or no longer holds what it did when opened.
        """
        if self._splits is not None:
            return self
        if self._loaded is None:
            assert self._source is not None  # every dataset has arrays or a source
            loaded = _load_once(self._source)
            self._check_same(loaded)
            self._set(_loaded=loaded)
        assert self._loaded is not None
        return self._loaded

    def _check_same(self, loaded: ImageDataset) -> None:
        opened = (self.num_classes, self._shape, self._sizes)
        now = (loaded.num_classes, loaded.input_shape, loaded.sizes)
        if opened != now:
            raise DatasetError(
                f"the dataset {self.name!r} changed since it was opened",
                expected=f"(classes, image shape, split sizes) {opened}, as when opened",
                received=repr(now),
                fix="keep a store unchanged while a search reads it: write a new URL instead",
            )

    def _arrays(self) -> _Splits:
        splits = self.load()._splits
        assert splits is not None
        return splits

    @property
    def x_train(self) -> FloatArray:
        return self._arrays().x_train

    @property
    def y_train(self) -> IntArray:
        return self._arrays().y_train

    @property
    def x_val(self) -> FloatArray:
        return self._arrays().x_val

    @property
    def y_val(self) -> IntArray:
        return self._arrays().y_val

    @property
    def x_test(self) -> FloatArray:
        return self._arrays().x_test

    @property
    def y_test(self) -> IntArray:
        return self._arrays().y_test

    def split(self, which: str) -> tuple[FloatArray, IntArray]:
        """The images and labels of split ``which`` (``"train"``, ``"val"`` or ``"test"``)."""
        splits = self._arrays()
        x: FloatArray = getattr(splits, f"x_{which}")
        y: IntArray = getattr(splits, f"y_{which}")
        return x, y


def _check_splits(name: str, splits: _Splits, classes: object) -> None:
    if not is_int(classes) or classes < 2:
        raise DatasetError(
            f"dataset {name!r} has an invalid num_classes",
            expected="an integer >= 2",
            received=repr(classes),
            fix="build datasets with make_dataset(images, labels), which counts the classes",
        )
    shape = np.shape(splits.x_train)[1:]
    for split in SPLITS:
        x, y = getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")
        _check_split_arrays(name, split, x, y, shape)
        if len(y) and (y.min() < 0 or y.max() >= classes):
            raise DatasetError(
                f"dataset {name!r} has {split} labels out of range",
                expected=f"class ids from 0 to num_classes - 1 = {classes - 1}",
                received=f"labels from {int(y.min())} to {int(y.max())}",
                fix="raise num_classes, or build the dataset with make_dataset",
            )


# -- the datasets this process has loaded ----------------------------------------------------

_LOADED: dict[str, ImageDataset] = {}
_LOADED_LOCK = threading.Lock()


def _load_once(source: DatasetSource) -> ImageDataset:
    """The dataset ``source`` loads, loaded once per process: trials running at the same
    time wait for the first load rather than read the store again."""
    key = source.key
    with _LOADED_LOCK:
        dataset = _LOADED.get(key)
        if dataset is None:
            dataset = source.load()
            dataset._set(_source=source)
            _LOADED[key] = dataset
    return dataset


def opened_datasets() -> list[str]:
    """The names (URLs) of the datasets this process has loaded from their source, in the
    order it loaded them: ``client.run(opened_datasets)`` shows what each worker holds."""
    with _LOADED_LOCK:
        return [dataset.name for dataset in _LOADED.values()]


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
    y = check_labels(labels, len(x), name)
    check_seed(seed, name)
    train, val, test = split_indices(len(x), split, fractions, seed, name)
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


def check_seed(seed: object, name: str) -> None:
    if not is_int(seed) or seed < 0:
        raise DatasetError(
            f"dataset {name!r} has an invalid seed",
            expected="a non-negative integer",
            received=repr(seed),
            fix="pass e.g. seed=0",
        )


def split_indices(
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


@dataclass(frozen=True)
class _DigitsSource:
    """scikit-learn's digits, shuffled and split with ``seed``."""

    seed: int

    @property
    def key(self) -> str:
        return f"digits?seed={self.seed}"

    def load(self) -> ImageDataset:
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        return make_dataset(bunch.images / 16.0, bunch.target, name="digits", seed=self.seed)


def load_digits(seed: int = 0) -> ImageDataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), scaled to [0, 1].

    Loaded once per process, and pickled as its name and seed: workers load it themselves.
    """
    check_seed(seed, "digits")
    return _load_once(_DigitsSource(int(seed)))


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


def check_image_layout(shape: tuple[int, ...], dtype: np.dtype[Any], name: str) -> None:
    """Refuse images that are not a non-empty ``(N, H, W)`` or ``(N, C, H, W)`` array of
    real numbers: checked on the metadata of a store, before its images are read."""
    if len(shape) not in (3, 4) or min(shape) == 0:
        raise DatasetError(
            f"dataset {name!r} has images of the wrong shape",
            expected="a non-empty array (N, H, W) or (N, C, H, W)",
            received=f"shape {tuple(shape)}",
            fix="reshape the images to (samples, channels, height, width)",
        )
    if dtype.kind not in "iuf":  # timedelta64 counts as an integer type to NumPy
        raise DatasetError(
            f"dataset {name!r} has images of the wrong dtype",
            expected="real numbers (float or integer)",
            received=f"dtype {dtype}",
            fix="convert the images with images.astype('float32')",
        )


def _check_images(images: Any, name: str) -> FloatArray:
    x = _as_array(images, name, "images")
    check_image_layout(x.shape, x.dtype, name)
    if x.ndim == 3:
        x = x[:, None]
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


def check_labels(labels: Any, count: int, name: str) -> IntArray:
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
