"""The operation vocabulary of architecture graphs, with the hyper-parameters each op takes.

Semantics shared by every model builder: a node sums its inputs, then applies its op.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from morphml_dask.exceptions import InvalidArchitectureError
from morphml_dask.validation import is_int

ParamValue = int | float | str | bool

KERNEL_SIZES = (1, 3, 5, 7)
MAX_CHANNELS = 4096


@dataclass(frozen=True)
class OpSpec:
    """What an op is and which hyper-parameters it takes.

    Attributes
    ----------
    name
        The op label used in graphs and JSON.
    params
        Allowed values per hyper-parameter; every listed parameter is required.
    kind
        ``"structural"`` (input/output), ``"zero"`` (outputs zeros), ``"identity"``
        (weightless pass-through of the summed inputs), ``"pool"`` (weightless and
        deterministic: two pools of one kind over the same inputs compute the same value) or
        ``"compute"`` (has trainable weights).
    """

    name: str
    params: dict[str, tuple[ParamValue, ...]] = field(default_factory=dict)
    kind: str = "compute"


_CHANNELS = tuple(range(1, MAX_CHANNELS + 1))

OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec("input", kind="structural"),
        OpSpec("output", kind="structural"),
        # NAS-Bench-201 ops (Dong & Yang, 2020): channel-preserving, stride 1.
        OpSpec("none", kind="zero"),
        OpSpec("skip_connect", kind="identity"),
        OpSpec("nor_conv_1x1"),
        OpSpec("nor_conv_3x3"),
        OpSpec("avg_pool_3x3", kind="pool"),
        # The join node of a cell: the sum of its inputs, nothing else.
        OpSpec("add", kind="identity"),
        # DAG CNN space ops.
        OpSpec("identity", kind="identity"),
        OpSpec("conv", {"kernel": KERNEL_SIZES, "channels": _CHANNELS}),
        OpSpec("sep_conv", {"kernel": KERNEL_SIZES, "channels": _CHANNELS}),
        OpSpec("max_pool", {"kernel": (3, 5)}, kind="pool"),
        OpSpec("avg_pool", {"kernel": (3, 5)}, kind="pool"),
    )
}


def check_op(name: str, params: dict[str, ParamValue]) -> None:
    """Raise `InvalidArchitectureError` unless ``name`` is a known op with valid params."""
    spec = OPS.get(name)
    if spec is None:
        raise InvalidArchitectureError(
            f"unknown op {name!r}",
            expected=f"one of {sorted(OPS)}",
            received=repr(name),
            fix="use one of the known op names (spelling and case matter)",
        )
    missing = sorted(set(spec.params) - set(params))
    extra = sorted(set(params) - set(spec.params))
    if missing or extra:
        raise InvalidArchitectureError(
            f"op {name!r} has the wrong hyper-parameters",
            expected=f"exactly {sorted(spec.params) or 'no parameters'}",
            received=f"{sorted(params) or 'no parameters'}",
            fix=f"give {name!r} the parameters {sorted(spec.params)} and nothing else",
        )
    for key, value in params.items():
        allowed = spec.params[key]
        # 3.0 == 3 would pass the membership test, yet label (and fingerprint) differently.
        if not is_int(value) or value not in allowed:
            shown = f"an integer in 1..{MAX_CHANNELS}" if allowed is _CHANNELS else str(allowed)
            raise InvalidArchitectureError(
                f"op {name!r} has an invalid {key!r}",
                expected=shown,
                received=repr(value),
                fix=f"set {key} of {name!r} to one of the allowed values",
            )
