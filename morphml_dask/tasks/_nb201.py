"""`NB201TabularTask`: NAS-Bench-201 (Dong & Yang, ICLR 2020) looked up instead of trained.

Every one of the 15,625 cells of `morphml_dask.space.CellSpace` was trained by the benchmark's
authors; the two tables shipped in ``morphml_dask/data/nb201`` hold, per NAS-Bench-201 index,
the 12-epoch accuracies (the reward of the paper's search protocol) and the 200-epoch
validation accuracy, training time, size and latency. A search on this task runs in seconds
with exact, published ground truth, which is what the search-quality benchmarks need.
"""

from __future__ import annotations

import csv
import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask.exceptions import TaskError
from morphml_dask.registry import Schema, register_kind
from morphml_dask.space import NUM_CELLS, CellSpace
from morphml_dask.tasks._base import DEFAULT_EPOCHS, BaseTask, Evaluation, check_epochs
from morphml_dask.validation import check_number, invalid, is_int

if TYPE_CHECKING:
    import torch

    from morphml_dask.space import ArchGraph

__all__ = ["NB201TabularTask"]

NB201_DATASETS = ("cifar10", "cifar100", "imagenet")
# The schedule the 200-epoch training times were measured for; cost scales from it.
_FULL_EPOCHS = 200
_SHORT_EPOCHS = 12
_HP12_TABLE = "nb201_hp12_accuracy.csv"
_FULL_TABLE = "nb201_200epoch.csv"

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class _Columns:
    """One dataset's columns, each an array indexed by NAS-Bench-201 index."""

    val_12: FloatArray
    test_12: FloatArray
    val_200: FloatArray
    train_time_200: FloatArray
    model_size: FloatArray
    latency: FloatArray


@functools.cache
def _read_table(filename: str) -> dict[str, FloatArray]:
    """Every numeric column of a shipped table, rows placed at their NAS-Bench-201 index."""
    source = resources.files("morphml_dask.data.nb201").joinpath(filename)
    with source.open(encoding="utf-8") as handle:
        return _parse_table(handle, filename)


def _parse_table(handle: Iterable[str], filename: str) -> dict[str, FloatArray]:
    reader = csv.reader(handle)
    header = next(reader)
    rows = list(reader)
    order = np.array([int(row[0]) for row in rows])
    # Rows are placed by their index column, so order is free, but a missing or repeated
    # index would leave uninitialised values that every lookup would trust.
    if len(rows) != NUM_CELLS or not np.array_equal(np.sort(order), np.arange(NUM_CELLS)):
        raise TaskError(
            f"the NAS-Bench-201 table {filename} is incomplete",
            expected=f"{NUM_CELLS} rows with each index from 0 to {NUM_CELLS - 1} once",
            received=f"{len(rows)} rows, {len(set(order.tolist()))} distinct indices",
            fix="reinstall morphml_dask, or regenerate the table (benchmarks/nb201/)",
        )
    columns: dict[str, FloatArray] = {}
    for j, name in enumerate(header):
        if name in ("index", "arch_str"):
            continue
        values = np.empty(NUM_CELLS)
        values[order] = [float(row[j]) for row in rows]
        columns[name] = values
    return columns


@functools.cache
def _columns(dataset: str) -> _Columns:
    hp12, full = _read_table(_HP12_TABLE), _read_table(_FULL_TABLE)
    return _Columns(
        val_12=hp12[f"{dataset}-val"],
        test_12=hp12[f"{dataset}-test"],
        val_200=full[f"{dataset}-val200"],
        train_time_200=full[f"{dataset}-train_time"],
        model_size=full[f"{dataset}-model_size"],
        latency=full[f"{dataset}-latency"],
    )


class NB201TabularTask(BaseTask):
    """NAS-Bench-201 as a task: an evaluation is a table lookup with a simulated cost.

    Parameters
    ----------
    dataset
        ``"cifar10"`` (the ``cifar10-valid`` split), ``"cifar100"`` or ``"imagenet"``
        (ImageNet16-120).
    time_scale
        When positive, `evaluate` sleeps ``cost_seconds * time_scale`` seconds, so a Dask
        cluster sees realistic, heterogeneous trial durations without a GPU (0.001 turns a
        2,000 s training into 2 s).

    Raises
    ------
    TaskError
        When ``dataset`` is not one of the three.

    Notes
    -----
    The objective, ``val_accuracy``, is the validation accuracy after the benchmark's
    12-epoch schedule, averaged over seeds: the reward the paper's search algorithms optimise.
    The tables know two fidelities: a budget below 200 epochs reports the 12-epoch accuracy,
    a budget of 200 or more the 200-epoch accuracy. ``cost_seconds`` scales with the epochs
    charged, so multi-fidelity methods (ASHA with ``budgets=(12, 200)``) see both the signal
    and the price of each rung.

    The tables are read once per process, on the first evaluation.

    Examples
    --------
    >>> from morphml_dask.space import CellSpace
    >>> task = NB201TabularTask("cifar10")
    >>> result = task.evaluate(CellSpace().from_index(0), budget=12)
    >>> result.metrics["val_accuracy"]
    63.364
    """

    objective = "val_accuracy"
    direction = "maximize"
    name = "nb201-tabular"

    def __init__(self, dataset: str = "cifar10", *, time_scale: float = 0.0) -> None:
        if not (isinstance(dataset, str) and dataset in NB201_DATASETS):
            raise invalid(
                TaskError,
                "dataset",
                dataset,
                expected=f"one of {list(NB201_DATASETS)} (imagenet is ImageNet16-120)",
                fix='set dataset to e.g. "cifar10"',
                problem="unknown NAS-Bench-201 dataset",
            )
        self.dataset = dataset
        self.time_scale = check_number(
            "time_scale",
            time_scale,
            low=0,
            error=TaskError,
            fix="set time_scale to e.g. 0.001 (seconds slept per simulated second), or 0 "
            "for no sleeping",
        )
        self._space = CellSpace()

    def evaluate(
        self,
        arch: ArchGraph,
        budget: int = 12,
        *,
        device: str = "cpu",
        weights: dict[str, torch.Tensor] | None = None,
        trained_epochs: int = 0,
    ) -> Evaluation:
        """Look up ``arch`` and charge the compute of training it to ``budget`` epochs.

        Parameters
        ----------
        arch
            A NAS-Bench-201 cell, as made by `morphml_dask.space.CellSpace`.
        budget
            Total epochs the model counts as trained for when this returns; sets the cost.
        device
            Ignored: nothing is trained.
        weights
            Ignored: a tabular task has no model to continue from.
        trained_epochs
            Epochs already paid for by an earlier evaluation of ``arch``; only the
            ``budget - trained_epochs`` extra epochs are charged.

        Returns
        -------
        Evaluation
            ``metrics``: ``val_accuracy`` (12-epoch below a budget of 200, 200-epoch from
            200 on, %), ``test_accuracy`` (12-epoch, %),
            ``val_accuracy_200`` (200-epoch validation, %), ``train_time_200`` (s),
            ``params`` (count), ``latency`` (s), ``cost_seconds`` (``train_time_200`` scaled
            to the epochs charged), ``wall_time`` (s actually spent) and ``index`` (the
            NAS-Bench-201 index, as a float like every metric). ``curve``: the epochs the
            tables know (12 and 200) that fall among the epochs charged, with their
            validation accuracy; the tables hold no other epochs. ``weights``: None.

        Raises
        ------
        SearchSpaceError
            When ``arch`` is not a NAS-Bench-201 cell.
        TaskError
            When ``budget`` is not an integer of at least 1 and above ``trained_epochs``.
        """
        start = time.perf_counter()
        _check_budget(budget, trained_epochs)
        metrics, curve = _look_up(
            _columns(self.dataset), self._space.to_index(arch), budget, trained_epochs
        )
        if self.time_scale > 0:
            time.sleep(metrics["cost_seconds"] * self.time_scale)
        metrics["wall_time"] = time.perf_counter() - start
        return Evaluation(metrics=metrics, curve=curve, weights=None)

    def best(self) -> tuple[int, float]:
        """The index of the architecture with the best 200-epoch validation accuracy, and it."""
        val_200 = _columns(self.dataset).val_200
        index = int(np.argmax(val_200))
        return index, float(val_200[index])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dataset": self.dataset, "time_scale": self.time_scale}

    def __repr__(self) -> str:
        return f"NB201TabularTask(dataset={self.dataset!r}, time_scale={self.time_scale!r})"


def _look_up(
    table: _Columns, index: int, budget: int, trained_epochs: int
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """The metrics of cell ``index`` trained to ``budget``, and the curve of the epochs
    charged, as `NB201TabularTask.evaluate` describes them (``wall_time`` left out)."""
    val_12 = float(table.val_12[index])
    val_200 = float(table.val_200[index])
    train_time = float(table.train_time_200[index])
    metrics = {
        "val_accuracy": val_200 if budget >= _FULL_EPOCHS else val_12,
        "test_accuracy": float(table.test_12[index]),
        "val_accuracy_200": val_200,
        "train_time_200": train_time,
        # The table stores millions of parameters.
        "params": float(table.model_size[index]) * 1e6,
        "latency": float(table.latency[index]),
        "cost_seconds": train_time * (budget - trained_epochs) / _FULL_EPOCHS,
        "index": float(index),
    }
    known = {_SHORT_EPOCHS: val_12, _FULL_EPOCHS: val_200}
    curve = [
        {"epoch": float(epoch), "val_accuracy": value}
        for epoch, value in known.items()
        if trained_epochs < epoch <= budget
    ]
    return metrics, curve


def _check_budget(budget: int, trained_epochs: int) -> None:
    if not is_int(trained_epochs) or trained_epochs < 0:
        raise TaskError(
            "trained_epochs must be a non-negative integer",
            expected="an int >= 0 (the epochs an earlier evaluation already paid for)",
            received=repr(trained_epochs),
            fix="pass trained_epochs=0 for a fresh evaluation",
        )
    if not is_int(budget) or budget <= trained_epochs or budget < 1:
        raise TaskError(
            "budget must be an integer number of epochs above trained_epochs",
            expected=f"an int >= {trained_epochs + 1} (at least 1, and more than"
            f" trained_epochs={trained_epochs})",
            received=f"budget={budget!r}",
            fix="pass e.g. budget=12 (the paper's protocol), or a budget above trained_epochs",
        )


register_kind(
    "task",
    NB201TabularTask.name,
    NB201TabularTask,
    Schema(
        document_only={"epochs": check_epochs},
        defaults={"epochs": DEFAULT_EPOCHS},
        config={"time_scale": "time-scale"},
        requires_space=CellSpace.name,
    ),
)
