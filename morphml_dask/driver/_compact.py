"""What the driver keeps of every trial for the whole search, in flat arrays of numbers.

The driver remembers three things per trial after its result is persisted: its place in the
replay event log, the first result of each architecture and budget (deduplication), and which
trained trial a reused one stands for. Held as Python tuples, strings and dicts they cost
about 650 bytes a trial; here they cost under 200 (see "Driver memory" in
``docs/performance.md``). Trial ids are kept as integers (`TrialIds`), metrics as doubles.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from morphml_dask.trial import numbered_id, trial_number

__all__ = ["DigestTable", "EventLog", "FirstResults", "TrialIds"]


class TrialIds:
    """Trial ids as integers and back.

    An id an optimizer numbered (``t000042``, see `BaseOptimizer`) is its number times two;
    any other id is kept once, in a list, and coded by its place in it (odd codes).
    """

    def __init__(self) -> None:
        self._others: list[str] = []
        self._other_codes: dict[str, int] = {}

    def code(self, trial_id: str) -> int:
        """The integer that stands for ``trial_id``."""
        number = trial_number(trial_id)
        if number is not None:
            return 2 * number
        code = self._other_codes.get(trial_id)
        if code is None:
            code = self._other_codes[trial_id] = 2 * len(self._others) + 1
            self._others.append(trial_id)
        return code

    def name(self, code: int) -> str:
        """The trial id that ``code`` stands for."""
        return self._others[code // 2] if code % 2 else numbered_id(code // 2)


class EventLog:
    """The optimizer's inputs in order, ``("ask", n, ids)`` and ``("tell", id)``, as a
    sequence of those tuples kept in two arrays: 16 bytes a tell, 8 an asked id.

    An event is a run of integers in ``_data`` starting at ``_starts[i]``: a tell is the
    trial's code (never negative), an ask is ``-n - 1`` followed by the codes asked.
    """

    def __init__(self) -> None:
        self._ids = TrialIds()
        self._data = array("q")
        self._starts = array("q")

    def ask(self, n: int, trial_ids: Sequence[str]) -> None:
        """Log that ``n`` trials were asked for and ``trial_ids`` came back."""
        self._starts.append(len(self._data))
        self._data.append(-n - 1)
        self._data.extend(self._ids.code(trial_id) for trial_id in trial_ids)

    def tell(self, trial_id: str) -> None:
        """Log that the result of ``trial_id`` was told."""
        self._starts.append(len(self._data))
        self._data.append(self._ids.code(trial_id))

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        index = range(len(self._starts))[index]  # negative indices; IndexError past the end
        start = self._starts[index]
        stop = self._starts[index + 1] if index + 1 < len(self._starts) else len(self._data)
        head = self._data[start]
        if head >= 0:
            return ("tell", self._ids.name(head))
        return ("ask", -head - 1, [self._ids.name(code) for code in self._data[start + 1 : stop]])

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return (self[index] for index in range(len(self._starts)))


class FirstResults:
    """The first completed result of every architecture and budget: the id of the trial
    that trained it and its metrics, in about 160 bytes an entry.

    An entry is found by a 128-bit digest of the fingerprint and budget; its metrics are
    doubles in ``_values`` from ``_starts[row]``, named by the tuple ``_names[_layout[row]]``
    (one tuple per set of metric names).
    """

    def __init__(self) -> None:
        self._ids = TrialIds()
        self._rows = DigestTable()
        self._trained = array("q")
        self._layout = array("l")
        self._starts = array("q")
        self._values = array("d")
        self._names: list[tuple[str, ...]] = []
        self._name_index: dict[tuple[str, ...], int] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, fingerprint: str, budget: int) -> tuple[str, dict[str, float]] | None:
        """The trained trial's id and its metrics, or None if none was recorded."""
        row = self._rows.get(_digest(fingerprint, budget))
        if row is None:
            return None
        names = self._names[self._layout[row]]
        start = self._starts[row]
        values = self._values[start : start + len(names)]
        return self._ids.name(self._trained[row]), dict(zip(names, values, strict=True))

    def add(
        self, fingerprint: str, budget: int, trial_id: str, metrics: Mapping[str, float]
    ) -> None:
        """Record the result of ``trial_id``, unless its architecture and budget have one."""
        key = _digest(fingerprint, budget)
        if self._rows.get(key) is not None:
            return
        names = tuple(metrics)
        layout = self._name_index.get(names)
        if layout is None:
            layout = self._name_index[names] = len(self._names)
            self._names.append(names)
        self._rows.put(key, len(self._trained))
        self._trained.append(self._ids.code(trial_id))
        self._layout.append(layout)
        self._starts.append(len(self._values))
        self._values.extend(float(value) for value in metrics.values())


class DigestTable:
    """A map from 128-bit digests to row numbers, open-addressed in flat arrays: 24 bytes a
    slot, at most two thirds of the slots used (a dict of Python ints costs about 120 bytes
    an entry)."""

    def __init__(self) -> None:
        self._halves = array("Q", bytes(8 * 2 * 8))  # high and low 64 bits, per slot
        self._rows = array("q", [-1]) * 8  # -1: the slot is free
        self._used = 0

    def __len__(self) -> int:
        return self._used

    def get(self, digest: int) -> int | None:
        """The row stored for ``digest``, or None."""
        row = self._rows[self._slot(digest)]
        return None if row < 0 else row

    def put(self, digest: int, row: int) -> None:
        """Store ``row`` for ``digest`` (``row`` >= 0), replacing any row it had."""
        slot = self._slot(digest)
        if self._rows[slot] < 0:
            self._used += 1
        self._rows[slot] = row
        self._halves[2 * slot], self._halves[2 * slot + 1] = divmod(digest, 1 << 64)
        if 3 * self._used > 2 * len(self._rows):
            self._grow()

    def _slot(self, digest: int) -> int:
        """The slot that holds ``digest``, or the free slot where it would go."""
        high, low = divmod(digest, 1 << 64)
        mask = len(self._rows) - 1
        slot = low & mask
        while self._rows[slot] >= 0 and (
            self._halves[2 * slot] != high or self._halves[2 * slot + 1] != low
        ):
            slot = (slot + 1) & mask
        return slot

    def _grow(self) -> None:
        halves, rows = self._halves, self._rows
        self._halves = array("Q", bytes(8 * 4 * len(rows)))
        self._rows = array("q", [-1]) * (2 * len(rows))
        self._used = 0
        for slot, row in enumerate(rows):
            if row >= 0:
                self.put((halves[2 * slot] << 64) | halves[2 * slot + 1], row)


def _digest(fingerprint: str, budget: int) -> int:
    """128 bits of BLAKE2b over the fingerprint and budget: two of 100,000 entries share one
    with a probability under 1e-28."""
    text = f"{fingerprint}/{budget}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=16).digest(), "little")
