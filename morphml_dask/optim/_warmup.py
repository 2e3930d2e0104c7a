"""Zero-cost warm-up: score many random candidates by a proxy, then start from the best.

Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021, section 5) score a
pool of random architectures by a zero-cost proxy (synflow) at initialisation, then start
the search from the best of them: the initial population of evolution, or the order in which
random search trains its samples. Here the scoring is a trial like any other, run on a worker
(``budget=0`` and ``info["warmup"]`` naming the proxy; the task scores the untrained network,
`morphml_dask.tasks.score_for_warmup`), so the optimizer stays pure.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from typing import Any

from morphml_dask.exceptions import OptimizerError
from morphml_dask.space import Candidate
from morphml_dask.trial import Trial, TrialResult, trial_number
from morphml_dask.validation import check_choice, check_int

__all__ = ["WARMUP_PROXIES", "ZeroCostWarmup", "is_warmup", "warmup_metric"]

WARMUP_PROXIES = ("synflow", "params", "flops", "jacob_cov", "naswot", "snip", "grad_norm")
"""Proxies whose larger values predict higher accuracy: the ones a warm-up can rank by
(latency and memory are costs, for limits and objectives, not predictors)."""

_FIX = (
    "pass e.g. warmup=3000, warmup_proxy='synflow' (Abdelfattah et al.'s setting), "
    "or warmup=0 for no warm-up"
)


def is_warmup(trial: Trial) -> bool:
    """Whether ``trial`` only scores its candidate for a warm-up (``budget=0``)."""
    return "warmup" in trial.info


def warmup_metric(proxy: str) -> str:
    """The metric a warm-up trial reports its score under."""
    return f"proxy_{proxy}"


class ZeroCostWarmup:
    """The warm-up's state: candidates asked, and the ``keep`` best scored so far.

    `RandomSearch`, `RegularizedEvolution` and `GeneticAlgorithm` take it as ``warmup=N``,
    ``warmup_proxy`` and ``warmup_keep``. The scoring trials have ``budget=0`` and
    ``info["warmup"]`` naming the proxy; they do not count towards ``max_trials``, the
    optimizer asks for nothing else until all their scores are back, and they are never its
    best trial.

    Parameters
    ----------
    candidates
        N, the random candidates scored before any trains.
    proxy
        The proxy they are ranked by, from `WARMUP_PROXIES` (synflow in Abdelfattah et al.).
    keep
        How many of the best the search takes, best first, before it samples at random.
    """

    def __init__(self, candidates: int, proxy: str, keep: int) -> None:
        self.candidates = candidates
        self.proxy = proxy
        self.keep = keep
        self.asked = 0
        self.told = 0
        # A min-heap of (score, -number, trial dict): its root is the worst kept candidate;
        # of equal scores the later-asked one goes first.
        self._best: list[tuple[float, int, dict[str, Any]]] = []
        self._ranked: list[Trial] | None = None

    @property
    def scoring(self) -> bool:
        """True until every candidate's score is back."""
        return self.told < self.candidates

    def ask(
        self, n: int, new_trial: Callable[..., Trial], sample: Callable[[], Candidate]
    ) -> list[Trial]:
        """Up to ``n`` scoring trials; none once all ``candidates`` were asked."""
        count = min(n, self.candidates - self.asked)
        self.asked += count
        info = {"warmup": self.proxy}
        return [new_trial(sample(), 0, info=info) for _ in range(count)]

    def tell(self, trial: Trial, result: TrialResult) -> None:
        """Keep ``trial`` if it scored among the best ``keep`` (failures score nothing)."""
        self.told += 1
        value = result.value(warmup_metric(self.proxy))
        if result.ok and not math.isnan(value):
            entry = (value, -(trial_number(trial.id) or 0), trial.to_dict())
            if len(self._best) < self.keep:
                heapq.heappush(self._best, entry)
            elif entry[:2] > self._best[0][:2]:
                heapq.heapreplace(self._best, entry)

    def take(self) -> Candidate | None:
        """The best scored candidate not taken yet, or None when none is left."""
        if self.scoring:
            return None
        if self._ranked is None:
            ordered = sorted(self._best, key=lambda e: e[:2], reverse=True)
            self._ranked = [Trial.from_dict(e[2]) for e in ordered]
            self._best = []
        return self._ranked.pop(0).arch if self._ranked else None

    def state_dict(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "proxy": self.proxy,
            "keep": self.keep,
            "asked": self.asked,
            "told": self.told,
            "best": [[repr(s), n, t] for s, n, t in self._best],
            "ranked": None if self._ranked is None else [t.to_dict() for t in self._ranked],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.asked = int(state["asked"])
        self.told = int(state["told"])
        self._best = [(float(s), int(n), dict(t)) for s, n, t in state["best"]]
        heapq.heapify(self._best)
        ranked = state["ranked"]
        self._ranked = None if ranked is None else [Trial.from_dict(t) for t in ranked]


def make_warmup(
    candidates: object, proxy: object, keep: object, default_keep: int
) -> ZeroCostWarmup | None:
    """The warm-up the optimizer's ``warmup``, ``warmup_proxy`` and ``warmup_keep`` ask for,
    checked; None for ``warmup=0``."""
    count = check_int(
        "warmup",
        candidates,
        low=0,
        error=OptimizerError,
        expected="an integer >= 0 (random candidates scored by a zero-cost proxy first)",
        fix=_FIX,
    )
    name = check_choice(
        "warmup_proxy",
        proxy,
        WARMUP_PROXIES,
        error=OptimizerError,
        expected=f"a proxy that grows with accuracy, one of {list(WARMUP_PROXIES)} (latency "
        "and memory are costs: limit them, or make them objectives)",
        fix=_FIX,
    )
    if count == 0:
        if keep is not None:
            raise OptimizerError(
                "warmup_keep needs a warm-up",
                expected="warmup_keep with warmup > 0, or no warmup_keep",
                received=f"warmup_keep={keep!r} with warmup=0",
                fix="pass e.g. warmup=3000 as well, or drop warmup_keep",
            )
        return None
    kept = check_int(
        "warmup_keep",
        min(default_keep, count) if keep is None else keep,
        low=1,
        high=count,
        error=OptimizerError,
        expected=f"an integer from 1 to warmup ({count})",
        fix="set warmup_keep to the best candidates to start from, e.g. the population size",
    )
    return ZeroCostWarmup(count, name, kept)
