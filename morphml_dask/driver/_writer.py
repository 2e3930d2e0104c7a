"""`StoreWriter`: persistence off the driver's loop, in order, with back-pressure.

Writing a batch of results (a Parquet part, a Zarr part, a checkpoint) takes tens of
milliseconds; done on the loop, it would leave slots idle while the driver waits on the store.
One thread writes the batches in the order they were handed over, so a checkpoint is never
written before the results it counts.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from morphml_dask.storage import Checkpoint, ExperimentStore

__all__ = ["StoreWriter"]

Batch = tuple[list[dict[str, Any]], dict[str, list[dict[str, float]]], Checkpoint]


class StoreWriter:
    """Writes (rows, curves, checkpoint) batches to a store from a background thread.

    Parameters
    ----------
    store
        Where to write.
    backlog
        Batches that may wait; `submit` blocks beyond that, so memory stays bounded.
    """

    def __init__(self, store: ExperimentStore, backlog: int = 8) -> None:
        self.store = store
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=backlog)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="morphml-store-writer")
        self._thread.daemon = True
        self._thread.start()

    def submit(
        self,
        rows: Sequence[Mapping[str, Any]],
        curves: Mapping[str, list[dict[str, float]]],
        checkpoint: Checkpoint,
    ) -> None:
        """Queue one batch; raises the writer's error if an earlier batch failed."""
        self._raise_if_failed()
        self._queue.put(([dict(r) for r in rows], dict(curves), checkpoint))

    def close(self) -> None:
        """Write everything queued, stop the thread, and raise if a write failed."""
        self.stop()
        self._raise_if_failed()

    def stop(self) -> None:
        """Write everything queued and stop the thread; errors stay with the writer."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is not None:
                continue  # keep draining so submit() never blocks forever
            rows, curves, checkpoint = batch
            try:
                if curves:
                    self.store.append_curves(curves)
                if rows:
                    self.store.append(rows)
                self.store.save_checkpoint(checkpoint)
            except BaseException as error:  # surfaced on the loop thread
                self._error = error

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error
