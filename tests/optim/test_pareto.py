from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim._pareto import (
    MultiObjective,
    crowding_distance,
    dominates,
    non_dominated_sort,
    nsga2_order,
    pareto_front,
)
from morphml_dask.trial import TrialResult

INF = math.inf


@st.composite
def score_matrices(draw: st.DrawFn) -> np.ndarray:
    """Small-integer score rows (many ties), some of them failures (all -inf)."""
    m = draw(st.integers(1, 4))
    n = draw(st.integers(0, 30))
    rows = draw(
        st.lists(
            st.one_of(
                st.lists(st.integers(-3, 3), min_size=m, max_size=m).map(
                    lambda r: [float(v) for v in r]
                ),
                st.just([-INF] * m),
            ),
            min_size=n,
            max_size=n,
        )
    )
    return np.array(rows, dtype=np.float64).reshape(n, m)


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a >= b) and np.any(a > b))


@settings(max_examples=300, deadline=None)
@given(score_matrices())
def test_fronts_are_a_non_dominated_sort(points: np.ndarray) -> None:
    fronts = non_dominated_sort(points)
    assert sorted(i for front in fronts for i in front) == list(range(len(points)))
    assert all(front == sorted(front) and front for front in fronts)
    for k, front in enumerate(fronts):
        later = [j for f in fronts[k:] for j in f]
        for i in front:
            assert not any(_dominates(points[j], points[i]) for j in later)
            if k > 0:
                assert any(_dominates(points[j], points[i]) for j in fronts[k - 1])
    failed = [i for i in range(len(points)) if np.isneginf(points[i]).any()]
    if failed:
        assert fronts[-1] == failed


@settings(max_examples=300, deadline=None)
@given(score_matrices())
def test_pareto_front_is_the_brute_force_front(points: np.ndarray) -> None:
    feasible = [i for i in range(len(points)) if np.isfinite(points[i]).all()]
    expected = [i for i in feasible if not any(_dominates(points[j], points[i]) for j in feasible)]
    assert pareto_front(points) == expected


@settings(max_examples=200, deadline=None)
@given(score_matrices())
def test_nsga2_order_is_front_then_crowding(points: np.ndarray) -> None:
    order = nsga2_order(points)
    assert sorted(order) == list(range(len(points)))
    front_of = {i: k for k, front in enumerate(non_dominated_sort(points)) for i in front}
    assert [front_of[i] for i in order] == sorted(front_of[i] for i in order)
    for front in non_dominated_sort(points):
        if np.isneginf(points[front]).any():
            continue
        crowding = dict(zip(front, crowding_distance(points[front]), strict=True))
        ranked = [i for i in order if i in crowding]
        keys = [(-crowding[i], i) for i in ranked]
        assert keys == sorted(keys)


def test_failures_form_the_last_front() -> None:
    points = [[1.0, -INF], [-INF, -INF], [0.0, 0.0], [math.nan, 5.0]]
    assert non_dominated_sort(points) == [[2], [0, 1, 3]]
    assert pareto_front(points) == [2]
    assert nsga2_order(points) == [2, 0, 1, 3]
    assert pareto_front([[-INF, -INF]]) == []


def test_sort_handles_empty_and_single_columns() -> None:
    assert non_dominated_sort(np.empty((0, 2))) == []
    assert non_dominated_sort([]) == []
    assert pareto_front(np.empty((0, 3))) == []
    assert non_dominated_sort([[3.0], [1.0], [3.0], [2.0]]) == [[0, 2], [3], [1]]


def test_sort_scales_to_thousands_of_points() -> None:
    points = np.random.default_rng(0).random((3000, 3))
    fronts = non_dominated_sort(points)
    assert sum(len(f) for f in fronts) == 3000
    front = set(fronts[0])
    sample = np.random.default_rng(1).choice(3000, size=50, replace=False)
    for i in sample:  # spot-check membership of the first front by brute force
        dominated = any(_dominates(points[j], points[i]) for j in range(3000))
        assert (i in front) == (not dominated)


def test_crowding_distance_on_hand_examples() -> None:
    # Symmetric front: ranges 4 and 4; interior gaps 2/4 + 3/4 for both inner points.
    assert crowding_distance([[0, 4], [1, 2], [2, 1], [4, 0]]).tolist() == [INF, 1.25, 1.25, INF]
    # Ranges 8 and 4: point 1 gets 4/8 + 3/4 = 1.25, point 2 gets 6/8 + 3/4 = 1.5.
    assert crowding_distance([[0, 4], [2, 3], [4, 1], [8, 0]]).tolist() == [INF, 1.25, 1.5, INF]
    # Row order does not matter.
    assert crowding_distance([[4, 1], [8, 0], [0, 4], [2, 3]]).tolist() == [1.5, INF, INF, 1.25]
    # Two points or fewer are all boundaries.
    assert crowding_distance([[1, 2], [2, 1]]).tolist() == [INF, INF]
    assert crowding_distance(np.empty((0, 2))).tolist() == []
    # A constant objective adds only its boundaries (first and last by index).
    assert crowding_distance([[1, 5], [0, 5], [3, 5]]).tolist() == [INF, INF, INF]
    assert crowding_distance([[1, 0], [1, 1], [1, 3], [1, 4]]).tolist() == [INF, 0.75, 0.75, INF]


def test_nsga2_order_on_a_hand_example() -> None:
    # Front 0: rows 0-3 (boundaries 0 and 3 first, then 1 and 2 tied at 1.25); front 1: row 4.
    assert nsga2_order([[0, 4], [1, 2], [2, 1], [4, 0], [1, 1]]) == [0, 3, 1, 2, 4]


def test_dominates() -> None:
    assert dominates([2, 1], [1, 1])
    assert not dominates([1, 1], [1, 1])
    assert not dominates([2, 0], [1, 1])
    assert not dominates([-INF, 5], [-INF, 1])


def test_points_must_be_a_matrix() -> None:
    with pytest.raises(
        OptimizerError, match=r"(?s)2-D array.*\(n_points, n_objectives\).*\(2, 2, 1\)"
    ):
        non_dominated_sort(np.zeros((2, 2, 1)))
    with pytest.raises(OptimizerError, match=r"(?s)2-D array.*received: shape \(3, 0\)"):
        crowding_distance(np.zeros((3, 0)))


def test_multi_objective_scores_larger_is_better() -> None:
    mo = MultiObjective([("val_accuracy", "maximize"), ("params", "minimize")])
    ok = TrialResult.complete("t1", {"val_accuracy": 90.0, "params": 3e5, "loss": 0.1})
    assert mo.score(ok).tolist() == [90.0, -3e5]
    assert mo.score(TrialResult.failed("t2", "boom")).tolist() == [-INF, -INF]
    partial = TrialResult.complete("t3", {"val_accuracy": 95.0})
    assert mo.score(partial).tolist() == [-INF, -INF]
    assert mo.metrics == ("val_accuracy", "params")
    assert len(mo) == 2
    assert MultiObjective(mo.to_dict()).objectives == mo.objectives


@pytest.mark.parametrize(
    ("objectives", "message"),
    [
        ([], r"(?s)no objectives given.*at least one.*received: \[\]"),
        ("val_accuracy", r"(?s)sequence of \(metric, direction\) pairs.*'val_accuracy'"),
        ([("params", "smaller")], r"(?s)invalid objective.*\['maximize', 'minimize'\].*'smaller'"),
        ([("params",)], r"(?s)invalid objective.*\('params',\)"),
        ([(3, "maximize")], r"(?s)invalid objective.*\(3, 'maximize'\)"),
        (
            [("params", "minimize"), ("params", "maximize")],
            r"(?s)listed twice.*'params' in \['params', 'params'\].*one direction for 'params'",
        ),
    ],
)
def test_bad_objectives(objectives: object, message: str) -> None:
    with pytest.raises(OptimizerError, match=message):
        MultiObjective(objectives)  # type: ignore[arg-type]
