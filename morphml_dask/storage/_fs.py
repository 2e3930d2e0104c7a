"""One experiment URL on any fsspec filesystem, and all-or-nothing writes to it."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from morphml_dask.exceptions import StorageError

__all__ = ["Location", "new_part_name"]


class Location:
    """A folder under an fsspec URL: a local path, ``memory://...`` or ``s3://bucket/prefix``.

    Parameters
    ----------
    url
        Where the experiment lives.
    storage_options
        Passed to the filesystem, e.g. ``{"key": ..., "secret": ..., "endpoint_url": ...}``
        for S3 through s3fs.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        if not isinstance(url, str) or not url:
            raise StorageError(
                "invalid store URL",
                expected="a path or fsspec URL such as ./runs/my-search or s3://bucket/prefix",
                received=repr(url),
                fix="pass the experiment's location as a string",
            )
        try:
            fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except (ImportError, ValueError, TypeError) as error:
            raise StorageError(
                f"cannot open the store at {url!r}",
                expected="a URL whose protocol is installed (s3:// needs s3fs) and valid options",
                received=f"{type(error).__name__}: {error}",
                fix="install the protocol's package (pip install 'morphml_dask[s3]') "
                "and check storage_options",
            ) from error
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.fs = fs
        self.root = root.rstrip("/")

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def url_of(self, *parts: str) -> str:
        """A full URL (protocol included) for xarray and other fsspec users."""
        return self.fs.unstrip_protocol(self.path(*parts))  # type: ignore[no-any-return]

    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write ``data`` so that readers see the whole file or nothing.

        Locally: write a temporary file beside it, then rename (atomic on POSIX). Elsewhere
        a single PUT, which object stores and the memory filesystem apply whole.
        """
        parent = path.rsplit("/", 1)[0]
        if self.is_local():
            os.makedirs(parent, exist_ok=True)
            temporary = f"{path}.tmp-{uuid.uuid4().hex}"
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        else:
            self.fs.pipe_file(path, data)

    def read(self, path: str) -> bytes:
        return self.fs.cat_file(path)  # type: ignore[no-any-return]

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def list(self, folder: str, suffix: str = "") -> list[str]:
        """Paths directly in ``folder`` ending with ``suffix``, sorted; [] if absent."""
        self.fs.invalidate_cache(folder)
        try:
            names = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(n).rstrip("/") for n in names if str(n).rstrip("/").endswith(suffix))


def new_part_name(suffix: str) -> str:
    """A name that sorts by creation time and never collides across processes."""
    return f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}{suffix}"
