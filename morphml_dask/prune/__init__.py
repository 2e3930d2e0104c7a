"""Pruners: stop losing trials while they run, from their live reports.

A pruner is apart from the optimizer (any optimizer runs with any pruner) and, like it, a
pure state machine: the driver feeds it each step a trial reports, in arrival order, and
tells the trial to stop (``ctx.should_stop()``) when it says so. Pure: no torch, Dask or
files.

>>> from morphml_dask.prune import SuccessiveHalving
>>> pruner = SuccessiveHalving(min_budget=1, eta=2)
>>> pruner.report("a", 1, 0.9), pruner.report("b", 1, 0.5)
(False, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from morphml_dask.exceptions import PrunerError, TrialPruned
from morphml_dask.prune._base import BasePruner
from morphml_dask.prune._halving import Hyperband, SuccessiveHalving
from morphml_dask.prune._median import MedianStopping
from morphml_dask.registry import get_kind, kinds

__all__ = [
    "BasePruner",
    "Hyperband",
    "MedianStopping",
    "SuccessiveHalving",
    "TrialPruned",
    "pruner_from_dict",
]


def pruner_from_dict(data: Mapping[str, Any]) -> BasePruner:
    """The pruner `BasePruner.to_dict` describes, fresh (no reports taken yet).

    Raises
    ------
    PrunerError
        For a name no pruner is registered under.
    """
    name = data.get("name")
    kind = get_kind("pruner", name)
    if kind is None:
        raise PrunerError(
            f"unknown pruner {name!r}",
            expected=f"one of {sorted(kinds('pruner'))}",
            received=repr(name),
            fix="name a pruner morphml_dask knows, e.g. {'name': 'median'}",
            key="name",
        )
    pruner = kind.build({key: value for key, value in data.items() if key != "name"})
    if not isinstance(pruner, BasePruner):
        raise PrunerError(
            f"the pruner kind {name!r} did not build a pruner",
            expected="a BasePruner",
            received=type(pruner).__name__,
            fix="register a BasePruner subclass under that name",
        )
    return pruner
