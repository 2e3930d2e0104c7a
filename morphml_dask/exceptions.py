"""The errors morphml_dask raises.

Every message says what was expected, what was received and how to fix it, so that a user
can act on it without reading the source.

Two families sit under `MorphMLError`, so that a handler catches what it means to:

- **bad input** (`InputError`, also a `ValueError`): an experiment, architecture, space,
  dataset, optimizer setting, store URL or option that morphml_dask rejects. Fix the input
  and run again.
- **infrastructure** (never a `ValueError`): a store that cannot be reached or written
  (`StorageError`, an `OSError`), a scheduler that cannot be reached
  (`SchedulerUnreachableError`, an `OSError`), no worker able to run the trials
  (`UnschedulableError`) or a search that cannot go on (`SearchStalledError`), both
  `RuntimeError`. ``except ValueError`` in a user's code therefore never swallows an S3
  outage or a dead cluster.
"""

from __future__ import annotations

__all__ = [
    "CandidateRejected",
    "ClusterError",
    "DatasetError",
    "ExperimentError",
    "InputError",
    "InvalidArchitectureError",
    "ModelBuildError",
    "MorphMLError",
    "OptimizerError",
    "PrunerError",
    "SchedulerUnreachableError",
    "SearchSpaceError",
    "SearchStalledError",
    "SecurityError",
    "StorageError",
    "StorageInputError",
    "TaskError",
    "TrainingDivergedError",
    "TrialPruned",
    "UnschedulableError",
]


class MorphMLError(Exception):
    """Base class of every error morphml_dask raises on purpose.

    Parameters
    ----------
    problem
        One line naming what is wrong.
    expected
        What morphml_dask needs.
    received
        What it got instead.
    fix
        How to put it right.
    key
        The setting the error is about (``"population_size"``), when it is about one: an
        experiment document turns it into the key path (``optimizer.population_size``).
    """

    def __init__(
        self, problem: str, *, expected: str, received: str, fix: str, key: str | None = None
    ) -> None:
        self.problem = problem
        self.expected = expected
        self.received = received
        self.fix = fix
        self.key = key
        super().__init__(f"{problem}\n  expected: {expected}\n  received: {received}\n  fix: {fix}")

    def __str__(self) -> str:
        # OSError would print "[Errno ...]" forms; the message is always the first argument.
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (Dask workers); keep the keyword-only signature.
        fields = (self.problem, self.expected, self.received, self.fix, self.key)
        return (_rebuild, (type(self), *fields))


def _rebuild(
    cls: type[MorphMLError],
    problem: str,
    expected: str,
    received: str,
    fix: str,
    key: str | None = None,
) -> MorphMLError:
    return cls(problem, expected=expected, received=received, fix=fix, key=key)


# -- bad input ---------------------------------------------------------------------------------


class InputError(MorphMLError, ValueError):
    """Input that morphml_dask rejects: fix it and run again."""


class ExperimentError(InputError):
    """An experiment document (YAML or mapping) is malformed; the message names the key."""


class InvalidArchitectureError(InputError):
    """An architecture graph or its JSON form is malformed."""


class SearchSpaceError(InputError):
    """An architecture, string or index does not belong to a search space."""


class DatasetError(InputError):
    """Dataset arrays have the wrong shape, dtype or content."""


class TaskError(InputError):
    """A task was given settings or an evaluation request it cannot honour."""


class ModelBuildError(InputError):
    """A model cannot be built or profiled with the arguments given."""


class OptimizerError(InputError):
    """An optimizer was configured or driven wrongly (bad settings, unknown trial ids)."""


class PrunerError(InputError):
    """A pruner was configured wrongly, or cannot act on what the trials report."""


class ClusterError(InputError):
    """Cluster settings that cannot be used (unknown kind, invalid names, options)."""


class SecurityError(InputError):
    """TLS certificates or keys that cannot be used."""


# -- infrastructure ----------------------------------------------------------------------------


class StorageError(MorphMLError, OSError):
    """An experiment store cannot be reached, read or written, or holds what this version
    cannot read."""


class StorageInputError(StorageError, InputError):
    """A store URL, storage options, rows or curves that are malformed: bad input, and a
    `StorageError` too."""


class SchedulerUnreachableError(MorphMLError, OSError):
    """The Dask scheduler cannot be reached at the address given."""


class SearchStalledError(MorphMLError, RuntimeError):
    """The search cannot go on: nothing is running, nothing can be asked, it is not finished."""


class UnschedulableError(MorphMLError, RuntimeError):
    """No worker of the cluster can run the trials as asked (none connected, or none
    offering the GPUs the trials need)."""


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss: the trial failed, the search goes on."""


class CandidateRejected(Exception):  # noqa: N818 (an outcome, like TrialPruned)
    """A candidate measured above one of its task's limits (``TrainingTask(limits=...)``)
    before it trained: recorded as a failure of kind ``constraint``, with what was
    measured in ``metrics``, and never run again.
    """

    def __init__(self, message: str, metrics: dict[str, float]) -> None:
        super().__init__(message)
        self.metrics = metrics


class TrialPruned(Exception):  # noqa: N818 (the name Optuna users know)
    """Raised by a train function to stop its trial because the pruner said so.

    A train function that checks ``ctx.should_stop()`` may return early, or ``raise
    TrialPruned()``: the runner catches it and records the trial as ``pruned``, with the
    curve and the metrics it reported until then. Not an error of the trial.
    """
