"""Limits on what a candidate costs (parameters, FLOPs, latency, memory), checked on the
freshly built model before it trains: one above a limit is rejected, not trained."""

from __future__ import annotations

from collections.abc import Mapping

from morphml_dask.exceptions import CandidateRejected, TaskError
from morphml_dask.tasks._proxy import PROXY_NAMES
from morphml_dask.validation import is_number, short_repr

__all__ = ["check_limits", "within_limits"]


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
