"""`StoreWriter`: persistence off the driver's loop, in order, with back-pressure and retries.

Writing a batch of results (a Parquet part, a Zarr part, a checkpoint) takes tens of
milliseconds; done on the loop, it would leave slots idle while the driver waits on the store.
One thread writes the batches in the order they were handed over, so a checkpoint is never
written before the results it counts. When the store is unreachable (an S3 outage), the
thread retries the same batch with back-off and the queue fills; the driver sees the writer
congested and stops submitting trials until the store answers again. Appends skip trial ids
already stored, so a batch retried after a write whose answer was lost is written once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from morphml_dask.exceptions import InputError, StorageError
from morphml_dask.storage import Backoff, Checkpoint, ExperimentStore
from morphml_dask.trial import TrialRecord

__all__ = ["StoreWriter"]

logger = logging.getLogger(__name__)

Curves = Mapping[str, Sequence[Mapping[str, float]]]
Batch = tuple[list[TrialRecord], dict[str, Sequence[Mapping[str, float]]], Checkpoint, list[Any]]

# One back-off policy for every store write: the driver's here, the workers' (weights,
# states) in the store itself.
FIRST_RETRY_S = Backoff.first
LONGEST_RETRY_S = Backoff.longest


class StoreWriter:
    """Writes (records, curves, checkpoint) batches to a store from a background thread.

    Parameters
    ----------
    store
        Where to write.
    backlog
        Batches that may wait; `submit` blocks beyond that, so memory stays bounded.
    outage_timeout
        Seconds a batch may keep failing before the writer gives up and the search stops
        with a `StorageError`. Errors of the data itself (`InputError`) and errors the store
        raised on purpose (`StorageError`: content this version cannot read) are not retried.
    """

    def __init__(
        self, store: ExperimentStore, backlog: int = 8, outage_timeout: float = 600.0
    ) -> None:
        self.store = store
        self.backlog = backlog
        self.outage_timeout = outage_timeout
        self.retries = 0
        self.longest_write_s = 0.0  # one batch, retries included
        self.last_write_s = 0.0
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=backlog)
        self._failing_since: float | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="morphml-store-writer")
        self._thread.daemon = True
        self._thread.start()

    @property
    def congested(self) -> bool:
        """Whether the store is failing or half the backlog waits: time to stop submitting."""
        return self._failing_since is not None or self._queue.qsize() >= self.backlog // 2

    @property
    def backlog_batches(self) -> int:
        """Batches handed over and not yet written."""
        return self._queue.qsize()

    def submit(
        self,
        records: Sequence[TrialRecord],
        curves: Curves,
        checkpoint: Checkpoint,
        futures: Sequence[Any] = (),
    ) -> None:
        """Queue one batch; raises the writer's error if an earlier batch failed for good.

        ``futures`` (the Dask futures of the records) are released once the batch is written:
        until then the cluster keeps the results, and a driver that dies before the write
        leaves them as in flight, to run again on resume.
        """
        self.check()
        self._queue.put((list(records), dict(curves), checkpoint, list(futures)))

    def close(self) -> None:
        """Write everything queued, stop the thread, and raise if a write failed."""
        self.stop()
        self.check()

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
            if self._error is None:  # after a fatal error keep draining, so submit never blocks
                self._write_until_done(batch)

    def _write_until_done(self, batch: Batch) -> None:
        records, curves, checkpoint, futures = batch
        delay = FIRST_RETRY_S
        started = time.monotonic()
        while True:
            try:
                if curves:
                    self.store.append_curves(curves)
                if records:
                    self.store.append_records(records)
                self.store.save_checkpoint(checkpoint)
            except (InputError, StorageError) as error:
                # The data is wrong, or the store holds what this version cannot read:
                # writing it again cannot help.
                self._error = error
                return
            except (FileNotFoundError, PermissionError) as error:
                # A bucket that does not exist, or credentials without the right: waiting
                # cannot help either (an outage shows as connection errors and timeouts).
                self._error = _unwritable(self.store.url, error)
                return
            except Exception as error:
                now = time.monotonic()
                if self._failing_since is None:
                    self._failing_since = now
                    logger.warning("store %s unreachable, retrying: %s", self.store.url, error)
                if now - self._failing_since > self.outage_timeout:
                    self._error = _outage(self.store.url, self.outage_timeout, error)
                    return
                self.retries += 1
                time.sleep(delay)
                delay = min(2 * delay, LONGEST_RETRY_S)
                continue
            if self._failing_since is not None:
                logger.warning("store %s reachable again", self.store.url)
                self._failing_since = None
            self.last_write_s = time.monotonic() - started
            self.longest_write_s = max(self.longest_write_s, self.last_write_s)
            for future in futures:
                future.release()
            return

    def check(self) -> None:
        """Raise the error that stopped the writer, if any: the search loop calls it every
        round, so that a store that fails for good ends a search with nothing in flight."""
        if self._error is not None:
            raise self._error


def _outage(url: str, timeout: float, error: Exception) -> StorageError:
    return StorageError(
        f"the store at {url} could not be written for {timeout:g} s",
        expected="a reachable store",
        received=f"{type(error).__name__}: {error}",
        fix=(
            "check the endpoint and credentials, then continue with `morphml resume URL`; "
            "raise morphml.store-outage-timeout to wait longer"
        ),
    )


def _unwritable(url: str, error: Exception) -> StorageError:
    return StorageError(
        f"the store at {url} cannot be written",
        expected="an existing bucket or folder that these credentials may write",
        received=f"{type(error).__name__}: {error}",
        fix="create the bucket (or fix the URL), or use credentials allowed to write there; "
        "then run again, or `morphml resume URL` if results were stored before",
    )
