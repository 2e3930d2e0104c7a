"""Retries with back-off while a store is unreachable: one policy for the driver's store
writer and for what trials write and read on workers (weights, saved states, through a
`RetryingLocation`).

An outage shows as connection errors and timeouts: those are retried, waiting
`FIRST_RETRY_S` and doubling up to `LONGEST_RETRY_S`, for up to ``timeout`` seconds. Errors
that waiting cannot mend are raised at once: bad data (`InputError`), content the store
refused on purpose (`StorageError`), a missing bucket or folder and a denied write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from morphml_dask.exceptions import InputError, StorageError
from morphml_dask.storage._fs import Location

__all__ = [
    "FIRST_RETRY_S",
    "LONGEST_RETRY_S",
    "Backoff",
    "RetryingLocation",
    "StoreOutageError",
    "is_transient",
    "retrying",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_RETRY_S = 0.25
LONGEST_RETRY_S = 8.0


class StoreOutageError(StorageError):
    """The store could not be reached for ``morphml.store-outage-timeout`` seconds: a fault
    of the infrastructure, not of the trial (its failure kind is ``"store"``)."""


def is_transient(error: BaseException) -> bool:
    """Whether waiting may help: an outage rather than bad data, unreadable content, a
    missing bucket or folder, or a denied write."""
    permanent = (InputError, StorageError, FileNotFoundError, PermissionError)
    return isinstance(error, Exception) and not isinstance(error, permanent)


@dataclass
class Backoff:
    """The waits between tries of an operation that keeps failing.

    Parameters
    ----------
    timeout
        Seconds of failures after which `failed` gives up.
    first, longest
        The first wait, doubled after each failure up to ``longest``.
    """

    timeout: float
    first: float = FIRST_RETRY_S
    longest: float = LONGEST_RETRY_S
    failing_since: float | None = None
    retries: int = 0
    _next: float = 0.0

    def failed(self, now: float) -> float | None:
        """Note a failure at ``now`` (a steady clock); the seconds to wait before the next
        try, or None when failures have lasted longer than ``timeout``."""
        if self.failing_since is None:
            self.failing_since = now
        if self._next == 0.0:
            self._next = self.first
        if now - self.failing_since > self.timeout:
            return None
        wait = self._next
        self._next = min(2 * wait, self.longest)
        self.retries += 1
        return min(wait, max(self.failing_since + self.timeout - now, 0.0) + 0.01)

    def succeeded(self) -> bool:
        """Note a success; whether it ends a run of failures."""
        was_failing, self.failing_since = self.failing_since is not None, None
        self._next = 0.0
        return was_failing


def retrying(call: Callable[[], T], *, url: str, what: str, timeout: float) -> T:
    """``call()``, tried again with back-off while it fails as an outage would.

    Parameters
    ----------
    call
        The store operation.
    url, what
        The store and the operation, for the log and the error.
    timeout
        Seconds the store may fail, counted from the first try.

    Raises
    ------
    StoreOutageError
        When ``call`` still fails after ``timeout`` seconds.
    """
    backoff = Backoff(timeout, failing_since=time.monotonic())
    while True:
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                raise
            wait = backoff.failed(time.monotonic())
            if wait is None:
                raise outage_error(url, what, timeout, error) from error
            if backoff.retries == 1:
                logger.warning("store %s unreachable (%s), retrying: %s", url, what, error)
            time.sleep(wait)


class RetryingLocation(Location):
    """``location``, its reads, listings and writes retried with `retrying`.

    Only the transfers are retried: what was read is decoded once, so content that cannot
    be decoded fails at once.

    Parameters
    ----------
    location
        The experiment's location (its filesystem is shared, not copied).
    timeout
        Seconds each transfer may keep failing before it raises `StoreOutageError`.
    """

    def __init__(self, location: Location, timeout: float) -> None:  # no super(): a view
        self.url, self.storage_options = location.url, location.storage_options
        self.fs, self.root = location.fs, location.root
        self.timeout = timeout

    def write_atomic(self, path: str, data: bytes) -> None:
        retrying(lambda: super(RetryingLocation, self).write_atomic(path, data), **self._on(path))

    def read(self, path: str) -> bytes:
        return retrying(lambda: super(RetryingLocation, self).read(path), **self._on(path))

    def list(self, folder: str, suffix: str = "") -> list[str]:
        return retrying(
            lambda: super(RetryingLocation, self).list(folder, suffix), **self._on(folder)
        )

    def _on(self, path: str) -> dict[str, Any]:
        relative = path.removeprefix(self.root).lstrip("/") or "."
        return {"url": self.url, "what": f"reach {relative}", "timeout": self.timeout}


def outage_error(url: str, what: str, timeout: float, error: Exception) -> StoreOutageError:
    """The error of ``what`` failing on the store at ``url`` for ``timeout`` seconds."""
    return StoreOutageError(
        f"the store at {url} failed to {what} for {timeout:g} s",
        expected="a reachable store",
        received=f"{type(error).__name__}: {error}"[:500],
        fix=(
            "check the endpoint and credentials; the driver runs the trial again elsewhere; "
            "raise morphml.store-outage-timeout to wait longer"
        ),
    )
