"""`BayesianOptimization`: a Gaussian process over architecture encodings, mutation-driven."""

from __future__ import annotations

import contextlib
import functools
import math
import statistics
from collections.abc import Mapping
from typing import Any

import numpy as np

try:  # a dependency of scikit-learn, so normally installed
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover
    ThreadpoolController = None

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim._base import BaseOptimizer, check_budget
from morphml_dask.registry import Schema, register_kind
from morphml_dask.space import BaseSearchSpace, Candidate, candidate_from_dict
from morphml_dask.trial import Trial, TrialResult
from morphml_dask.validation import check_choice, check_int, check_number

__all__ = ["BayesianOptimization"]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
# A candidate of the space and its encoding.
Proposal = tuple[Candidate, FloatArray]

ACQUISITIONS = ("ei", "ucb")
# The best completed architectures, whose mutations make most candidates.
_TOP_K = 10
# The training set: at most this many results, the best half and the most recent others.
_MAX_POINTS = 256
# Share of the candidate pool replaced by fresh candidates at each ask.
_REFRESH = 0.1
# Share of fresh candidates sampled from the space rather than mutated from the best.
_RANDOM_SHARE = 0.2
# Noise variance of the surrogate, relative to the unit variance of its targets.
_NOISE = 0.1
# Candidates fingerprinted per pick, and samples drawn per random suggestion, before the
# optimizer gives up on finding an architecture not asked before (an exhausted space).
_PICK_TRIES = 10
_SAMPLE_TRIES = 20


class BayesianOptimization(BaseOptimizer):
    """Bayesian optimization with a Gaussian-process surrogate and mutation-based
    acquisition search, asynchronous.

    Until ``n_initial`` results are told, every ask samples the space. After that, each
    ask fits a Gaussian process to the encodings (`BaseSearchSpace.encode`) and scores of
    the told trials, ranks a pool of candidates by the acquisition function and asks for
    the best ones not asked before. Candidates are mostly mutations (one to three steps) of
    the 10 best architectures so far, a fifth are samples of the space: the local
    acquisition search of White et al., "BANANAS: Bayesian Optimization with Neural
    Architectures for Neural Architecture Search" (AAAI 2021), which Schneider et al.,
    "Mutation is all you need" (ICML AutoML workshop, 2021) show to matter more than the
    choice of surrogate.

    Parameters
    ----------
    space, objective, direction, max_trials, seed
        As for `BaseOptimizer`.
    budget
        The budget (e.g. epochs) every trial is trained for.
    n_initial
        Results to collect from random samples before the model is used.
    n_candidates
        Candidates the acquisition function ranks at each ask.
    acquisition
        ``"ei"``, expected improvement over the best score (Jones et al., 1998), or
        ``"ucb"``, the upper confidence bound ``mean + kappa * std`` (Srinivas et al., 2010).
    xi
        Margin of expected improvement, in the units of the model's targets (normal
        quantiles of the scores' ranks, see Notes).
    kappa
        Weight of the standard deviation in the upper confidence bound.

    Notes
    -----
    The surrogate is an exact Gaussian process with a squared-exponential kernel over
    encodings, its length scale the median distance between them. Its targets are the
    scores' normal scores (a Gaussian copula: rank ``r`` of ``n`` becomes the standard normal
    quantile of ``(r + 1/2) / n``), which makes it indifferent to the metric's scale and to
    outliers such as diverged networks. It is refit from the saved data at every ask, so a
    resumed search asks exactly what the original would. Failed trials count as the worst
    score observed, so that the model learns to avoid them. The model trains on at most 256
    results, the 128 best and the most recent others, which keeps the cost of an ask flat
    in long searches. Its linear algebra runs on one BLAS thread (threadpoolctl): the
    matrices are small, and BLAS threads on a busy machine wait on each other.

    Trials asked but not told are kriging believers (Ginsbourger et al., "Kriging is
    well-suited to parallelize optimization", 2010): the model takes them as observed at
    its own mean, which leaves the mean as it was but removes the uncertainty around them,
    so that a batch, or workers asking while others run, spread out instead of asking for
    the same idea several times.

    The candidate pool persists between asks: each ask replaces its oldest tenth with fresh
    candidates (fills it at the first model-based ask). Building and fingerprinting
    architectures costs more than the model, so this is what keeps an ask within a few
    milliseconds. No architecture is asked twice (by fingerprint) unless the space runs out.

    Examples
    --------
    >>> from morphml_dask.space import CellSpace
    >>> from morphml_dask.testing import synthetic_result
    >>> optimizer = BayesianOptimization(CellSpace(), n_initial=4, max_trials=10, seed=0)
    >>> while not optimizer.finished:
    ...     for trial in optimizer.ask(2):
    ...         optimizer.tell(synthetic_result(trial))
    >>> optimizer.num_told, optimizer.best_trial is not None
    (10, True)
    """

    name = "bayesian-optimization"

    def __init__(
        self,
        space: BaseSearchSpace,
        *,
        budget: int = 12,
        n_initial: int = 10,
        n_candidates: int = 100,
        acquisition: str = "ei",
        xi: float = 0.01,
        kappa: float = 2.0,
        objective: str = "val_accuracy",
        direction: str = "maximize",
        max_trials: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            space, objective=objective, direction=direction, max_trials=max_trials, seed=seed
        )
        self.budget = check_budget(budget)
        self.n_initial = _check_count("n_initial", n_initial, "10 random trials before the model")
        self.n_candidates = _check_count("n_candidates", n_candidates, "100 candidates per ask")
        self.acquisition = check_choice(
            "acquisition",
            acquisition,
            ACQUISITIONS,
            error=OptimizerError,
            fix='pass acquisition="ei" (expected improvement) or "ucb" (upper confidence bound)',
        )
        self.xi = _check_exploration("xi", xi, "0.01")
        self.kappa = _check_exploration("kappa", kappa, "2.0")
        # The training set: encodings of told trials and their scores, None for failures.
        self._x: list[FloatArray] = []
        self._y: list[float | None] = []
        # The best completed trials, best first: (score, trial id, architecture).
        self._top: list[tuple[float, str, Candidate]] = []
        # Fingerprints of every architecture asked for, in order.
        self._fingerprints: dict[str, None] = {}
        # Candidates not asked for yet, oldest first.
        self._pool: list[Proposal] = []
        # Encodings of pending trials: a cache, rebuilt on demand after a resume.
        self._encodings: dict[str, FloatArray] = {}

    # -- asking ----------------------------------------------------------------------------

    def _suggest(self, n: int) -> list[Trial]:
        if self.num_told < self.n_initial:
            chosen = [self._fresh_sample() for _ in range(n)]
        else:
            with _one_blas_thread():
                chosen = self._propose(n)
        trials = []
        for arch, encoding in chosen:
            trial = self._new_trial(arch, self.budget)
            self._encodings[trial.id] = encoding
            trials.append(trial)
        return trials

    def _fresh_sample(self) -> Proposal:
        """A sample of the space not asked before (or, in an exhausted space, any)."""
        for _ in range(_SAMPLE_TRIES):
            arch = self.space.sample(self.rng)
            if arch.fingerprint not in self._fingerprints:
                break
        self._fingerprints[arch.fingerprint] = None
        return arch, self.space.encode(arch)

    def _propose(self, n: int) -> list[Proposal]:
        """The ``n`` candidates of highest acquisition, each believed before the next."""
        self._refresh_pool(n)
        model, best = self._surrogate()
        chosen = []
        for _ in range(n):
            picked = self._pick(model, best) or self._fresh_sample()
            chosen.append(picked)
            encoding = picked[1][None, :]
            model = model.believe(encoding, model.predict(encoding)[0])
        return chosen

    def _pick(self, model: _GaussianProcess, best: float) -> Proposal | None:
        """Take the pool's best candidate whose fingerprint was never asked for."""
        if not self._pool:
            return None
        mean, std = model.predict(np.stack([x for _, x in self._pool]))
        if self.acquisition == "ei":
            scores = _expected_improvement(mean, std, best + self.xi)
        else:
            scores = mean + self.kappa * std
        dropped = set()
        picked = None
        for index in np.argsort(-scores, kind="stable")[:_PICK_TRIES].tolist():
            dropped.add(index)
            arch = self._pool[index][0]
            if arch.fingerprint not in self._fingerprints:
                self._fingerprints[arch.fingerprint] = None
                picked = self._pool[index]
                break
        self._pool = [c for i, c in enumerate(self._pool) if i not in dropped]
        return picked

    def _refresh_pool(self, n: int) -> None:
        """Add fresh candidates, new encodings only, and drop the oldest beyond the size."""
        size = max(self.n_candidates, n)
        fresh = max(n, math.ceil(_REFRESH * self.n_candidates)) if self._pool else size
        known = {x.tobytes() for x in self._x}
        known.update(x.tobytes() for x in self._pending_encodings())
        known.update(x.tobytes() for _, x in self._pool)
        for _ in range(fresh):
            arch = self._candidate()
            encoding = self.space.encode(arch)
            if encoding.tobytes() not in known:
                known.add(encoding.tobytes())
                self._pool.append((arch, encoding))
        del self._pool[: max(0, len(self._pool) - size)]

    def _candidate(self) -> Candidate:
        if not self._top or self.rng.random() < _RANDOM_SHARE:
            return self.space.sample(self.rng)
        arch = self._top[int(self.rng.integers(len(self._top)))][2]
        for _ in range(1 + int(self.rng.binomial(2, 0.25))):
            arch = self.space.mutate(arch, self.rng)
        return arch

    # -- the model -------------------------------------------------------------------------

    def _surrogate(self) -> tuple[_GaussianProcess, float]:
        """The model of the told results and the pending believers, and the best target."""
        worst = min((y for y in self._y if y is not None), default=0.0)
        target = _normal_scores(np.array([worst if y is None else y for y in self._y]))
        model = _GaussianProcess.fit(np.stack(self._x), target)
        pending = self._pending_encodings()
        if pending:
            believed = np.stack(pending)
            model = model.believe(believed, model.predict(believed)[0])
        return model, float(target.max())

    def _pending_encodings(self) -> list[FloatArray]:
        for trial in self.pending:
            if trial.id not in self._encodings:
                self._encodings[trial.id] = self.space.encode(trial.arch)
        return [self._encodings[trial.id] for trial in self.pending]

    # -- telling ---------------------------------------------------------------------------

    def _observe(self, trial: Trial, result: TrialResult, score: float) -> None:
        encoding = self._encodings.pop(trial.id, None)
        self._x.append(self.space.encode(trial.arch) if encoding is None else encoding)
        self._y.append(None if score == -math.inf else score)
        if score > -math.inf:
            self._top.append((score, trial.id, trial.arch))
            # Ties go to the older trial: ids sort in asking order.
            self._top = sorted(self._top, key=lambda t: (-t[0], t[1]))[:_TOP_K]
        if len(self._x) > _MAX_POINTS:
            self._forget_one()

    def _forget_one(self) -> None:
        """Drop the oldest result that is not among the best half."""
        scores = [-math.inf if y is None else y for y in self._y]
        best = set(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[: _MAX_POINTS // 2])
        oldest = next(i for i in range(len(scores)) if i not in best)
        del self._x[oldest], self._y[oldest]

    # -- persistence -----------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "n_initial": self.n_initial,
            "n_candidates": self.n_candidates,
            "acquisition": self.acquisition,
            "xi": self.xi,
            "kappa": self.kappa,
            "encodings": [x.tolist() for x in self._x],
            "scores": list(self._y),
            "top": [[score, trial_id, arch.to_dict()] for score, trial_id, arch in self._top],
            "asked_fingerprints": list(self._fingerprints),
            "pool": [arch.to_dict() for arch, _ in self._pool],
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.budget = int(state["budget"])
        self.n_initial = int(state["n_initial"])
        self.n_candidates = int(state["n_candidates"])
        self.acquisition = str(state["acquisition"])
        self.xi = float(state["xi"])
        self.kappa = float(state["kappa"])
        self._x = [np.array(x, dtype=np.float64) for x in state["encodings"]]
        self._y = [None if y is None else float(y) for y in state["scores"]]
        self._top = [
            (float(score), str(trial_id), candidate_from_dict(arch))
            for score, trial_id, arch in state["top"]
        ]
        self._fingerprints = dict.fromkeys(state["asked_fingerprints"])
        pool = [candidate_from_dict(arch) for arch in state["pool"]]
        self._pool = [(arch, self.space.encode(arch)) for arch in pool]
        self._encodings = {}


class _GaussianProcess:
    """An exact Gaussian process with a squared-exponential kernel of unit variance, for
    targets of unit variance; numpy only.

    It keeps the inverse of the kernel matrix's Cholesky factor, so that `believe` adds a
    point in O(n^2) by bordering it.
    """

    def __init__(
        self, x: FloatArray, target: FloatArray, length: float, inv_chol: FloatArray
    ) -> None:
        self.x = x
        self.target = target
        self.length = length
        self.inv_chol = inv_chol
        self.alpha = inv_chol.T @ (inv_chol @ target)

    @classmethod
    def fit(cls, x: FloatArray, target: FloatArray) -> _GaussianProcess:
        """Fit with the median distance between distinct encodings as the length scale."""
        sq = _squared_distances(x, x)
        distinct = sq[sq > 0]  # each pair twice, which leaves the median as it is
        length = math.sqrt(float(np.median(distinct))) if distinct.size else 1.0
        kernel = np.exp(-0.5 * sq / length**2) + _NOISE * np.eye(len(x))
        chol = np.asarray(np.linalg.cholesky(kernel), dtype=np.float64)
        return cls(x, target, length, _inverse_lower(chol))

    def predict(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Posterior mean and standard deviation of the latent function at ``x``."""
        cross = np.exp(-0.5 * _squared_distances(x, self.x) / self.length**2)
        projected = cross @ self.inv_chol.T
        variance = np.maximum(1.0 - (projected**2).sum(axis=1), 1e-12)
        return cross @ self.alpha, np.sqrt(variance)

    def believe(self, x: FloatArray, target: FloatArray) -> _GaussianProcess:
        """The model with ``x`` observed at ``target`` too, the length scale kept."""
        inv_chol, points = self.inv_chol, self.x
        for row in x:
            cross = np.exp(-0.5 * _squared_distances(row[None, :], points)[0] / self.length**2)
            projected = inv_chol @ cross
            pivot = math.sqrt(max(1.0 + _NOISE - float(projected @ projected), 1e-12))
            size = len(points)
            grown = np.zeros((size + 1, size + 1))
            grown[:size, :size] = inv_chol
            grown[size, :size] = -(projected @ inv_chol) / pivot
            grown[size, size] = 1.0 / pivot
            inv_chol, points = grown, np.vstack([points, row[None, :]])
        return _GaussianProcess(points, np.append(self.target, target), self.length, inv_chol)


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """Run BLAS single-threaded: the model's matrices are small, and several BLAS threads
    on a busy machine wait on each other for milliseconds per product."""
    controller = _blas_controller()
    if controller is None:
        return contextlib.nullcontext()
    limiter: contextlib.AbstractContextManager[Any] = controller.limit(limits=1, user_api="blas")
    return limiter


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's handle on the BLAS libraries numpy loaded, found once."""
    return None if ThreadpoolController is None else ThreadpoolController()


def _normal_scores(y: FloatArray) -> FloatArray:
    """The Gaussian copula of ``y``: each value's normal quantile of its rank, tied values
    sharing the mean of their quantiles."""
    quantiles = _normal_quantiles(len(y))
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    sums = np.add.reduceat(quantiles, np.cumsum(counts) - counts)
    return np.asarray((sums / counts)[inverse], dtype=np.float64)


@functools.cache
def _normal_quantiles(n: int) -> FloatArray:
    normal = statistics.NormalDist()
    return np.array([normal.inv_cdf((i + 0.5) / n) for i in range(n)], dtype=np.float64)


def _inverse_lower(chol: FloatArray) -> FloatArray:
    """The inverse of a lower-triangular matrix, by blocks: a third of the work of
    `numpy.linalg.inv`, mostly as matrix products."""
    size = len(chol)
    if size <= 64:
        return np.asarray(np.linalg.inv(chol), dtype=np.float64)
    half = size // 2
    top, bottom = _inverse_lower(chol[:half, :half]), _inverse_lower(chol[half:, half:])
    inverse = np.zeros_like(chol)
    inverse[:half, :half] = top
    inverse[half:, half:] = bottom
    inverse[half:, :half] = -bottom @ (chol[half:, :half] @ top)
    return inverse


def _squared_distances(a: FloatArray, b: FloatArray) -> FloatArray:
    sq = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.asarray(np.maximum(sq, 0.0), dtype=np.float64)


def _expected_improvement(mean: FloatArray, std: FloatArray, threshold: float) -> FloatArray:
    """E[max(f - threshold, 0)] for f ~ N(mean, std^2)."""
    gain = mean - threshold
    u = gain / std
    cdf = 0.5 * (1.0 + np.array([math.erf(v / math.sqrt(2.0)) for v in u.tolist()]))
    pdf = np.exp(-0.5 * u**2) / math.sqrt(2.0 * math.pi)
    return np.asarray(gain * cdf + std * pdf, dtype=np.float64)


def _check_count(name: str, value: object, example: str) -> int:
    return check_int(name, value, low=1, error=OptimizerError, fix=f"set {name} to e.g. {example}")


def _check_exploration(name: str, value: object, example: str) -> float:
    fix = f"set {name} to e.g. {example}; larger values explore more"
    return check_number(name, value, low=0, error=OptimizerError, fix=fix)


register_kind(
    "optimizer",
    BayesianOptimization.name,
    BayesianOptimization,
    Schema(from_task={"budget": "epochs"}),
)
