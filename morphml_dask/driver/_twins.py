"""Trials asked for while a trial of the same architecture and budget is still training:
they wait for its result instead of training it a second time."""

from __future__ import annotations

from dataclasses import dataclass, field

from morphml_dask.trial import Trial

__all__ = ["Settled", "Twins"]


@dataclass(frozen=True)
class Settled:
    """What the twins of a trial that got its result do next.

    Attributes
    ----------
    reuse
        Twins to answer with the result (it completed).
    train
        The twin that trains the architecture now (the result was a failure or a pruned
        run), or None; the others wait for it in turn.
    """

    reuse: tuple[Trial, ...] = ()
    train: Trial | None = None


@dataclass
class Twins:
    """The trial training each architecture and budget now, and the trials waiting for it."""

    _training: dict[tuple[str, int], str] = field(default_factory=dict)
    _parked: dict[str, list[Trial]] = field(default_factory=dict)

    def __len__(self) -> int:
        """Trials waiting for a twin's result."""
        return sum(map(len, self._parked.values()))

    def park(self, trial: Trial) -> bool:
        """Whether ``trial`` waits for a twin in training; if not, it trains its
        architecture and budget from now on."""
        key = (trial.arch.fingerprint, trial.budget)
        trainer = self._training.setdefault(key, trial.id)
        if trainer == trial.id:
            return False
        self._parked.setdefault(trainer, []).append(trial)
        return True

    def settle(self, trial: Trial, ok: bool) -> Settled:
        """``trial`` has its final result (``ok``: completed): what its twins do next."""
        key = (trial.arch.fingerprint, trial.budget)
        if self._training.get(key) != trial.id:
            return Settled()
        del self._training[key]
        waiting = self._parked.pop(trial.id, [])
        if ok or not waiting:
            return Settled(reuse=tuple(waiting))
        first, *rest = waiting
        self._training[key] = first.id
        if rest:
            self._parked[first.id] = rest
        return Settled(train=first)
