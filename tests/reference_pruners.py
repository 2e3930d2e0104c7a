"""Plain re-statements of the published pruning rules, written apart from `morphml_dask.prune`
so that the pruners (alone, and run by the driver on a cluster) are checked against what the
papers say rather than against themselves. Quadratic and unoptimised on purpose.

Each takes the reports in arrival order, ``(trial_id, step, score)`` with larger scores
better, and returns the stop decisions ``(trial_id, step)`` in the order they were made.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

Report = tuple[str, int, float]


def _accepted(reports: Iterable[Report], stopped: set[str]) -> Iterable[tuple[str, int, float]]:
    """The reports a pruner acts on, with each trial's best score so far: a step at or
    below the trial's last one, or any report after it was stopped, is ignored."""
    last: dict[str, int] = {}
    best: dict[str, float] = {}
    for trial, step, score in reports:
        if trial in stopped or step <= last.get(trial, -1):
            continue
        last[trial] = step
        value = -math.inf if math.isnan(score) else score
        best[trial] = max(best.get(trial, -math.inf), value)
        yield trial, step, best[trial]


def median_stopping(
    reports: Iterable[Report], *, warmup_steps: int, min_trials: int
) -> list[tuple[str, int]]:
    """Golovin et al. 2017: stop when the best so far is below the median of the others'
    best-so-far at the same step."""
    stopped: set[str] = set()
    decisions = []
    seen_at: dict[int, list[float]] = {}
    for trial, step, best in _accepted(reports, stopped):
        others = seen_at.setdefault(step, [])
        enough = step >= warmup_steps and len(others) >= min_trials
        if enough and best < statistics.median(others):
            stopped.add(trial)
            decisions.append((trial, step))
        others.append(best)
    return decisions


def successive_halving(
    reports: Iterable[Report],
    *,
    min_budget: int,
    eta: int,
    max_budget: int | None,
    bracket_of: dict[str, int] | None = None,
    brackets: int = 1,
) -> list[tuple[str, int]]:
    """Li et al. 2020, stopping mode: at each rung a trial continues only if it ranks in the
    top 1/eta of the scores recorded there so far (at least the best one continues). With
    ``brackets`` > 1, Hyperband: trials join brackets in turn, bracket s starting its rungs
    at min_budget * eta**s; ``bracket_of`` receives the assignment."""
    assignment = {} if bracket_of is None else bracket_of
    stopped: set[str] = set()
    decisions = []
    recorded: dict[tuple[int, int], list[float]] = {}
    passed: dict[str, int] = {}
    for trial, step, best in _accepted(reports, stopped):
        bracket = assignment.setdefault(trial, len(assignment) % brackets)
        first = min_budget * eta**bracket
        while True:
            rung = passed.get(trial, 0)
            rung_step = first * eta**rung
            if (max_budget is not None and rung_step >= max_budget) or step < rung_step:
                break
            passed[trial] = rung + 1
            scores = recorded.setdefault((bracket, rung), [])
            rank = 1 + sum(1 for value in scores if value >= best)
            scores.append(best)
            if rank > max(1, len(scores) // eta):
                stopped.add(trial)
                decisions.append((trial, step))
                break
    return decisions
