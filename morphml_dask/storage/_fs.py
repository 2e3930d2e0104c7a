"""One experiment URL on any fsspec filesystem, and all-or-nothing writes to it."""

from __future__ import annotations

import difflib
import inspect
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from morphml_dask.exceptions import StorageInputError

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

    Raises
    ------
    StorageInputError
        For a URL or options that cannot be used (see `open_store`).
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        if not isinstance(url, str) or not url.strip() or url != url.strip():
            raise StorageInputError(
                "invalid store URL",
                expected="a path or fsspec URL such as ./runs/my-search or s3://bucket/prefix, "
                "without surrounding spaces",
                received=repr(url),
                fix="pass the experiment's location as a string, e.g. './runs/my-search'",
            )
        options = _check_options(storage_options)
        try:
            fs, root = fsspec.core.url_to_fs(url, **options)
        except (ImportError, ValueError, TypeError) as error:
            raise StorageInputError(
                f"cannot open the store at {url!r}",
                expected="a URL whose protocol is installed (s3:// needs s3fs) and valid options",
                received=f"{type(error).__name__}: {error}",
                fix="install the protocol's package (pip install 'morphml_dask[s3]') "
                "and check storage_options",
            ) from error
        if _S3_PROTOCOLS & set(_protocols(fs)) and "::" not in url:
            _check_s3(url, root, options, type(fs))
        self.url = url
        self.storage_options = options
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


_S3_PROTOCOLS = {"s3", "s3a"}
# The s3fs settings that must have one type (None always allowed: s3fs's default).
_S3_TYPES: dict[str, tuple[type, str]] = {
    **dict.fromkeys(
        ("key", "secret", "token", "endpoint_url", "username", "password"), (str, "a string")
    ),
    **dict.fromkeys(
        ("anon", "use_ssl", "requester_pays", "version_aware"), (bool, "true or false")
    ),
    **dict.fromkeys(
        ("client_kwargs", "config_kwargs", "s3_additional_kwargs"), (Mapping, "a mapping")
    ),
}


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _check_options(storage_options: object) -> dict[str, Any]:
    """The options as a dict with string keys; never shows their values (secrets)."""
    if storage_options is None:
        return {}
    if not isinstance(storage_options, Mapping):
        raise StorageInputError(
            "invalid storage_options",
            expected="None or a mapping of fsspec options, e.g. {'anon': True} or "
            "{'key': ..., 'secret': ..., 'endpoint_url': ...}",
            received=f"a value of type {type(storage_options).__name__}",
            fix="pass storage_options as a dict of option names to values",
        )
    bad = [k for k in storage_options if not isinstance(k, str)]
    if bad:
        raise StorageInputError(
            "storage_options has names that are not strings",
            expected="option names as strings, e.g. 'key', 'secret', 'endpoint_url'",
            received=f"names {[repr(k) for k in bad]}"[:300],
            fix="write every option name as a string",
        )
    return dict(storage_options)


def _check_s3(url: str, root: str, options: dict[str, Any], fs_class: type) -> None:
    """s3fs accepts any option and wrong types at once, and fails at the first request
    (a typo of ``endpoint_url`` even silently talks to AWS): catch both before."""
    if not root.strip("/"):
        raise StorageInputError(
            f"the store URL {url!r} names no bucket",
            expected="s3://bucket/prefix",
            received=repr(url),
            fix="add the bucket and a prefix, e.g. s3://my-bucket/runs/my-search",
        )
    _check_s3_names(options, fs_class)
    for name, (kind, what) in _S3_TYPES.items():
        value = options.get(name)
        if value is not None and not isinstance(value, kind):
            raise StorageInputError(
                f"invalid S3 storage option {name}",
                expected=what,
                received=f"a value of type {type(value).__name__}",  # not the value: a secret?
                fix=f"set storage_options[{name!r}] to {what}",
            )
    # s3fs reads username and password as aliases of key and secret.
    has_key = options.get("key") is not None or options.get("username") is not None
    has_secret = options.get("secret") is not None or options.get("password") is not None
    if has_key != has_secret:
        given, missing = ("key", "secret") if has_key else ("secret", "key")
        raise StorageInputError(
            "incomplete S3 credentials",
            expected="both key and secret, or neither (credentials from the environment)",
            received=f"a {given} without a {missing}",
            fix=f"add storage_options[{missing!r}], or remove {given!r} and let s3fs find "
            "credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws/credentials)",
        )


def _check_s3_names(options: dict[str, Any], fs_class: type) -> None:
    # s3fs passes names it does not know to fsspec, which ignores them.
    known = {"skip_instance_cache", "use_listings_cache", "listings_expiry_time", "max_paths"}
    for cls in fs_class.__mro__:
        if "__init__" in vars(cls):
            params = inspect.signature(vars(cls)["__init__"]).parameters.values()
            known |= {p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD}
    unknown = sorted(set(options) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        raise StorageInputError(
            "unknown S3 storage option",
            expected=f"options of s3fs.S3FileSystem, e.g. {sorted(_S3_TYPES)}",
            received=f"{unknown}",
            fix=f"rename {unknown[0]} to {close[0]}" if close else f"remove {unknown}",
        )


def new_part_name(suffix: str) -> str:
    """A name that sorts by creation time and never collides across processes."""
    return f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}{suffix}"
