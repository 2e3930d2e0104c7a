"""What a task may measure of a candidate (the zero-cost proxies, by name) and limits on
what it costs (parameters, FLOPs, latency, memory), checked on the freshly built model before
it trains: one above a limit is rejected, not trained. Torch-free, so that settings are
checked where the models are not built."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from morphml_dask.exceptions import CandidateRejected, TaskError
from morphml_dask.validation import invalid, is_number, short_repr

__all__ = ["PROXY_NAMES", "check_limits", "check_proxies", "within_limits"]

PROXY_NAMES = (
    "synflow",
    "params",
    "flops",
    "latency_ms",
    "peak_memory_mb",
    "jacob_cov",
    "naswot",
    "snip",
    "grad_norm",
)
"""The names of `morphml_dask.models.PROXIES`, spelled out so that settings are checked
without importing torch (a test pins the two equal)."""


def check_proxies(proxies: object, *, allow_empty: bool) -> tuple[str, ...]:
    """The proxy names of a ``proxies`` setting (a list, or one name), duplicates dropped.

    Raises
    ------
    TaskError
        For a value that is no list of names, an empty one unless ``allow_empty``, or a
        name that is not in `morphml_dask.models.PROXIES`.
    """
    names = [proxies] if isinstance(proxies, str) else proxies
    if not isinstance(names, list | tuple) or not (names or allow_empty):
        raise invalid(
            TaskError,
            "proxies",
            proxies,
            expected=f"a {'' if allow_empty else 'non-empty '}list of names from "
            f"{list(PROXY_NAMES)}",
            fix="set proxies to e.g. [synflow, params]",
        )
    for index, name in enumerate(names):
        if not (isinstance(name, str) and name in PROXY_NAMES):
            close = difflib.get_close_matches(str(name), PROXY_NAMES, n=1)
            raise TaskError(
                "unknown zero-cost proxy",
                expected=f"names from morphml_dask.models.PROXIES: {list(PROXY_NAMES)}",
                received=f"{short_repr(name)} (proxies[{index}])",
                fix=f"replace it with {close[0]!r}" if close else "pick names from that list",
                key=f"proxies[{index}]",
            )
    return tuple(dict.fromkeys(names))


def check_limits(limits: object) -> dict[str, float]:
    """The ``limits`` setting as ``{proxy name: upper bound}``.

    Raises
    ------
    TaskError
        For a value that is not a mapping, a name that is no zero-cost proxy, or a bound
        that is not a positive number.
    """
    if limits is None:
        return {}
    if not isinstance(limits, Mapping):
        raise TaskError(
            "limits must map measurements to upper bounds",
            expected="a mapping like {params: 1000000, latency_ms: 5}",
            received=short_repr(limits),
            fix="set limits to e.g. {params: 1000000}, or leave it out",
        )
    bounds = {}
    for name, bound in limits.items():
        if name not in PROXY_NAMES:
            raise TaskError(
                f"no measurement called {short_repr(name)} to limit",
                expected=f"a limit on one of {list(PROXY_NAMES)}",
                received=f"limits[{short_repr(name)}]",
                fix="limit what a candidate costs: params, flops, latency_ms or peak_memory_mb",
            )
        if not (is_number(bound) and bound > 0):
            raise TaskError(
                f"the limit on {name} is not a positive number",
                expected="a number above 0",
                received=f"limits[{name!r}] = {short_repr(bound)}",
                fix=f"set limits[{name!r}] to the most a candidate may measure, e.g. 1e6",
            )
        bounds[str(name)] = float(bound)
    return bounds


def within_limits(
    measured: Mapping[str, float], limits: Mapping[str, float], metrics: dict[str, float]
) -> None:
    """Check ``measured`` (proxy name: value) against ``limits``.

    Raises
    ------
    CandidateRejected
        When one is above its limit, with ``metrics`` (what was measured) attached.
    """
    over = [
        f"{name} {measured[name]:.4g} > {bound:.4g}"
        for name, bound in limits.items()
        if measured[name] > bound
    ]
    if over:
        raise CandidateRejected(f"rejected before training: {', '.join(over)}", metrics)
