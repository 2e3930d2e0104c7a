"""Keeping credentials out of what morphml_dask writes down.

Storage options carry secrets (``key``, ``secret``, ``token``, an ``Authorization`` header)
next to settings that are safe to keep (``endpoint_url``, ``anon``). Checkpoints save the
experiment document so that ``morphml resume`` can rebuild the search; before they do, every
mapping under a ``storage_options`` key loses its secret entries. A resumed search gets its
credentials where fsspec looks for them anyway: environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``), credential files, or ``--storage-options`` on the command line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["is_credential", "without_credentials"]

# Substrings of option names that hold secrets across fsspec backends: s3fs (key, secret,
# token, aws_*_key_id), gcsfs (token), adlfs (account_key, sas_token, connection_string,
# client_secret, credential), http (headers.Authorization, password).
_SECRET = re.compile(r"key|secret|token|passw|credential|authori|connection_string|sas", re.I)
_OPTIONS = "storage_options"


def is_credential(name: str) -> bool:
    """Whether an option named ``name`` may hold a secret."""
    return bool(_SECRET.search(name))


def without_credentials(document: Any, *, inside_options: bool = False) -> Any:
    """A copy of ``document`` in which every mapping under a ``storage_options`` key (at
    any depth) lacks the entries whose names may hold secrets."""
    if isinstance(document, Mapping):
        return {
            key: without_credentials(value, inside_options=inside_options or key == _OPTIONS)
            for key, value in document.items()
            if not (inside_options and isinstance(key, str) and is_credential(key))
        }
    if isinstance(document, list | tuple):
        return [without_credentials(v, inside_options=inside_options) for v in document]
    return document
