"""Searches from experiment documents, and resuming one from its store alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from morphml_dask.driver._search import Search
from morphml_dask.exceptions import StorageInputError
from morphml_dask.storage import Checkpoint, ExperimentStore, open_store

if TYPE_CHECKING:
    from distributed import Client

    from morphml_dask.experiment import Experiment

__all__ = ["resume", "search_from_experiment", "stored_experiment"]


def search_from_experiment(
    experiment: Experiment,
    *,
    store: str | None = None,
    storage_options: dict[str, Any] | None = None,
    client: Client | None = None,
    **options: Any,
) -> Search:
    """A `Search` for an experiment; ``store`` overrides the document's store URL and
    ``storage_options`` are added to (and win over) the document's."""
    document = experiment.to_dict()
    if store is not None:
        document["store"] = store
    store_options = {**experiment.storage_options, **(storage_options or {})}
    return Search(
        experiment.make_optimizer(),
        experiment.task,
        store=open_store(store or experiment.store_url, store_options),
        client=client,
        gpus_per_trial=experiment.gpus_per_trial,
        name=experiment.name,
        config=document,
        pruner=experiment.make_pruner(),
        **options,
    )


def stored_experiment(url: str, storage_options: dict[str, Any] | None = None) -> Experiment:
    """The experiment of the search stored at ``url``, from its checkpoint."""
    from morphml_dask.experiment import load_experiment

    return load_experiment(_checkpoint(open_store(url, storage_options)).config)


def resume(
    url: str,
    storage_options: dict[str, Any] | None = None,
    *,
    client: Client | None = None,
    **options: Any,
) -> Search:
    """The search stored at ``url``, ready to go on from its last checkpoint.

    The optimizer (and the pruner) continue from their saved state; trials that were in
    flight run again under the same ids unless their results reached the store, which are
    told instead.
    """
    from morphml_dask.experiment import load_experiment

    store = open_store(url, storage_options)
    checkpoint = _checkpoint(store)
    experiment = load_experiment(checkpoint.config)
    optimizer = experiment.make_optimizer()
    optimizer.load_state_dict(checkpoint.optimizer)
    pruner = experiment.make_pruner()
    if pruner is not None and checkpoint.pruner is not None:
        pruner.load_state_dict(checkpoint.pruner)
    return Search(
        optimizer,
        experiment.task,
        store=store,
        client=client,
        gpus_per_trial=experiment.gpus_per_trial,
        name=experiment.name,
        config=checkpoint.config,
        pruner=pruner,
        **options,
    )


def _checkpoint(store: ExperimentStore) -> Checkpoint:
    """The store's checkpoint, or a `StorageInputError` when it holds no search to resume."""
    checkpoint = store.load_checkpoint()
    if checkpoint is None or not checkpoint.config:
        raise StorageInputError(
            f"nothing to resume at {store.url!r}",
            expected="the store of a search started with `morphml run` (it holds checkpoint.json)",
            received="no checkpoint" if checkpoint is None else "a checkpoint without experiment",
            fix="check the URL (and storage options), or start the search with `morphml run`",
        )
    return checkpoint
