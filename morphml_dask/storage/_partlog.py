"""The append-only part log that the trials table and the learning curves are built on.

A log is a folder of immutable parts, each holding a batch of trials keyed by trial id. The log
knows how parts are named, committed, listed, read, merged and deleted; a `PartCodec` knows
what is inside one (Parquet rows for the trials table, Zarr arrays for the curves).

Two part shapes exist, and a codec says which it writes:

- **a file** (``part-<time>-<id>.parquet``): written whole or not at all
  (`Location.write_atomic`), so the file is its own commit;
- **a folder** (``part-<time>-<id>.zarr/``): its files are uploaded first, then a marker
  ``<part>.commit`` is written whole; a folder without its marker is an interrupted (or running)
  write that readers ignore and `PartLog.compact` deletes once it is old.

Part names sort by creation time, so sorted names give write order. The rules every reader and
writer of a log follows:

- **exactly once by trial id**: an append skips the ids the log holds (one instance also skips
  ids it is writing at that moment). Two processes appending one id at the same moment can both
  store it (nothing locks an object store); reads keep its first occurrence in part order;
- **compaction is invisible**: the merged part is committed before any old part is deleted,
  and a folder part's marker is deleted before its files, so a reader always finds each trial
  in at least one committed part;
- **a part that vanishes mid-read was compacted**: its trials are in a newer part, so list
  again, up to `ATTEMPTS` times.
"""

from __future__ import annotations

import abc
import re
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from morphml_dask.storage._fs import new_part_name
from morphml_dask.storage._idset import TrialIdSet

if TYPE_CHECKING:
    from morphml_dask.exceptions import StorageError
    from morphml_dask.storage._fs import Location

__all__ = [
    "ATTEMPTS",
    "LEFTOVER_AGE_S",
    "MARKER",
    "PART_FILE",
    "PartCodec",
    "PartLog",
    "first_occurrences",
]

ATTEMPTS = 8
"""Reads of a log retried when parts vanish under them (another process compacting)."""

LEFTOVER_AGE_S = 3600.0
"""Uncommitted writes younger than this are left alone by `PartLog.compact`: they may belong
to an append still running."""

MARKER = ".commit"
"""The suffix of a folder part's commit marker."""

PART_FILE = ""
"""The key of a file part's only entry in `PartCodec.encode`'s mapping."""

ItemT = TypeVar("ItemT")
BlockT = TypeVar("BlockT")


class PartCodec(abc.ABC, Generic[ItemT, BlockT]):
    """What one kind of part holds, and how it is encoded.

    ``ItemT`` is what an append stores per trial id (a validated row, a validated curve);
    ``BlockT`` is the decoded content of one or more parts (a Parquet table, curve arrays).
    """

    suffix: ClassVar[str]
    """How part names end, e.g. ``".parquet"``."""

    folder: ClassVar[bool]
    """True when a part is a folder of files committed by a marker beside it."""

    @abc.abstractmethod
    def build(self, items: Mapping[str, ItemT]) -> BlockT:
        """The block of a batch of trials, in the order given."""

    @abc.abstractmethod
    def encode(self, block: BlockT) -> dict[str, bytes]:
        """The files of a part: ``{PART_FILE: data}`` for a file part, else keys under the
        part's folder."""

    @abc.abstractmethod
    def decode(self, name: str, files: Mapping[str, bytes]) -> BlockT:
        """The block of part ``name`` from what `encode` wrote.

        Raises `FileNotFoundError` when files are missing (deleted since listed).
        """

    @abc.abstractmethod
    def committed_ids(self, name: str, data: bytes) -> list[str]:
        """The trial ids of part ``name``, from its commit file: the part itself for a file
        part, its marker for a folder part."""

    @abc.abstractmethod
    def ids(self, block: BlockT) -> list[str]:
        """The trial id of each row of ``block``, in order."""

    @abc.abstractmethod
    def concat(self, blocks: Sequence[BlockT]) -> BlockT:
        """The blocks one after the other (an empty block for none)."""

    @abc.abstractmethod
    def take(self, block: BlockT, rows: Sequence[int]) -> BlockT:
        """The rows ``rows`` of ``block``, in that order."""

    @abc.abstractmethod
    def vanishing(self, url: str, attempts: int) -> StorageError:
        """The error when parts kept vanishing during ``attempts`` reads of the log at ``url``."""

    def marker(self, name: str, ids: Sequence[str]) -> bytes:
        """The commit marker of folder part ``name``, holding ``ids``."""
        raise NotImplementedError(f"{type(self).__name__} writes file parts, without markers")

    def wanted(self, key: str) -> bool:
        """Whether a folder part's file ``key`` is needed to decode it."""
        return True


class PartLog(Generic[ItemT, BlockT]):
    """An append-only, exactly-once-by-id log of immutable parts under ``location/folder``.

    Parameters
    ----------
    location
        The experiment.
    folder
        The log's folder under it, e.g. ``"trials"``.
    codec
        What the parts hold.

    Notes
    -----
    One instance is safe to share between threads. It keeps in memory the ids it has indexed
    and the parts it has decoded (parts never change), and reads only parts that appeared
    since: the ids of a new part from its commit file, its content once for `read`.
    """

    def __init__(self, location: Location, folder: str, codec: PartCodec[ItemT, BlockT]) -> None:
        self.location = location
        self.folder = location.path(folder)
        self.codec = codec
        self._lock = threading.Lock()
        self._ids = TrialIdSet()
        self._indexed: set[str] = set()  # parts whose ids are in _ids
        self._writing: set[str] = set()  # ids this instance is appending right now
        self._blocks: dict[str, BlockT] = {}
        suffix = re.escape(codec.suffix)
        self._part_name = re.compile(rf"part-(\d{{20}})-[0-9a-f]+{suffix}")
        # What Location.write_atomic leaves of a write interrupted on a local disk.
        marker = re.escape(MARKER)
        self._temporary = re.compile(rf"part-(\d{{20}})-[0-9a-f]+{suffix}(?:{marker})?\.tmp-\w+")
        self._folder_file = re.compile(rf"/(part-\d{{20}}-[0-9a-f]+{suffix})/(.+)$")

    def __repr__(self) -> str:
        return f"PartLog({self._url()!r})"

    # -- listing -------------------------------------------------------------------------------

    def parts(self) -> list[str]:
        """Names of the committed parts, oldest first."""
        return self._committed(self._names())

    def ids(self) -> set[str]:
        """The trial ids stored."""
        with self._lock:
            self._refresh()
            return set(self._ids)

    # -- writing -------------------------------------------------------------------------------

    def append(self, items: Mapping[str, ItemT]) -> int:
        """Store the items whose trial id is new, as one part; return how many were written.

        ``items`` must be validated: the codec builds the part without checking. Nothing is
        written when every id is stored already.
        """
        with self._lock:
            self._refresh()
            fresh = {
                trial_id: item
                for trial_id, item in items.items()
                if trial_id not in self._ids and trial_id not in self._writing
            }
            self._writing.update(fresh)
        if not fresh:
            return 0
        try:
            name = self._write(self.codec.build(fresh))
            with self._lock:
                self._ids.update(fresh)
                self._indexed.add(name)
        finally:
            with self._lock:
                self._writing.difference_update(fresh)
        return len(fresh)

    def compact(self, leftover_age: float = LEFTOVER_AGE_S) -> int:
        """Merge the committed parts into one, then delete them and old uncommitted writes.

        Parameters
        ----------
        leftover_age
            Uncommitted writes younger than this many seconds are kept: they may belong to an
            append still running. Pass 0 only when no append is running.

        Returns
        -------
        int
            How many parts were removed, committed and uncommitted (temporary files of
            interrupted commits are deleted too, and not counted).
        """
        names_before = self._names()
        parts, block = self.snapshot()
        removed = 0
        if len(parts) > 1:
            merged = self._write(block)
            with self._lock:
                self._indexed.add(merged)
            # Commit files first: from then on no reader opens a part that is being deleted.
            self._delete([self._commit_path(name) for name in parts])
            if self.codec.folder:
                self._delete([self._path(name) for name in parts])
            removed = len(parts)
        return removed + self._delete_leftovers(names_before, set(parts), leftover_age)

    # -- reading -------------------------------------------------------------------------------

    def read(self) -> BlockT:
        """Every stored trial once (its first occurrence), in write order."""
        return self.snapshot()[1]

    def snapshot(self) -> tuple[list[str], BlockT]:
        """The committed parts and their content, deduplicated, all read while every part was
        committed."""
        for attempt in range(ATTEMPTS):
            parts = self.parts()
            try:
                blocks = self._load(parts)
            except FileNotFoundError:
                _pause(attempt)  # a compaction deleted a part since the listing
                continue
            # A folder part's marker goes before its files: if every marker is still there,
            # every folder was whole while it was read.
            if self.codec.folder and not set(parts) <= set(self.parts()):
                _pause(attempt)
                continue
            with self._lock:
                for name, block in zip(parts, blocks, strict=True):
                    if name not in self._indexed:
                        self._ids.update(self.codec.ids(block))
                        self._indexed.add(name)
            merged = self.codec.concat(blocks)
            keep = first_occurrences(self.codec.ids(merged))
            return parts, merged if keep is None else self.codec.take(merged, keep)
        raise self.codec.vanishing(self._url(), ATTEMPTS)

    # -- internals -----------------------------------------------------------------------------

    def _url(self) -> str:
        return self.location.fs.unstrip_protocol(self.folder)  # type: ignore[no-any-return]

    def _path(self, name: str) -> str:
        return f"{self.folder}/{name}"

    def _commit_path(self, name: str) -> str:
        return self._path(name + MARKER if self.codec.folder else name)

    def _names(self) -> list[str]:
        """Names of everything in the folder, sorted."""
        return [path.rsplit("/", 1)[-1] for path in self.location.list(self.folder)]

    def _committed(self, names: list[str]) -> list[str]:
        if not self.codec.folder:
            return [name for name in names if name.endswith(self.codec.suffix)]
        return [
            name[: -len(MARKER)]
            for name in names
            if name.endswith(MARKER) and self._part_name.fullmatch(name[: -len(MARKER)])
        ]

    def _write(self, block: BlockT) -> str:
        """Write ``block`` as a new part and commit it; returns the part's name."""
        name = new_part_name(self.codec.suffix)
        files = self.codec.encode(block)
        if not self.codec.folder:
            self.location.write_atomic(self._path(name), files[PART_FILE])
            return name
        # All files in one batch: in parallel on object stores, where Zarr's own writer makes
        # about 120 requests in a row.
        blobs = {self._path(f"{name}/{key}"): data for key, data in files.items()}
        if self.location.is_local():
            for folder in {path.rsplit("/", 1)[0] for path in blobs}:
                self.location.fs.makedirs(folder, exist_ok=True)
        self.location.fs.pipe(blobs)
        marker = self.codec.marker(name, self.codec.ids(block))
        self.location.write_atomic(self._commit_path(name), marker)
        return name

    def _refresh(self) -> None:
        """Index the ids of the committed parts not indexed yet, from their commit files.

        Call with the lock held.
        """
        for attempt in range(ATTEMPTS):
            parts = self.parts()
            self._indexed.intersection_update(parts)
            new = [name for name in parts if name not in self._indexed]
            contents = self._fetch([self._commit_path(name) for name in new])
            for name in new:
                data = contents.get(self._commit_path(name))
                if data is not None:  # else compacted away since listed: ids in a newer part
                    self._ids.update(self.codec.committed_ids(name, data))
                    self._indexed.add(name)
            if len(contents) == len(new):
                return
            _pause(attempt)
        raise self.codec.vanishing(self._url(), ATTEMPTS)

    def _load(self, parts: list[str]) -> list[BlockT]:
        """The blocks of ``parts``, decoding only those not decoded before."""
        listed = set(parts)
        with self._lock:
            self._blocks = {name: b for name, b in self._blocks.items() if name in listed}
            known = dict(self._blocks)
        new = [name for name in parts if name not in known]
        if new:
            files = self._folder_files(new) if self.codec.folder else self._file_parts(new)
            decoded = {name: self.codec.decode(name, files[name]) for name in new}
            known.update(decoded)
            with self._lock:
                self._blocks.update(decoded)
        return [known[name] for name in parts]

    def _file_parts(self, names: list[str]) -> dict[str, dict[str, bytes]]:
        contents = self._fetch([self._path(name) for name in names])
        if len(contents) < len(names):
            raise FileNotFoundError(self.folder)  # deleted since listed
        return {name: {PART_FILE: contents[self._path(name)]} for name in names}

    def _folder_files(self, names: list[str]) -> dict[str, dict[str, bytes]]:
        """The files of folder parts: one listing and one batch of reads, whatever their
        number (opening each part's URL with xarray costs ~16 requests in a row per part)."""
        wanted = set(names)
        self.location.fs.invalidate_cache(self.folder)
        where: dict[str, tuple[str, str]] = {}
        for path in self.location.fs.find(self.folder):
            match = self._folder_file.search(str(path))
            if match and match.group(1) in wanted and self.codec.wanted(match.group(2)):
                where[str(path)] = (match.group(1), match.group(2))
        contents = self.location.fs.cat(list(where)) if where else {}
        files: dict[str, dict[str, bytes]] = {name: {} for name in names}
        for path, data in contents.items():
            name, key = where[str(path)]
            files[name][key] = data
        return files

    def _fetch(self, paths: list[str]) -> dict[str, bytes]:
        """The contents of ``paths`` (in parallel on object stores); missing files left out.

        Other errors (no permission, an outage) propagate as they are: the caller tells a
        store that cannot be written from one that is down for a while.
        """
        if not paths:
            return {}
        contents = self.location.fs.cat(paths, on_error="return")
        found: dict[str, bytes] = {}
        by_name = {str(path).rsplit("/", 1)[-1]: data for path, data in contents.items()}
        for path in paths:
            data = by_name.get(path.rsplit("/", 1)[-1])
            if isinstance(data, FileNotFoundError) or data is None:
                continue
            if isinstance(data, BaseException):
                raise data
            found[path] = data
        return found

    def _delete(self, paths: list[str]) -> None:
        if not paths:
            return
        try:
            self.location.fs.rm(paths, recursive=True)
        except FileNotFoundError:  # another compaction got there first
            for path in paths:
                with suppress(FileNotFoundError):
                    self.location.fs.rm(path, recursive=True)
        self.location.fs.invalidate_cache(self.folder)

    def _delete_leftovers(self, names: list[str], committed: set[str], age: float) -> int:
        """Delete uncommitted folder parts and commit temporaries older than ``age`` seconds;
        returns how many parts were deleted."""
        now = time.time_ns()

        def old(created: str) -> bool:
            return (now - int(created)) / 1e9 >= age

        listed = set(names)
        uncommitted = [
            name
            for name in names
            if self.codec.folder
            and (match := self._part_name.fullmatch(name))
            and name + MARKER not in listed
            and name not in committed
            and old(match.group(1))
        ]
        temporaries = [
            name for name in names if (match := self._temporary.fullmatch(name)) and old(match[1])
        ]
        if uncommitted:  # a part committed since the first listing is no leftover
            now_committed = set(self.parts())
            uncommitted = [name for name in uncommitted if name not in now_committed]
        self._delete([self._path(name) for name in uncommitted + temporaries])
        return len(uncommitted)


def first_occurrences(ids: Sequence[str]) -> list[int] | None:
    """The rows where each id first occurs, or None when every id occurs once."""
    seen: set[str] = set()
    keep: list[int] = []
    for row, trial_id in enumerate(ids):
        if trial_id not in seen:
            seen.add(trial_id)
            keep.append(row)
    return None if len(keep) == len(ids) else keep


def _pause(attempt: int) -> None:
    """Back off a little longer after each failed attempt, giving a compaction time to end."""
    time.sleep(0.05 * attempt)
