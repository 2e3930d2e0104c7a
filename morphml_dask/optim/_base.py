"""`BaseOptimizer`: the ask/tell state machine every search algorithm is.

An optimizer never touches Dask, files or the clock. The driver asks it for trials, runs them
anywhere, and tells it the results in whatever order they finish.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim._warmup import ZeroCostWarmup, is_warmup, make_warmup
from morphml_dask.space import BaseSearchSpace, Candidate, space_from_dict
from morphml_dask.trial import Trial, TrialResult, numbered_id, trial_number
from morphml_dask.validation import check_bool, check_choice, check_int, check_string

__all__ = ["BaseOptimizer", "Objective"]

DIRECTIONS = ("maximize", "minimize")
# Seeds are stored in checkpoints and Parquet tables as signed 64-bit integers.
MAX_SEED = 2**63 - 1
STATE_FORMAT = "morphml.optimizer"
STATE_VERSION = 1


class Objective:
    """A metric and its direction; `score` turns results into larger-is-better numbers."""

    def __init__(self, metric: str = "val_accuracy", direction: str = "maximize") -> None:
        self.metric = check_string("objective", metric, error=OptimizerError)
        self.direction = check_choice(
            "direction",
            direction,
            DIRECTIONS,
            error=OptimizerError,
            fix=f'pass direction="maximize" or direction="minimize" for {metric!r}',
        )

    def score(self, result: TrialResult) -> float:
        """The metric signed so that larger is better; -inf for failed or missing values."""
        value = result.value(self.metric)
        if math.isnan(value):
            return -math.inf
        return value if self.direction == "maximize" else -value

    def to_dict(self) -> dict[str, str]:
        return {"metric": self.metric, "direction": self.direction}


class BaseOptimizer(abc.ABC):
    """A seeded ask/tell search algorithm.

    Parameters
    ----------
    space
        The search space to draw architectures from.
    objective
        The metric to optimise, ``"val_accuracy"`` by default.
    direction
        ``"maximize"`` or ``"minimize"``.
    max_trials
        How many trials to ask for in all; None for no limit.
    seed
        Seeds every random choice: the same seed and the same results give the same trials.

    Notes
    -----
    Subclasses implement `_suggest` (new trials), `_observe` (a told result) and, when they
    hold state of their own, `_state` / `_load_state`. The base class numbers trials, tracks
    which are pending, rejects unknown ids, ignores repeated tells (Dask may run a task twice)
    and saves and restores its random generator.
    """

    name: str = "optimizer"

    def __init__(
        self,
        space: BaseSearchSpace,
        *,
        objective: str = "val_accuracy",
        direction: str = "maximize",
        max_trials: int | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(space, BaseSearchSpace):
            raise TypeError(
                f"{type(self).__name__} needs a BaseSearchSpace (e.g. CellSpace() or "
                f"DagSpace()), got {type(space).__name__}"
            )
        if max_trials is not None:
            max_trials = check_int(
                "max_trials",
                max_trials,
                low=1,
                error=OptimizerError,
                expected="a positive integer or None",
                fix="set max_trials to the number of trials the search may run",
            )
        if seed is not None:
            seed = check_int("seed", seed, low=0, high=MAX_SEED, error=OptimizerError)
        self.space = space
        self.objective = Objective(objective, direction)
        self.max_trials = max_trials
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._asked = 0
        self._told = 0
        self._pending: dict[str, Trial] = {}
        self._best: tuple[float, str, dict[str, Any]] | None = None
        self._warmup: ZeroCostWarmup | None = None

    # -- the protocol ----------------------------------------------------------------------

    def ask(self, n: int = 1) -> list[Trial]:
        """Up to ``n`` new trials; an empty list means "wait for results" (or finished).

        With a zero-cost warm-up, the first trials only score candidates (``budget=0``) and
        the search proper starts once all their scores are back; they do not count towards
        ``max_trials``."""
        warmup = self._warmup
        if warmup is not None and warmup.scoring:
            trials = warmup.ask(n, self._new_trial, lambda: self.space.sample(self.rng))
        else:
            if self.max_trials is not None:
                n = min(n, self.max_trials - self._trained_asked)
            trials = self._suggest(n) if n > 0 else []
        for trial in trials:
            self._pending[trial.id] = trial
        return trials

    def tell(self, result: TrialResult) -> None:
        """Record a finished trial, completed, failed or pruned, in any order. A pruned
        trial counts with the value it last reported, as a result at a lower fidelity."""
        trial = self._pending.pop(result.trial_id, None)
        if trial is None:
            if self._was_asked(result.trial_id):
                return  # told twice: the first result counts
            raise OptimizerError(
                "result for a trial this optimizer never asked for",
                expected=f"the id of a pending trial (e.g. {next(iter(self._pending), 'none')})",
                received=repr(result.trial_id),
                fix="tell each result to the optimizer that asked for its trial",
            )
        self._told += 1
        if self._warmup is not None and is_warmup(trial):
            self._warmup.tell(trial, result)
            return
        score = self.objective.score(result)
        # A pruned trial's score is a lower fidelity's: it informs the search, never the best.
        complete = result.ok and score > -math.inf
        if complete and (self._best is None or score > self._best[0]):
            self._best = (score, trial.id, trial.to_dict())
        self._observe(trial, result, score)

    @property
    def finished(self) -> bool:
        """True once every trial the search will ask for has been told."""
        if self._pending:
            return False
        if self._warmup is not None and self._warmup.scoring:
            return False
        if self.max_trials is not None and self._trained_asked >= self.max_trials:
            return True
        return self._done()

    @property
    def _trained_asked(self) -> int:
        """Trials asked for beyond the warm-up's scoring ones."""
        return self._asked - (0 if self._warmup is None else self._warmup.asked)

    @property
    def warmup_trials(self) -> int:
        """The trials of the zero-cost warm-up, asked for on top of ``max_trials``."""
        return 0 if self._warmup is None else self._warmup.candidates

    @property
    def pending(self) -> list[Trial]:
        """Trials asked for and not yet told, oldest first."""
        return list(self._pending.values())

    @property
    def num_told(self) -> int:
        return self._told

    @property
    def best_trial(self) -> Trial | None:
        """The completed trial with the best objective so far."""
        return None if self._best is None else Trial.from_dict(self._best[2])

    @property
    def best_value(self) -> float | None:
        """The objective's value for `best_trial`, as the task reported it."""
        if self._best is None:
            return None
        score = self._best[0]
        return score if self.objective.direction == "maximize" else -score

    # -- persistence -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as JSON-ready values."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "optimizer": self.name,
            "space": self.space.to_dict(),
            "objective": self.objective.to_dict(),
            "max_trials": self.max_trials,
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "asked": self._asked,
            "told": self._told,
            "pending": [t.to_dict() for t in self._pending.values()],
            # Scores are finite or +inf; strict JSON has no infinity.
            "best": None if self._best is None else [repr(self._best[0]), *self._best[1:]],
            "algorithm": self._state(),
            "warmup": None if self._warmup is None else self._warmup.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a `state_dict`, for an optimizer built with the same settings."""
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise OptimizerError(
                "not an optimizer checkpoint",
                expected=f'a mapping with "format": "{STATE_FORMAT}"',
                received=repr(state.get("format") if isinstance(state, Mapping) else state)[:80],
                fix="pass the dict produced by optimizer.state_dict()",
            )
        if state.get("optimizer") != self.name or state.get("version") != STATE_VERSION:
            raise OptimizerError(
                "checkpoint of another optimizer or version",
                expected=f"{self.name!r} version {STATE_VERSION}",
                received=f"{state.get('optimizer')!r} version {state.get('version')!r}",
                fix=f"resume with the optimizer that wrote it ({state.get('optimizer')})",
            )
        self.space = space_from_dict(state["space"])
        self.objective = Objective(**state["objective"])
        self.max_trials = state["max_trials"]
        self.seed = state["seed"]
        self.rng.bit_generator.state = state["rng"]
        self._asked = int(state["asked"])
        self._told = int(state["told"])
        pending = (Trial.from_dict(t) for t in state["pending"])
        self._pending = {t.id: t for t in pending}
        best = state["best"]
        self._best = None if best is None else (float(best[0]), str(best[1]), dict(best[2]))
        self._load_state(state["algorithm"])
        if self._warmup is not None and state.get("warmup") is not None:
            self._warmup.load_state_dict(state["warmup"])

    # -- for subclasses --------------------------------------------------------------------

    def _new_trial(
        self,
        arch: Candidate,
        budget: int,
        *,
        rung: int = 0,
        parent: Trial | None = None,
        info: Mapping[str, Any] | None = None,
        inherits: bool = False,
    ) -> Trial:
        """A trial with the next id; ids are ``t000001``, ``t000002``, ... per optimizer.
        ``inherits``: a child of ``parent`` of another architecture (`Trial.inherits`)."""
        self._asked += 1
        return Trial(
            id=numbered_id(self._asked),
            arch=arch,
            budget=budget,
            rung=rung,
            parent=None if parent is None else parent.id,
            parent_budget=0 if parent is None else parent.budget,
            info=dict(info or {}),
            inherits=inherits,
        )

    def _use_warmup(
        self, candidates: object, proxy: object, keep: object, default_keep: int
    ) -> None:
        """Score ``candidates`` random candidates by ``proxy`` before the search proper, and
        make `_sample` return the best ``keep`` of them first (`ZeroCostWarmup`)."""
        self._warmup = make_warmup(candidates, proxy, keep, default_keep)

    def _sample(self) -> Candidate:
        """A new candidate: the best not yet taken of the warm-up, else a random one."""
        best = None if self._warmup is None else self._warmup.take()
        return self.space.sample(self.rng) if best is None else best

    def _was_asked(self, trial_id: str) -> bool:
        number = trial_number(trial_id)
        return number is not None and 1 <= number <= self._asked

    @abc.abstractmethod
    def _suggest(self, n: int) -> list[Trial]:
        """Between 0 and ``n`` new trials, made with `_new_trial`."""

    @abc.abstractmethod
    def _observe(self, trial: Trial, result: TrialResult, score: float) -> None:
        """Take in a result; ``score`` is larger-is-better and -inf for failures."""

    def _done(self) -> bool:
        """Whether the algorithm has nothing more to ask, beyond ``max_trials``."""
        return False

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        del state


def check_budget(budget: object, name: str = "budget") -> int:
    """The budget (epochs) every trial of a single-budget optimizer trains for."""
    return check_int(
        name,
        budget,
        low=1,
        error=OptimizerError,
        fix=f"set {name} to the epochs a trial trains for, e.g. 12",
    )


def check_inheritance(
    inherit_weights: object, child_budget: object, budget: int
) -> tuple[bool, int]:
    """``inherit_weights`` and the epochs an inheriting child trains (``child_budget``, by
    default ``budget``), checked."""
    inherit = check_bool(
        "inherit_weights",
        inherit_weights,
        error=OptimizerError,
        fix="pass inherit_weights=True for children that start from their parents' weights",
    )
    return inherit, _check_child_budget(child_budget, inherit, budget)


def _check_child_budget(child_budget: object, inherit: bool, budget: int) -> int:
    if child_budget is None:
        return budget
    if not inherit:
        raise OptimizerError(
            "child_budget needs inherit_weights",
            expected="child_budget with inherit_weights=True, or no child_budget",
            received=f"child_budget={child_budget!r} with inherit_weights=False",
            fix="pass inherit_weights=True, or drop child_budget: without inheritance every "
            "trial trains budget epochs",
        )
    return check_budget(child_budget, "child_budget")
