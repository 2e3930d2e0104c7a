"""The small checks every constructor shares: integers, numbers, choices, lists, plain data.

Each check returns the value it accepts, normalized (``numpy.int64(3)`` becomes ``3``), or
raises the caller's `InputError` subclass with what was expected, what was received (its
repr and type) and how to fix it. The error records the setting at fault, e.g.
``"population_size"`` or ``"widths[1]"``; `key_of` reads it back, so that an experiment
document can report ``optimizer.population_size`` for the same error.

Pure: imported by `morphml_dask.space` and `morphml_dask.optim`, so it imports neither
torch, Dask nor fsspec.

Examples
--------
>>> from morphml_dask.exceptions import OptimizerError
>>> check_int("eta", 3, low=2, error=OptimizerError)
3
>>> try:
...     check_int("eta", 1.5, low=2, error=OptimizerError)
... except OptimizerError as error:
...     print(error)
...     print(key_of(error))
invalid eta
  expected: an integer >= 2
  received: 1.5 (float)
  fix: set eta to an integer >= 2
eta
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard, TypeVar

from morphml_dask.exceptions import InputError

__all__ = [
    "check_bool",
    "check_choice",
    "check_int",
    "check_items",
    "check_json",
    "check_number",
    "check_options",
    "check_string",
    "describe",
    "invalid",
    "is_int",
    "is_number",
    "key_of",
    "key_text",
    "short_repr",
]

E = TypeVar("E", bound=InputError)
T = TypeVar("T")

# Counts beyond this fit no JSON reader, no Parquet column and no realistic search.
INT_LIMIT = 2**64
_TEXT_NUMBER_HINT = "; YAML reads numbers like 1e-3 as text, write 1.0e-3"


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an integer (Python's or NumPy's), and not a bool.

    ``True`` is an ``int`` to Python, but ``population_size=True`` is always a mistake.
    NumPy integers count as ``int`` for the type checker too; keep ``int(value)``, not the
    value itself, where it is stored or written to JSON.
    """
    kind = type(value)
    if kind is int:  # the common case, without the slower abstract-class check
        return True
    return kind is not bool and isinstance(value, numbers.Integral)


def is_number(value: object) -> TypeGuard[float]:
    """Whether ``value`` is a finite real number (integers included), and not a bool."""
    if type(value) is float:  # the common case, without the slower abstract-class check
        return math.isfinite(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond the floats
        return False


def short_repr(value: object) -> str:
    """``repr(value)`` cut to 80 characters; never fails (Python refuses to print huge
    integers)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__} too long to print>"
    return f"{text[:77]}..." if len(text) > 80 else text


def describe(value: object) -> str:
    """``value`` as an error shows it: its short repr and its type, e.g. ``'8' (str)``."""
    return f"{short_repr(value)} ({type(value).__name__})"


def key_of(error: BaseException) -> str | None:
    """The setting an error of these checks is about (``"widths[1]"``), or None."""
    key = getattr(error, "key", None)
    return key if isinstance(key, str) else None


def invalid(
    error: type[E],
    name: str,
    value: object,
    *,
    expected: str,
    fix: str | None = None,
    owner: str = "",
    problem: str | None = None,
) -> E:
    """The error for setting ``name`` given ``value``, with ``name`` recorded on it.

    Parameters
    ----------
    error
        The `InputError` subclass to build, e.g. `OptimizerError`.
    name
        The setting, as its caller names it (``"sample_size"``, ``"objectives[0]"``).
    value
        What was received.
    expected
        What the setting must be.
    fix
        How to put it right; by default ``set <name> to <expected>``. In a fix that starts
        with ``set <name>``, `morphml_dask.experiment.load_experiment` puts the key path
        (``optimizer.<name>``) in place of the name.
    owner
        Who owns the setting, for the problem line: ``"DagSpace"`` gives
        ``invalid DagSpace setting ops``.
    problem
        The problem line, where ``invalid <name>`` says too little.
    """
    if fix is None:
        fix = f"set {name} to {expected}"
    if problem is None:
        problem = f"invalid {owner} setting {name}" if owner else f"invalid {name}"
    return error(problem, expected=expected, received=describe(value), fix=fix, key=name)


def _bounds(low: float | None, high: float | None, *, strict_low: bool = False) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" {'>' if strict_low else '>='} {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def _text_number(value: object) -> bool:
    if not isinstance(value, str):
        return False
    with contextlib.suppress(ValueError):
        float(value)
        return True
    return False


def _numeric_fix(name: str, value: object, expected: str, fix: str | None) -> str:
    text = f"set {name} to {expected}" if fix is None else fix
    return text + _TEXT_NUMBER_HINT if _text_number(value) else text


def check_int(
    name: str,
    value: object,
    *,
    low: int | None = None,
    high: int | None = None,
    error: type[InputError] = InputError,
    expected: str | None = None,
    fix: str | None = None,
    owner: str = "",
) -> int:
    """``value`` as an ``int``, if it is an integer from ``low`` to ``high`` (each optional).

    ``expected`` replaces the generated ``an integer >= 2`` where the setting needs more
    words; values of 2**64 or more are refused whatever the bounds.
    """
    wanted = expected or f"an integer{_bounds(low, high)}"
    if not is_int(value):
        raise invalid(
            error,
            name,
            value,
            expected=wanted,
            fix=_numeric_fix(name, value, wanted, fix),
            owner=owner,
        )
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise invalid(error, name, value, expected=wanted, fix=fix, owner=owner)
    if number >= INT_LIMIT:
        raise invalid(error, name, value, expected=f"{wanted}, below 2**64", fix=fix, owner=owner)
    return number


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    strict_low: bool = False,
    error: type[InputError] = InputError,
    expected: str | None = None,
    fix: str | None = None,
    owner: str = "",
) -> float:
    """``value`` as a ``float``, if it is a finite number from ``low`` to ``high``.

    ``strict_low`` excludes ``low`` itself (a learning rate is ``> 0``).
    """
    finite = "" if low is not None and high is not None else " (finite)"
    wanted = expected or f"a number{_bounds(low, high, strict_low=strict_low)}{finite}"
    number = float(value) if is_number(value) else math.nan
    above = low is None or (number > low if strict_low else number >= low)
    if math.isnan(number) or not above or (high is not None and number > high):
        raise invalid(
            error,
            name,
            value,
            expected=wanted,
            fix=_numeric_fix(name, value, wanted, fix),
            owner=owner,
        )
    return number


def check_choice(
    name: str,
    value: object,
    choices: Sequence[str],
    *,
    error: type[InputError] = InputError,
    expected: str | None = None,
    fix: str | None = None,
    owner: str = "",
) -> str:
    """``value``, if it is one of the strings ``choices``."""
    if not (isinstance(value, str) and value in choices):
        wanted = expected or f"one of {list(choices)}"
        fix = fix or f"set {name} to one of {list(choices)}"
        raise invalid(error, name, value, expected=wanted, fix=fix, owner=owner)
    return value


def check_string(
    name: str,
    value: object,
    *,
    error: type[InputError] = InputError,
    fix: str | None = None,
    owner: str = "",
) -> str:
    """``value``, if it is a non-empty string."""
    if not (isinstance(value, str) and value):
        raise invalid(error, name, value, expected="a non-empty string", fix=fix, owner=owner)
    return value


def check_bool(
    name: str,
    value: object,
    *,
    error: type[InputError] = InputError,
    fix: str | None = None,
    owner: str = "",
) -> bool:
    """``value``, if it is ``True`` or ``False`` (not 0 or 1)."""
    if not isinstance(value, bool):
        raise invalid(error, name, value, expected="True or False", fix=fix, owner=owner)
    return value


def check_items(
    name: str,
    value: object,
    check_item: Callable[[str, object], T],
    *,
    what: str,
    error: type[InputError] = InputError,
    fix: str | None = None,
    owner: str = "",
) -> tuple[T, ...]:
    """The items of a non-empty list or tuple, each checked by ``check_item(key, item)``
    under its own key, ``name[i]``.

    ``what`` names the items for the message: ``a non-empty list of <what>``.
    """
    if not isinstance(value, list | tuple) or not value:
        raise invalid(
            error, name, value, expected=f"a non-empty list of {what}", fix=fix, owner=owner
        )
    return tuple(check_item(f"{name}[{i}]", item) for i, item in enumerate(value))


def key_text(key: object) -> str:
    """A mapping key as it reads in a key path: plain strings as they are, else a repr."""
    plain = isinstance(key, str) and key != "" and key.strip() == key
    return key if isinstance(key, str) and plain else short_repr(key)


def check_json(name: str, value: object, *, error: type[InputError] = InputError) -> Any:
    """A JSON-ready copy of ``value``: mappings with string keys, lists, text, finite numbers,
    booleans and None, tuples turned into lists and NumPy scalars into Python's."""
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise invalid(error, f"{name}.{key_text(key)}", key, expected="a string key")
        return {k: check_json(f"{name}.{k}", v, error=error) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [check_json(f"{name}[{i}]", v, error=error) for i, v in enumerate(value)]
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return check_int(name, value, low=-(2**63), high=INT_LIMIT - 1, error=error)
    if isinstance(value, numbers.Real):
        return check_number(name, value, error=error)
    raise invalid(
        error,
        name,
        value,
        expected="text, a finite number, true/false, null, a list or a mapping",
    )


def check_options(name: str, value: object, *, error: type[InputError] = InputError) -> Any:
    """fsspec storage options (credentials, endpoint): a mapping of plain data, copied.

    Only the names appear in errors about the mapping itself; a value is shown only when it
    is not plain data (a secret is text, which always is).
    """
    if not isinstance(value, Mapping):
        raise invalid(error, name, value, expected="a mapping of fsspec options, e.g. {anon: true}")
    return check_json(name, value, error=error)
