"""`TrialIdSet`, the store's index of stored trial ids: a set, at a bit per numbered id."""

from __future__ import annotations

import sys
import tracemalloc

from morphml_dask.storage._idset import TrialIdSet
from morphml_dask.trial import numbered_id, trial_number


def test_it_holds_numbered_and_other_ids_as_a_set_does() -> None:
    ids = ["t000001", "t000009", "t1234567", "t42", "t0000003", "trial-7", "", "t000009"]
    kept = TrialIdSet(ids)
    assert len(kept) == len(set(ids))
    assert set(kept) == set(ids)
    assert all(trial_id in kept for trial_id in ids)
    for absent in ("t000002", "t000003", "t000042", "t9999999", "t", "T000001", 7):
        assert absent not in kept, absent


def test_the_optimizers_numbering_reads_back_and_nothing_else_passes_for_it() -> None:
    assert [trial_number(numbered_id(n)) for n in (0, 1, 999_999, 1_000_000)] == [
        0,
        1,
        999_999,
        1_000_000,
    ]
    for other in ("t42", "t0000001", "t-00001", "x000001", "t00000\u0661", "t000001 "):
        assert trial_number(other) is None, other


def test_a_hundred_thousand_numbered_ids_cost_bytes_not_kilobytes() -> None:
    tracemalloc.start()
    try:
        kept = TrialIdSet(numbered_id(n) for n in range(1, 100_001))
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(kept) == 100_000 and "t100000" in kept and "t100001" not in kept
    assert size < 40_000, f"{size} bytes; a set of the strings takes about 10 MB"
    assert sys.getsizeof(kept._bits) < 40_000
