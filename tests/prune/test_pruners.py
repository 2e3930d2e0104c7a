"""The pruners alone: pure, seeded, checked against plain re-statements of the papers' rules."""

from __future__ import annotations

import json
import math
import random

import pytest
from reference_pruners import Report, median_stopping, successive_halving

from morphml_dask.exceptions import PrunerError
from morphml_dask.prune import (
    BasePruner,
    Hyperband,
    MedianStopping,
    SuccessiveHalving,
    pruner_from_dict,
)


def _reports(seed: int, trials: int = 30, steps: int = 12) -> list[Report]:
    """Interleaved learning curves: each trial improves at its own rate, some report NaN,
    some steps are skipped, and a few retried trials report earlier steps again."""
    rng = random.Random(seed)
    curves = {}
    for index in range(trials):
        rate, noise = rng.uniform(0.02, 0.1), rng.uniform(0.0, 0.05)
        stride = rng.choice([1, 1, 1, 2])
        points = []
        for step in range(1, steps + 1, stride):
            value = 1 - math.exp(-rate * step) + rng.gauss(0, noise)
            points.append((f"t{index:03d}", step, math.nan if rng.random() < 0.02 else value))
        if rng.random() < 0.1:
            points[2:2] = points[:2]  # a retry: the first steps again
        curves[index] = points
    pending = {index: 0 for index in curves}
    order = []
    while pending:
        index = rng.choice(sorted(pending))
        order.append(curves[index][pending[index]])
        pending[index] += 1
        if pending[index] == len(curves[index]):
            del pending[index]
    return order


def _decisions(pruner: BasePruner, reports: list[Report]) -> list[tuple[str, int]]:
    return [(t, s) for t, s, score in reports if pruner.report(t, s, score)]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("warmup", "min_trials"), [(0, 1), (2, 4), (5, 8)])
def test_median_stopping_stops_exactly_where_the_rule_says(
    seed: int, warmup: int, min_trials: int
) -> None:
    reports = _reports(seed)
    expected = median_stopping(reports, warmup_steps=warmup, min_trials=min_trials)
    got = _decisions(MedianStopping(warmup_steps=warmup, min_trials=min_trials), reports)
    assert got == expected
    assert expected, "the scripted curves must make the rule stop some trials"


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("min_budget", "eta", "max_budget"), [(1, 2, None), (1, 3, 9), (2, 2, 12)])
def test_successive_halving_stops_exactly_where_the_rule_says(
    seed: int, min_budget: int, eta: int, max_budget: int | None
) -> None:
    reports = _reports(seed)
    expected = successive_halving(reports, min_budget=min_budget, eta=eta, max_budget=max_budget)
    pruner = SuccessiveHalving(min_budget=min_budget, eta=eta, max_budget=max_budget)
    assert _decisions(pruner, reports) == expected
    assert expected


@pytest.mark.parametrize("seed", range(6))
def test_hyperband_runs_brackets_of_halving_in_turn(seed: int) -> None:
    reports = _reports(seed, trials=40)
    assignment: dict[str, int] = {}
    expected = successive_halving(
        reports, min_budget=1, eta=2, max_budget=12, bracket_of=assignment, brackets=3
    )
    pruner = Hyperband(min_budget=1, eta=2, max_budget=12, brackets=3)
    assert _decisions(pruner, reports) == expected
    assert {t: pruner.bracket_of(t) for t in assignment} == assignment
    assert set(assignment.values()) == {0, 1, 2}


def test_hyperband_defaults_to_one_bracket_per_rung() -> None:
    assert Hyperband(min_budget=1, eta=3, max_budget=27).brackets == 3
    assert Hyperband(min_budget=1, eta=3).brackets == 4


def test_successive_halving_keeps_the_top_of_each_rung() -> None:
    pruner = SuccessiveHalving(min_budget=1, eta=2)
    assert pruner.report("a", 1, 0.5) is False  # the first at a rung always continues
    assert pruner.report("b", 1, 0.4) is True  # rank 2 of 2: not in the top half
    assert pruner.report("c", 1, 0.9) is False  # rank 1 of 3
    assert pruner.report("d", 1, 0.5) is True  # ties rank below the earlier "a": 3 of 4
    assert pruner.report("b", 2, 1.0) is False  # a stopped trial's reports are ignored
    assert pruner.n_stopped == 2
    assert pruner.stopped("b") and not pruner.stopped("a")


def test_a_report_that_jumps_rungs_is_ranked_at_each() -> None:
    pruner = SuccessiveHalving(min_budget=1, eta=2)
    for trial, score in [("a", 0.9), ("b", 0.8)]:
        pruner.report(trial, 1, score)
        pruner.report(trial, 2, score)
    # "c" is second at rung 0 (1 of 3 continue? rank 2 <= 3 // 2) and last at rung 1.
    assert pruner.report("c", 4, 0.85) is True


def test_median_stopping_waits_for_warmup_and_enough_trials() -> None:
    pruner = MedianStopping(warmup_steps=2, min_trials=2)
    for trial, score in [("a", 0.9), ("b", 0.8)]:
        assert pruner.report(trial, 1, score) is False
    assert pruner.report("c", 1, 0.1) is False  # step 1 is in the warm-up
    assert pruner.report("a", 2, 0.9) is False
    assert pruner.report("c", 2, 0.1) is False  # one other trial at step 2: too few
    assert pruner.report("b", 2, 0.8) is False  # median of 0.9 and 0.1 is 0.5
    assert pruner.report("d", 2, 0.3) is True  # below the median of 0.9, 0.1, 0.8


@pytest.mark.parametrize(
    "pruner",
    [
        MedianStopping(warmup_steps=1, min_trials=3),
        SuccessiveHalving(min_budget=1, eta=3, max_budget=9),
        Hyperband(min_budget=1, eta=2, max_budget=12),
    ],
    ids=lambda pruner: pruner.name,
)
def test_a_resumed_pruner_decides_as_the_uninterrupted_one(pruner: BasePruner) -> None:
    reports = _reports(3, trials=40)
    cut = len(reports) // 2
    whole = _decisions(pruner_from_dict(pruner.to_dict()), reports)
    first = pruner_from_dict(pruner.to_dict())
    before = _decisions(first, reports[:cut])
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint stores it
    second = pruner_from_dict(pruner.to_dict())
    second.load_state_dict(state)
    assert before + _decisions(second, reports[cut:]) == whole
    assert second.state_dict() == _state_after(pruner, reports)


def _state_after(pruner: BasePruner, reports: list[Report]) -> dict[str, object]:
    fresh = pruner_from_dict(pruner.to_dict())
    _decisions(fresh, reports)
    state: dict[str, object] = json.loads(json.dumps(fresh.state_dict()))
    return state


def test_a_checkpoint_of_other_settings_is_refused() -> None:
    state = MedianStopping(min_trials=3).state_dict()
    with pytest.raises(PrunerError, match=r"(?s)checkpoint's pruner differs.*min_trials"):
        MedianStopping(min_trials=5).load_state_dict(state)
    with pytest.raises(PrunerError, match="not a pruner state"):
        MedianStopping().load_state_dict({"format": "other"})


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: MedianStopping(warmup_steps=-1), r"(?s)invalid warmup_steps.*integer >= 0"),
        (lambda: MedianStopping(min_trials=0), r"(?s)invalid min_trials.*integer >= 1"),
        (lambda: SuccessiveHalving(eta=1), r"(?s)invalid eta.*integer >= 2"),
        (
            lambda: SuccessiveHalving(min_budget=0.5),  # type: ignore[arg-type]
            r"(?s)invalid min_budget.*integer >= 1",
        ),
        (
            lambda: SuccessiveHalving(min_budget=4, max_budget=2),
            r"(?s)invalid max_budget.*integer >= 4",
        ),
        (
            lambda: Hyperband(max_budget=9, eta=3, brackets=5),
            r"(?s)invalid brackets.*integer from 1 to 2",
        ),
        (lambda: pruner_from_dict({"name": "medain"}), r"(?s)unknown pruner 'medain'.*median"),
    ],
)
def test_bad_settings_say_what_was_expected(build: object, match: str) -> None:
    with pytest.raises(PrunerError, match=match):
        build()  # type: ignore[operator]


def test_bad_reports_say_what_was_expected() -> None:
    pruner = MedianStopping()
    with pytest.raises(PrunerError, match=r"(?s)invalid step -1.*integer >= 0"):
        pruner.report("a", -1, 0.5)
    with pytest.raises(PrunerError, match=r"(?s)invalid score 'high'.*a number"):
        pruner.report("a", 1, "high")  # type: ignore[arg-type]


def test_steps_reported_again_are_ignored() -> None:
    pruner = SuccessiveHalving(min_budget=1, eta=2)
    pruner.report("a", 3, 0.9)
    assert pruner.report("a", 1, 0.0) is False
    assert pruner.state_dict()["trials"]["a"] == [3, 0.9, False]
