"""Search algorithms as pure ask/tell state machines: no Dask, no files, no clock."""

from __future__ import annotations

from morphml_dask.optim._asha import ASHA
from morphml_dask.optim._base import BaseOptimizer, Objective
from morphml_dask.optim._bayesian import BayesianOptimization
from morphml_dask.optim._evolution import RegularizedEvolution
from morphml_dask.optim._genetic import GeneticAlgorithm
from morphml_dask.optim._pareto import MultiObjective, pareto_axis
from morphml_dask.optim._random import RandomSearch
from morphml_dask.optim._warmup import ZeroCostWarmup

__all__ = [
    "ASHA",
    "BaseOptimizer",
    "BayesianOptimization",
    "GeneticAlgorithm",
    "MultiObjective",
    "Objective",
    "RandomSearch",
    "RegularizedEvolution",
    "ZeroCostWarmup",
    "pareto_axis",
]
