"""PyTorch models for architectures, with their size and compute.

The only package that imports torch at module level: `morphml_dask.space` stays framework-free
and this package turns its `ArchGraph` values into `torch.nn.Module` objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from morphml_dask.exceptions import ModelBuildError
from morphml_dask.models._dag import STEM_WIDTH, DagNetwork, reductions_for
from morphml_dask.models._inherit import Inherited, copy_matching, inherit_weights
from morphml_dask.models._nb201 import NB201Network
from morphml_dask.models._profile import count_flops, count_parameters
from morphml_dask.models._proxies import (
    DATA_FREE_PROXIES,
    PROXIES,
    Batch,
    Proxy,
    flops,
    grad_norm,
    jacob_cov,
    latency_ms,
    naswot,
    params,
    peak_memory_mb,
    score,
    snip,
    synflow,
)
from morphml_dask.space import ArchGraph, CellSpace
from morphml_dask.validation import is_int

if TYPE_CHECKING:
    from morphml_dask.storage import ExperimentStore

__all__ = [
    "DATA_FREE_PROXIES",
    "PROXIES",
    "STEM_WIDTH",
    "Batch",
    "DagNetwork",
    "Inherited",
    "Proxy",
    "build_model",
    "copy_matching",
    "count_flops",
    "count_parameters",
    "flops",
    "grad_norm",
    "inherit_weights",
    "jacob_cov",
    "latency_ms",
    "load_model",
    "naswot",
    "params",
    "peak_memory_mb",
    "reductions_for",
    "score",
    "snip",
    "synflow",
]


def build_model(
    arch: ArchGraph,
    num_classes: int = 10,
    *,
    in_channels: int | None = None,
    reductions: int = 0,
) -> nn.Module:
    """The image classifier for ``arch``, freshly initialised.

    Parameters
    ----------
    arch
        The architecture. A NAS-Bench-201 cell (`morphml_dask.space.CellSpace`) becomes the
        benchmark's network; any other graph becomes a `DagNetwork` built from
        ``arch.pruned()``, so dead ends and ``none`` branches get no parameters.
    num_classes
        Outputs of the classifier, at least 2.
    in_channels
        Image channels, at least 1; ``None`` means 3 (RGB).
    reductions
        For a `DagNetwork`: strided stages between the stem and the graph, each halving the
        image's height and width (`reductions_for` gives the number for an image size, so
        that 32x32 and larger images train at reasonable cost). NAS-Bench-201 cell networks
        have their own reduction cells and ignore it.

    Returns
    -------
    torch.nn.Module
        A module mapping ``(batch, in_channels, height, width)`` images to
        ``(batch, num_classes)`` logits.

    Raises
    ------
    ModelBuildError
        When ``arch`` is not an `ArchGraph` or ``num_classes`` or ``in_channels`` is invalid.

    Notes
    -----
    Cell networks match the benchmark's parameter counts (its ``model_size`` column) for
    ``in_channels=3``; another value changes only the stem.

    Examples
    --------
    >>> import numpy as np
    >>> from morphml_dask.space import DagSpace
    >>> arch = DagSpace().sample(np.random.default_rng(0))
    >>> model = build_model(arch, num_classes=10, in_channels=1)
    """
    _check_arguments(arch, num_classes, in_channels, reductions)
    classes = int(num_classes)  # NumPy integers pass the check; torch layers want ints
    channels = 3 if in_channels is None else int(in_channels)
    space = CellSpace()
    if space.contains(arch):
        return NB201Network(space.to_ops(arch), classes, in_channels=channels)
    return DagNetwork(arch.pruned(), classes, in_channels=channels, reductions=int(reductions))


def load_model(store: ExperimentStore, trial_id: str, rung: int | None = None) -> nn.Module:
    """The trained model of a stored trial, rebuilt from its architecture and weights.

    Parameters
    ----------
    store
        The experiment, e.g. ``open_store("./runs/my-search")``.
    trial_id
        A stored trial whose weights the search saved, e.g.
        ``store.best(1)["trial_id"].iloc[0]``.
    rung
        The rung whose weights to load; the highest saved rung by default.

    Returns
    -------
    torch.nn.Module
        The model in evaluation mode.

    Raises
    ------
    StorageInputError
        When ``trial_id`` is not stored, or no weights are saved for it (at ``rung``).

    Examples
    --------
    >>> from morphml_dask import open_store
    >>> store = open_store("./runs/my-search")  # doctest: +SKIP
    >>> model = load_model(store, "t000042")  # doctest: +SKIP
    """
    arch = store.record(trial_id).trial.arch
    if not isinstance(arch, ArchGraph):
        raise ModelBuildError(
            f"trial {trial_id!r} has no built-in model",
            expected="a trial of a built-in space (CellSpace, DagSpace), whose model "
            "build_model rebuilds",
            received=f"a trial of a {type(arch).__name__}, whose model your own code builds",
            fix="rebuild the model with your own code from store.record(trial_id).trial.arch "
            "and the state your train function saved (store.load_state(trial_id))",
        )
    saved = store.saved_weights(trial_id, rung)
    model = build_model(
        arch, saved.num_classes, in_channels=saved.in_channels, reductions=saved.reductions
    )
    model.load_state_dict(saved.state_dict)
    return model.eval()


def _check_arguments(
    arch: object, num_classes: object, in_channels: object, reductions: object = 0
) -> None:
    if not isinstance(arch, ArchGraph):
        raise ModelBuildError(
            "build_model needs an architecture graph",
            expected="a morphml_dask.space.ArchGraph",
            received=f"{type(arch).__name__} {arch!r}"[:200],
            fix="pass a graph from a search space, e.g. CellSpace().from_arch_str(...) or "
            "DagSpace().sample(rng)",
        )
    if not is_int(num_classes) or num_classes < 2:
        raise ModelBuildError(
            "invalid num_classes",
            expected="an integer >= 2",
            received=repr(num_classes),
            fix="pass the number of classes in the dataset, e.g. build_model(arch, num_classes=10)",
        )
    if in_channels is not None and (not is_int(in_channels) or in_channels < 1):
        raise ModelBuildError(
            "invalid in_channels",
            expected="None (meaning 3, RGB) or an integer >= 1",
            received=repr(in_channels),
            fix="pass the number of image channels, e.g. in_channels=1 for grayscale images",
        )
    if not is_int(reductions) or reductions < 0:
        raise ModelBuildError(
            "invalid reductions",
            expected="an integer >= 0",
            received=repr(reductions),
            fix="pass reductions_for(height, width) of your images, or 0",
        )
