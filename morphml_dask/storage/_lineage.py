"""Ancestry in the trials table: who a trial's weights came from, and theirs."""

from __future__ import annotations

import pandas as pd

from morphml_dask.exceptions import StorageInputError

__all__ = ["lineage_of"]


def lineage_of(trials: pd.DataFrame, trial_id: str) -> pd.DataFrame:
    """The rows of ``trial_id`` and its ancestors through ``parent_id``, the trial first.

    A parent missing from the table (a store cut short) ends the chain there.
    """
    known = set(trials["trial_id"]) if "trial_id" in trials.columns else set()
    if trial_id not in known:
        raise StorageInputError(
            f"no trial {trial_id!r} in the store",
            expected="the id of a stored trial",
            received=repr(trial_id),
            fix="pick an id from store.trials()['trial_id'], e.g. of store.best()",
        )
    parents = {
        str(child): str(parent)
        for child, parent in zip(trials["trial_id"], trials["parent_id"], strict=True)
        if isinstance(parent, str)
    }
    chain = [trial_id]
    while chain[-1] in parents and parents[chain[-1]] not in chain:
        chain.append(parents[chain[-1]])
    chain = [trial for trial in chain if trial in known]
    return trials.set_index("trial_id", drop=False).loc[chain].reset_index(drop=True)
