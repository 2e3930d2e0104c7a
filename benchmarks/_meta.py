"""What every benchmark shares: the versions of the packages it used, and how it writes JSON."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["versions", "write_json"]


def versions(*names: str) -> dict[str, str]:
    """The installed versions of ``names``, and Python's."""
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def write_json(path: Path, document: Any, **options: Any) -> None:
    """Write ``document`` to ``path`` as JSON ending in a newline, making its folder;
    ``options`` go to `json.dumps` (``indent=1`` unless given)."""
    options.setdefault("indent", 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, **options) + "\n", encoding="utf-8")
