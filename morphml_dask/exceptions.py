"""The errors morphml_dask raises on bad input.

Every message says what was expected, what was received and how to fix it, so that a user
can act on it without reading the source.
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "DatasetError",
    "ExperimentError",
    "InvalidArchitectureError",
    "ModelBuildError",
    "MorphMLError",
    "OptimizerError",
    "SearchSpaceError",
    "SearchStalledError",
    "SecurityError",
    "StorageError",
    "TaskError",
    "TrainingDivergedError",
    "UnschedulableError",
]


class MorphMLError(ValueError):
    """Base class of every error caused by input that morphml_dask rejects.

    Parameters
    ----------
    problem
        One line naming what is wrong.
    expected
        What morphml_dask needs.
    received
        What it got instead.
    fix
        How to correct the input.
    """

    def __init__(self, problem: str, *, expected: str, received: str, fix: str) -> None:
        self.problem = problem
        self.expected = expected
        self.received = received
        self.fix = fix
        super().__init__(f"{problem}\n  expected: {expected}\n  received: {received}\n  fix: {fix}")

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (Dask workers); keep the keyword-only signature.
        return (_rebuild, (type(self), self.problem, self.expected, self.received, self.fix))


def _rebuild(
    cls: type[MorphMLError], problem: str, expected: str, received: str, fix: str
) -> MorphMLError:
    return cls(problem, expected=expected, received=received, fix=fix)


class ExperimentError(MorphMLError):
    """An experiment document (YAML or mapping) is malformed; the message names the key."""


class InvalidArchitectureError(MorphMLError):
    """An architecture graph or its JSON form is malformed."""


class SearchSpaceError(MorphMLError):
    """An architecture, string or index does not belong to a search space."""


class DatasetError(MorphMLError):
    """Dataset arrays have the wrong shape, dtype or content."""


class TaskError(MorphMLError):
    """A task was given settings or an evaluation request it cannot honour."""


class ModelBuildError(MorphMLError):
    """A model cannot be built or profiled with the arguments given."""


class OptimizerError(MorphMLError):
    """An optimizer was configured or driven wrongly (bad settings, unknown trial ids)."""


class ClusterError(MorphMLError):
    """A Dask cluster cannot be reached, or started with the options given."""


class SecurityError(MorphMLError):
    """TLS certificates or keys that cannot be used."""


class StorageError(MorphMLError):
    """An experiment store cannot be opened, read or written as asked."""


class SearchStalledError(MorphMLError):
    """The search cannot go on: nothing is running, nothing can be asked, it is not finished."""


class UnschedulableError(MorphMLError):
    """No worker of the cluster can run the trials as asked (e.g. GPUs wanted, none offered)."""


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss: the trial failed, the search goes on."""
