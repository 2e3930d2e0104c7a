"""`TrialIdSet`: the trial ids a store holds, in about one bit per numbered id.

A part log checks every appended row against the ids already stored, for the whole search.
As a set of strings that costs about 100 bytes a trial; the ids optimizers give
(``t000001``, ...) are kept here as bits of a bitmap instead, and only other ids as strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from morphml_dask.trial import numbered_id, trial_number

__all__ = ["TrialIdSet"]


class TrialIdSet:
    """A set of trial ids: numbered ids as bits, any other id as a string."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._bits = bytearray()
        self._numbered = 0
        self._others: set[str] = set()
        self.update(ids)

    def add(self, trial_id: str) -> None:
        number = trial_number(trial_id)
        if number is None:
            self._others.add(trial_id)
            return
        byte, bit = divmod(number, 8)
        if byte >= len(self._bits):
            # grow by half again, so that appending ids in order costs O(1) amortised
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits) // 2)))
        if not self._bits[byte] >> bit & 1:
            self._bits[byte] |= 1 << bit
            self._numbered += 1

    def update(self, ids: Iterable[str]) -> None:
        for trial_id in ids:
            self.add(trial_id)

    def __contains__(self, trial_id: object) -> bool:
        if not isinstance(trial_id, str):
            return False
        number = trial_number(trial_id)
        if number is None:
            return trial_id in self._others
        byte, bit = divmod(number, 8)
        return byte < len(self._bits) and bool(self._bits[byte] >> bit & 1)

    def __len__(self) -> int:
        return self._numbered + len(self._others)

    def __iter__(self) -> Iterator[str]:
        for byte, value in enumerate(self._bits):
            if value:
                yield from (numbered_id(8 * byte + bit) for bit in range(8) if value >> bit & 1)
        yield from self._others
