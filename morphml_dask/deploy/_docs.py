"""Parameter blocks written once and put into several docstrings, as dask-jobqueue does
with its ``job_parameters``: the deploy helpers share long numpydoc parameter lists."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import TypeVar

__all__ = ["with_parameters"]

_Function = TypeVar("_Function", bound=Callable[..., object])
_MARKER = "{parameters}"


def with_parameters(*blocks: str) -> Callable[[_Function], _Function]:
    """Put ``blocks`` (numpydoc parameter entries, in order) in place of the line
    ``{parameters}`` of the decorated function's docstring, indented as that line.

    Raises
    ------
    TypeError
        When the docstring has no ``{parameters}`` line: a block would be lost.
    """
    text = "\n".join(textwrap.dedent(block).strip("\n") for block in blocks)

    def fill(function: _Function) -> _Function:
        doc = function.__doc__ or ""
        marker = re.search(rf"^([ \t]*){re.escape(_MARKER)}[ \t]*$", doc, flags=re.MULTILINE)
        if marker is None:
            raise TypeError(
                f"the docstring of {function.__qualname__} has no {_MARKER} line: expected "
                f"a line '{_MARKER}' under its Parameters heading, received none; add it"
            )
        filled = textwrap.indent(text, marker.group(1))
        function.__doc__ = doc[: marker.start()] + filled + doc[marker.end() :]
        return function

    return fill
