"""The search's results: those waiting to be persisted, and what deduplication and resume
know of the results before them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from morphml_dask.trial import Trial, TrialRecord, TrialResult

__all__ = ["Curve", "ResultBook"]

Curve = tuple[Mapping[str, float], ...]


class ResultBook:
    """Finished trials not yet handed to the store, the first result of every architecture
    and budget (a later trial of the same ones reuses it), and the results the store held
    when the search started."""

    def __init__(self) -> None:
        self.records: list[TrialRecord] = []
        self.curves: dict[str, Curve] = {}
        self.release: list[str] = []  # tasks whose results the cluster keeps until persisted
        self._evaluated: dict[tuple[str, int], Mapping[str, float]] = {}
        self._stored: dict[str, TrialResult] = {}

    def remember_stored(self, records: Iterable[TrialRecord]) -> None:
        """Index what the store already holds: results by id, and completed results by
        architecture and budget."""
        for record in records:
            self._stored[record.trial_id] = record.result
            if record.ok:
                self._index(record.trial, record.result)

    def stored(self, trial_id: str) -> TrialResult | None:
        """The stored result of ``trial_id`` (once: it is then told to the optimizer)."""
        return self._stored.pop(trial_id, None)

    def evaluated(self, trial: Trial) -> Mapping[str, float] | None:
        """The metrics of the first completed trial of ``trial``'s architecture and budget."""
        return self._evaluated.get((trial.arch.fingerprint, trial.budget))

    def add(self, record: TrialRecord, curve: Curve = ()) -> None:
        self.records.append(record)
        if curve:
            self.curves[record.trial_id] = curve
        if record.ok:
            self._index(record.trial, record.result)

    def take(self) -> tuple[tuple[TrialRecord, ...], dict[str, Curve], tuple[str, ...]]:
        """The records, curves and keys to release gathered since the last call."""
        taken = (tuple(self.records), self.curves, tuple(self.release))
        self.records, self.curves, self.release = [], {}, []
        return taken

    def _index(self, trial: Trial, result: TrialResult) -> None:
        self._evaluated.setdefault((trial.arch.fingerprint, trial.budget), dict(result.metrics))
