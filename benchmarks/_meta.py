"""What every benchmark writes about where it ran: the versions of the packages it used."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["versions"]


def versions(*names: str) -> dict[str, str]:
    """The installed versions of ``names``, and Python's."""
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
