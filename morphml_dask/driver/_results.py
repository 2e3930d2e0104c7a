"""The search's results: those waiting to be persisted, and what deduplication and resume
know of the results before them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from morphml_dask.driver._compact import FirstResults, TrialIds
from morphml_dask.trial import Trial, TrialRecord, TrialResult

__all__ = ["Curve", "ResultBook"]

Curve = tuple[Mapping[str, float], ...]


class ResultBook:
    """Finished trials not yet handed to the store, the first result of every architecture
    and budget (a later trial of the same ones reuses it), which trained trial each reused
    one stands for, and the results the store held when the search started."""

    def __init__(self) -> None:
        self.records: list[TrialRecord] = []
        self.curves: dict[str, Curve] = {}
        self.release: list[str] = []  # tasks whose results the cluster keeps until persisted
        # (fingerprint, budget) -> (the id of the trial that trained it, its metrics)
        self._evaluated = FirstResults()
        self._ids = TrialIds()
        self._sources: dict[int, int] = {}  # reused trial's id -> the trained trial's, coded
        self._stored: dict[str, TrialResult] = {}

    def remember_stored(self, records: Iterable[TrialRecord]) -> None:
        """Index what the store already holds: results by id, completed results by
        architecture and budget, and the trained trial each reused one stands for."""
        for record in records:
            self._stored[record.trial_id] = record.result
            if record.ok:
                self._index(record)

    def stored(self, trial_id: str) -> TrialResult | None:
        """The stored result of ``trial_id`` (once: it is then told to the optimizer)."""
        return self._stored.pop(trial_id, None)

    def evaluated(self, trial: Trial) -> Mapping[str, float] | None:
        """The metrics of the first completed trial of ``trial``'s architecture and budget."""
        found = self._evaluated.get(trial.arch.fingerprint, trial.budget)
        return None if found is None else found[1]

    def trained(self, trial_id: str) -> str:
        """The trial whose weights and saved state ``trial_id`` has: the one it reused, or
        itself."""
        source = self._sources.get(self._ids.code(trial_id))
        return trial_id if source is None else self._ids.name(source)

    def from_trained(self, trial: Trial) -> Trial:
        """``trial``, continuing from the trial that trained its parent when the parent was
        reused (it has no weights or saved state of its own)."""
        if trial.parent is None or self.trained(trial.parent) == trial.parent:
            return trial
        return dataclasses.replace(trial, parent=self.trained(trial.parent))

    def add(self, record: TrialRecord, curve: Curve = ()) -> None:
        self.records.append(record)
        if curve:
            self.curves[record.trial_id] = curve
        if record.ok:
            self._index(record)

    def take(self) -> tuple[tuple[TrialRecord, ...], dict[str, Curve], tuple[str, ...]]:
        """The records, curves and keys to release gathered since the last call."""
        taken = (tuple(self.records), self.curves, tuple(self.release))
        self.records, self.curves, self.release = [], {}, []
        return taken

    def _index(self, record: TrialRecord) -> None:
        trial = record.trial
        found = self._evaluated.get(trial.arch.fingerprint, trial.budget) if record.reused else None
        if found is not None:
            self._sources[self._ids.code(trial.id)] = self._ids.code(found[0])
        else:  # the first result of its architecture and budget is kept, later ones not
            metrics = record.result.metrics
            self._evaluated.add(trial.arch.fingerprint, trial.budget, trial.id, metrics)
