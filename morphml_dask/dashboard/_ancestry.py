"""`Ancestry`: who each recent trial inherited its weights from, for the lineage of the
best trial on the morphml page, in bounded memory."""

from __future__ import annotations

__all__ = ["LINEAGE_DEPTH", "LINEAGE_TRIALS", "Ancestor", "Ancestry"]

LINEAGE_TRIALS = 20_000
"""Trials whose parent the board remembers: the latest to finish, and those whose
descendants finished since (a parent is refreshed each time a child of it arrives)."""

LINEAGE_DEPTH = 50
"""Ancestors of the best trial shown, at most."""

# (trial id, mutation that made it from its parent or None for a root, objective or None)
Ancestor = tuple[str, str | None, float | None]


class Ancestry:
    """Parent links of the latest `LINEAGE_TRIALS` trials, oldest dropped first."""

    def __init__(self, limit: int = LINEAGE_TRIALS) -> None:
        self.limit = limit
        # trial id -> (parent id or None, mutation or None, objective or None); dicts keep
        # insertion order, so the first key is the one used longest ago
        self._links: dict[str, tuple[str | None, str | None, float | None]] = {}

    def __len__(self) -> int:
        return len(self._links)

    def add(
        self, trial_id: str, parent: str | None, mutation: str | None, value: float | None
    ) -> None:
        """Remember a finished trial and refresh its parent, which stays while its family
        grows."""
        self._links.pop(trial_id, None)
        self._links[trial_id] = (parent, mutation, value)
        if parent is not None and parent in self._links:
            self._links[parent] = self._links.pop(parent)
        while len(self._links) > self.limit:
            del self._links[next(iter(self._links))]

    def chain(self, trial_id: str) -> list[Ancestor]:
        """``trial_id`` and the ancestors remembered, oldest first, at most `LINEAGE_DEPTH`."""
        chain: list[Ancestor] = []
        current: str | None = trial_id
        seen: set[str] = set()
        while current is not None and current not in seen and len(chain) < LINEAGE_DEPTH:
            seen.add(current)
            link = self._links.get(current)
            if link is None:
                chain.append((current, None, None))
                break
            parent, mutation, value = link
            chain.append((current, mutation, value))
            current = parent
        return chain[::-1]
