"""Pareto ranking for multi-objective search: non-dominated sorting and crowding distance.

Everything here follows NSGA-II (K. Deb, A. Pratap, S. Agarwal and T. Meyarivan, "A fast and
elitist multiobjective genetic algorithm: NSGA-II", IEEE Transactions on Evolutionary
Computation 6(2), 2002) with one convention throughout: **larger is better in every column**.
`MultiObjective` turns trial results into such score vectors.

A row holding ``-inf`` (or NaN) in any column is a failed trial: it dominates nothing, and
`non_dominated_sort` puts all such rows together in the last front.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim._base import DIRECTIONS
from morphml_dask.validation import check_choice, invalid

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from morphml_dask.trial import TrialResult

__all__ = [
    "MultiObjective",
    "crowding_distance",
    "dominates",
    "non_dominated_sort",
    "nsga2_order",
    "pareto_axis",
    "pareto_front",
]

_EXAMPLE = '[("val_accuracy", "maximize"), ("params", "minimize")]'

Points = np.ndarray[Any, np.dtype[np.float64]]
Indices = np.ndarray[Any, np.dtype[np.intp]]


class MultiObjective:
    """Several metrics, each maximised or minimised, scored as one larger-is-better vector.

    Parameters
    ----------
    objectives
        ``(metric, direction)`` pairs, direction ``"maximize"`` or ``"minimize"``, e.g.
        ``[("val_accuracy", "maximize"), ("params", "minimize")]``.

    Examples
    --------
    >>> from morphml_dask.trial import TrialResult
    >>> mo = MultiObjective([("val_accuracy", "maximize"), ("params", "minimize")])
    >>> mo.score(TrialResult.complete("t1", {"val_accuracy": 91.0, "params": 2e5})).tolist()
    [91.0, -200000.0]
    """

    def __init__(self, objectives: Sequence[Sequence[str]]) -> None:
        if isinstance(objectives, str | bytes) or not isinstance(objectives, Sequence):
            raise invalid(
                OptimizerError,
                "objectives",
                objectives,
                expected=f"a sequence of (metric, direction) pairs, e.g. {_EXAMPLE}",
                fix=f"pass objectives={_EXAMPLE}",
                problem="objectives must be a sequence of (metric, direction) pairs",
            )
        if len(objectives) == 0:
            raise invalid(
                OptimizerError,
                "objectives",
                objectives,
                expected=f"at least one (metric, direction) pair, e.g. {_EXAMPLE}",
                fix=f"pass objectives={_EXAMPLE}, or objectives=None for one objective",
                problem="no objectives given",
            )
        pairs = [_check_pair(f"objectives[{i}]", pair) for i, pair in enumerate(objectives)]
        metrics = [metric for metric, _ in pairs]
        repeated = sorted({m for m in metrics if metrics.count(m) > 1})
        if repeated:
            raise OptimizerError(
                "an objective metric is listed twice",
                expected="each metric once",
                received=f"{repeated[0]!r} in {metrics}",
                fix=f"keep one direction for {repeated[0]!r}",
            )
        self.objectives: tuple[tuple[str, str], ...] = tuple(pairs)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(metric for metric, _ in self.objectives)

    def __len__(self) -> int:
        return len(self.objectives)

    def __repr__(self) -> str:
        return f"MultiObjective({[list(p) for p in self.objectives]})"

    def score(self, result: TrialResult) -> Points:
        """The metrics signed so that larger is better, as a float vector.

        A failed result, or one missing any of the metrics, scores ``-inf`` in every column:
        a partial vector could not be ranked fairly against complete ones.
        """
        values = [result.value(metric) for metric, _ in self.objectives]
        if any(math.isnan(v) for v in values):
            return np.full(len(self.objectives), -np.inf)
        signs = [1.0 if d == "maximize" else -1.0 for _, d in self.objectives]
        return np.asarray([v * s for v, s in zip(values, signs, strict=True)], dtype=np.float64)

    def to_dict(self) -> list[list[str]]:
        """JSON-ready ``[[metric, direction], ...]``; ``MultiObjective(data)`` reads it back."""
        return [list(pair) for pair in self.objectives]


def _check_pair(name: str, pair: object) -> tuple[str, str]:
    """A ``[metric, direction]`` pair; errors name it, e.g. ``objectives[0]``."""
    if not (
        isinstance(pair, Sequence)
        and not isinstance(pair, str)
        and len(pair) == 2
        and isinstance(pair[0], str)
    ):
        raise invalid(
            OptimizerError,
            name,
            pair,
            expected=f"a [metric, direction] pair, a metric name and one of {list(DIRECTIONS)}",
            fix=f"write each objective as in {_EXAMPLE}",
            problem=f"invalid objective {name}",
        )
    direction = check_choice(
        f"{name}[1]",
        pair[1],
        DIRECTIONS,
        error=OptimizerError,
        fix=f"write each objective as in {_EXAMPLE}",
    )
    return pair[0], direction


def pareto_axis(objectives: object, objective: str) -> tuple[str, str]:
    """The metric (and its direction) that a plot of ``objective`` shows trade-offs against:
    the first other metric of a multi-objective search's ``objectives`` (``[[metric,
    direction], ...]``), else the parameter count."""
    for pair in objectives if isinstance(objectives, list | tuple) else ():
        if isinstance(pair, list | tuple) and len(pair) == 2 and pair[0] != objective:
            return str(pair[0]), str(pair[1])
    return "params", "minimize"


def dominates(a: ArrayLike, b: ArrayLike) -> bool:
    """Whether ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    x, y = _failed_as_neginf(a), _failed_as_neginf(b)
    if np.isneginf(x).any():
        return False
    return bool(np.all(x >= y) and np.any(x > y))


def non_dominated_sort(points: ArrayLike) -> list[list[int]]:
    """Row indices split into Pareto fronts, best front first (Deb et al. 2002, Sec. III-A).

    Front 0 holds the rows no other row dominates; front ``k`` the rows dominated only by
    rows in fronts ``< k``. Rows with ``-inf`` or NaN anywhere (failures) form the last front
    together. Indices are ascending within a front. Runs in ``O(m n^2)`` time and
    ``O(n^2)`` memory for ``n`` points of ``m`` objectives.

    Parameters
    ----------
    points
        An ``(n, m)`` array, larger is better in every column.

    Examples
    --------
    >>> non_dominated_sort([[1, 1], [2, 2], [0, 3], [-np.inf, -np.inf]])
    [[1, 2], [0], [3]]
    """
    p = _as_points(points)
    failed = np.isneginf(p).any(axis=1)
    feasible = np.flatnonzero(~failed)
    fronts = [[int(feasible[i]) for i in front] for front in _peel(p[feasible])]
    if failed.any():
        fronts.append([int(i) for i in np.flatnonzero(failed)])
    return fronts


def _peel(p: Points) -> list[Indices]:
    """Fronts of finite-or-+inf rows, by domination counts on an ``n x n`` matrix."""
    n = len(p)
    at_least = np.ones((n, n), dtype=bool)
    better = np.zeros((n, n), dtype=bool)
    for column in p.T:
        at_least &= column[:, None] >= column[None, :]
        better |= column[:, None] > column[None, :]
    dominance = at_least & better  # [i, j]: row i dominates row j
    del at_least, better
    count = dominance.sum(axis=0)  # how many rows dominate each row
    remaining = np.ones(n, dtype=bool)
    fronts: list[Indices] = []
    while remaining.any():
        front = np.flatnonzero(remaining & (count == 0))
        fronts.append(front)
        remaining[front] = False
        count -= dominance[front].sum(axis=0)
    return fronts


def crowding_distance(points: ArrayLike) -> Points:
    """NSGA-II crowding distance of each row within one front (Deb et al. 2002, Sec. III-B).

    For each objective the rows are sorted; the two boundary rows get ``inf`` and every
    other row adds the gap between its neighbours divided by the objective's range. Ties
    sort by row index. An objective with zero or infinite range adds nothing but its
    boundaries.

    Examples
    --------
    >>> crowding_distance([[0, 4], [1, 2], [2, 1], [4, 0]]).tolist()
    [inf, 1.25, 1.25, inf]
    """
    p = _as_points(points)
    n = len(p)
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for column in p.T:
        order = np.argsort(column, kind="stable")
        values = column[order]
        distance[order[[0, -1]]] = np.inf
        span = values[-1] - values[0]
        if np.isfinite(span) and span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def nsga2_order(points: ArrayLike) -> list[int]:
    """Row indices best first: by front, then by larger crowding distance, then by index.

    This is the crowded-comparison order of NSGA-II (Deb et al. 2002, Sec. III-C); the failed
    rows come last, by index.

    Examples
    --------
    >>> nsga2_order([[0, 4], [1, 2], [2, 1], [4, 0], [1, 1]])
    [0, 3, 1, 2, 4]
    """
    p = _as_points(points)
    order: list[int] = []
    for front in non_dominated_sort(p):
        index = np.asarray(front)
        if np.isneginf(p[index]).any():
            order.extend(front)
            continue
        crowding = crowding_distance(p[index])
        order.extend(int(i) for i in index[np.lexsort((index, -crowding))])
    return order


def pareto_front(points: ArrayLike) -> list[int]:
    """Indices of the rows no other row dominates, ascending; failed rows never belong.

    Examples
    --------
    >>> pareto_front([[1, 1], [2, 2], [0, 3]])
    [1, 2]
    """
    p = _as_points(points)
    fronts = non_dominated_sort(p)
    if not fronts or np.isneginf(p[fronts[0]]).any():
        return []
    return fronts[0]


def _as_points(points: ArrayLike) -> Points:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 1)
    if array.ndim != 2 or array.shape[1] == 0:
        raise OptimizerError(
            "points must be a 2-D array of scores",
            expected="shape (n_points, n_objectives) with at least one objective",
            received=f"shape {array.shape}",
            fix="stack one score vector per row, e.g. np.array([[0.9, -2e5], [0.8, -1e5]])",
        )
    return _failed_as_neginf(array)


def _failed_as_neginf(values: ArrayLike) -> Points:
    array = np.asarray(values, dtype=np.float64)
    return np.where(np.isnan(array), -np.inf, array)
