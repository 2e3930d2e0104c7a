"""The distributions of define-by-run decisions: sampling, neighbours, encodings and JSON,
as properties over random bounds; and every bad setting, pinned."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morphml_dask.exceptions import SearchSpaceError
from morphml_dask.space import (
    ArchDistribution,
    BaseDistribution,
    BoolDistribution,
    CellSpace,
    ChoiceDistribution,
    DagSpace,
    FloatDistribution,
    IntDistribution,
    Sampler,
    distribution_from_dict,
)


@st.composite
def int_distributions(draw: st.DrawFn) -> IntDistribution:
    log = draw(st.booleans())
    low = draw(st.integers(1 if log else -1000, 1000))
    high = draw(st.integers(low, low + draw(st.sampled_from([0, 1, 5, 100, 10**6]))))
    step = 1 if log else draw(st.integers(1, 7))
    return IntDistribution(low, high, log=log, step=step)


@st.composite
def float_distributions(draw: st.DrawFn) -> FloatDistribution:
    log = draw(st.booleans())
    low = draw(st.floats(1e-6, 1e3) if log else st.floats(-1e3, 1e3))
    high = low + draw(st.sampled_from([0.0, 1e-3, 1.0, 1e3]))
    return FloatDistribution(low, high, log=log)


choice_distributions = st.lists(
    st.one_of(st.text(max_size=4), st.integers(-5, 5), st.none()), min_size=1, max_size=5
).map(lambda options: ChoiceDistribution(list(dict.fromkeys(options))))

distributions = st.one_of(
    int_distributions(),
    float_distributions(),
    choice_distributions,
    st.just(BoolDistribution()),
)


@settings(max_examples=150, deadline=None)
@given(distribution=distributions, seed=st.integers(0, 2**32 - 1))
def test_samples_belong_neighbours_differ_and_json_round_trips(
    distribution: BaseDistribution, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    value = distribution.sample(rng)
    assert distribution.contains(value)
    assert distribution.contains(json.loads(json.dumps(value)))
    encoded = distribution.encode(value)
    assert encoded.shape == distribution.encode(distribution.sample(rng)).shape
    assert np.all((encoded >= -1e-9) & (encoded <= 1 + 1e-9))
    if not distribution.single:
        moved = distribution.neighbour(value, rng)
        assert moved != value and distribution.contains(moved)
    back = distribution_from_dict(json.loads(json.dumps(distribution.to_dict())))
    assert back == distribution and hash(back) == hash(distribution)


@settings(max_examples=60, deadline=None)
@given(distribution=int_distributions(), seed=st.integers(0, 2**32 - 1))
def test_integer_neighbours_are_near(distribution: IntDistribution, seed: int) -> None:
    rng = np.random.default_rng(seed)
    value = distribution.sample(rng)
    if distribution.single:
        return
    moves = [abs(distribution.neighbour(value, rng) - value) for _ in range(30)]
    span = distribution.top - distribution.low
    assert float(np.median(moves)) <= max(distribution.step, 0.5 * span)


def test_log_scale_samples_spread_over_orders_of_magnitude() -> None:
    rng = np.random.default_rng(0)
    lr = FloatDistribution(1e-5, 1e-1, log=True)
    decades = {math.floor(math.log10(lr.sample(rng))) for _ in range(400)}
    assert decades == {-5, -4, -3, -2}
    units = IntDistribution(1, 1024, log=True)
    assert np.median([units.sample(rng) for _ in range(400)]) < 100


def test_an_integer_grid_with_a_step_stops_below_high() -> None:
    grid = IntDistribution(16, 100, step=16)
    rng = np.random.default_rng(0)
    assert {grid.sample(rng) for _ in range(200)} == {16, 32, 48, 64, 80, 96}
    assert not grid.contains(100) and not grid.contains(17) and grid.contains(96)


def test_choices_tell_one_true_and_one_point_zero_apart() -> None:
    choice = ChoiceDistribution([1, "1", None])
    assert choice.contains(1) and not choice.contains(True) and not choice.contains(1.0)
    assert ChoiceDistribution([1]) != ChoiceDistribution([1.0])
    assert choice.encode("1").tolist() == [0.0, 1.0, 0.0]


def test_an_architecture_decision_keeps_its_spaces_moves() -> None:
    rng = np.random.default_rng(0)
    decision = ArchDistribution(CellSpace())
    cell = decision.sample(rng)
    assert decision.contains(cell) and not decision.contains("cell")
    assert decision.canonical(cell) == cell.fingerprint
    assert len(decision.encode(cell)) == 30
    back = distribution_from_dict(json.loads(json.dumps(decision.to_dict())))
    assert isinstance(back, ArchDistribution) and back == decision
    assert back.contains(decision.neighbour(cell, rng))
    assert not ArchDistribution(DagSpace(max_nodes=3)).contains(cell)


def _ask(call: str) -> Any:
    """Run one sampler call, e.g. ``s.int('depth', 5, 1)``."""
    s = Sampler(np.random.default_rng(0))
    return eval(call, {"s": s, "CellSpace": CellSpace})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            "s.int('depth', 5, 1)",
            r"invalid int range of the decision 'depth'\n  expected: low <= high\n"
            r"  received: low=5, high=1\n  fix: swap them: s.int\(name, 1, 5\)",
        ),
        (
            "s.float('lr', 0.1, 0.001)",
            r"(?s)invalid float range of the decision 'lr'.*low=0.1, high=0.001.*swap them",
        ),
        (
            "s.float('lr', 0, 0.1, log=True)",
            r"(?s)invalid float range on a log scale of the decision 'lr'.*low > 0 with "
            r"log=True.*low=0.0.*fix: raise low above 0",
        ),
        (
            "s.int('units', 0, 512, log=True)",
            r"(?s)invalid int range on a log scale of the decision 'units'.*low >= 1.*low=0",
        ),
        (
            "s.int('units', 8, 512, step=0)",
            r"(?s)invalid int step of the decision 'units'.*an integer >= 1.*received: 0 \(int\)",
        ),
        (
            "s.int('units', 8, 512, step=-8)",
            r"(?s)invalid int step of the decision 'units'.*received: -8 \(int\)",
        ),
        (
            "s.int('units', 8, 512, log=True, step=8)",
            r"(?s)log scale of the decision 'units'.*step=1 with log=True.*received: step=8"
            r".*fix: drop step, or pass log=False",
        ),
        (
            "s.int('units', 8.5, 512)",
            r"(?s)invalid int low of the decision 'units'.*an integer.*8.5 \(float\)"
            r".*s.float",
        ),
        (
            "s.float('lr', '1e-3', 0.1)",
            r"(?s)invalid float low of the decision 'lr'.*a finite number.*'1e-3' \(str\)",
        ),
        (
            "s.float('lr', 1e-4, float('inf'))",
            r"(?s)invalid float high of the decision 'lr'.*received: inf \(float\)",
        ),
        (
            "s.float('lr', 1e-4, 0.1, log='yes')",
            r"(?s)invalid log of the decision 'lr'.*True or False.*'yes' \(str\)",
        ),
        (
            "s.choice('activation', [])",
            r"(?s)invalid choice options of the decision 'activation'.*a non-empty list"
            r".*received: \[\] \(list\)",
        ),
        (
            "s.choice('activation', 'relu')",
            r"(?s)invalid choice options of the decision 'activation'.*'relu' \(str\)"
            r".*pass the options as a list",
        ),
        (
            "s.choice('layers', [[64], [128, 128]])",
            r"(?s)invalid choice option of the decision 'layers'.*hashable JSON values"
            r".*received: \[64\] \(list\).*choose among names",
        ),
        (
            "s.choice('init', [object()])",
            r"(?s)invalid choice option of the decision 'init'.*<object object at .*\(object\)",
        ),
        (
            "s.choice('x', [1, True])",
            r"(?s)invalid choice options of the decision 'x'.*distinct options.*\[1, True\]"
            r".*list each option once",
        ),
        (
            "s.arch('cell', 'nb201')",
            r"(?s)invalid arch space of the decision 'cell'.*a search space, e.g. "
            r"s.arch\('cell', CellSpace\(\)\).*'nb201' \(str\)",
        ),
        (
            "s.int('', 1, 4)",
            r"(?s)invalid decision name.*a non-empty string.*received: '' \(str\)"
            r".*f'width_\{i\}'",
        ),
        (
            "s.bool(3)",
            r"(?s)invalid decision name.*received: 3 \(int\)",
        ),
        (
            "(s.int('depth', 1, 4), s.int('depth', 1, 8))",
            r"(?s)the decision 'depth' was asked twice with different distributions"
            r".*the same distribution each time.*int\(low=1, high=4, log=False, step=1\), "
            r"then int\(low=1, high=8, log=False, step=1\).*its own name",
        ),
        (
            "(s.int('depth', 1, 4), s.float('depth', 1, 4))",
            r"(?s)'depth' was asked twice.*int\(low=1.*then float\(low=1.0, high=4.0",
        ),
    ],
)
def test_bad_decisions_are_search_space_errors(call: str, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        _ask(call)


def test_the_same_name_and_distribution_gives_the_value_drawn() -> None:
    s = Sampler(np.random.default_rng(0))
    first = s.float("lr", 1e-4, 1e-1, log=True)
    assert s.float("lr", 1e-4, 1e-1, log=True) == first
    assert s.names == ("lr",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "normal"}, r"(?s)not a distribution document.*\"type\" one of \['choice'"),
        ("int", r"(?s)not a distribution document.*received: 'int'"),
        (
            {"type": "int", "low": 1},
            r"(?s)malformed int distribution document.*\{'type': 'int', 'low': 1\}",
        ),
        (
            {"type": "float", "low": 1.0, "high": 2.0, "log": False, "sigma": 1},
            r"(?s)malformed float distribution document",
        ),
    ],
)
def test_malformed_distribution_documents(data: Any, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        distribution_from_dict(data)
