"""What ``gpus_per_trial`` means, in one place: whole GPUs, or a share of one.

- ``0``: the trial runs on the CPU and asks Dask for no resource.
- A whole number ``n >= 1``: the trial gets ``n`` GPUs of its own (``ctx.devices``) and asks
  Dask for ``resources={"GPU": n}``.
- A fraction ``f`` from 0.001 to 1: ``k = floor(1/f)`` trials share one GPU at once (0.5: 2,
  0.25: 4, 0.3: 3), each on a CUDA stream of its own. A trial asks Dask for ``1/k`` of a
  ``GPU`` resource, rounded down to a multiple of 2**-30, so that Dask's own float
  arithmetic runs exactly ``k`` such trials on a GPU (ten requests of ``0.1`` do not fit in
  ``1.0`` as floats, ten of ``0.1 - 2e-11`` do).

The driver (queue sizing, submission), the workers (the device pool) and the cluster helpers
(whole GPUs per worker) all go through these functions, so that they cannot disagree.

Pure: it imports neither torch nor Dask.

Examples
--------
>>> trials_per_gpu(0.25), gpu_request(0.25), gpus_per_worker(0.25)
(4, 0.25, 1)
>>> trial_slots(1.0, 0.3), trial_slots(2, 0.3), trial_slots(4, 2)
(3, 6, 2)
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

from morphml_dask.exceptions import InputError
from morphml_dask.validation import check_number, invalid

__all__ = [
    "MIN_SHARE",
    "check_gpus_per_trial",
    "gpu_request",
    "gpus_per_worker",
    "trial_slots",
    "trials_per_gpu",
    "visible_device_ids",
]

# The smallest share of a GPU: at most a thousand trials on one GPU.
MIN_SHARE = 0.001
# Requests are multiples of 1/_GRAIN, so that Dask adds and subtracts them without rounding.
_GRAIN = 2**30
# How far below a whole number 1/f may come out and still count as it.
_TOLERANCE = 1e-9
_EXPECTED = (
    "0 (CPU), a share of one GPU from 0.001 to 1 (0.5: two trials per GPU), or a whole "
    "number of GPUs (2, 4)"
)


def check_gpus_per_trial(
    value: object, *, name: str = "gpus_per_trial", error: type[InputError] = InputError
) -> float:
    """``value`` as a float, if it is a valid ``gpus_per_trial``; else ``error``.

    Valid: 0, a fraction from `MIN_SHARE` to 1, or a whole number of GPUs above 1.

    Examples
    --------
    >>> check_gpus_per_trial(0.5), check_gpus_per_trial(2)
    (0.5, 2.0)
    """
    number = check_number(name, value, low=0, error=error)
    if number.is_integer() or MIN_SHARE <= number < 1:
        return number
    if number < MIN_SHARE:
        fix = f"set {name} to {MIN_SHARE} or more: at most 1000 trials share one GPU"
    else:
        low, high = math.floor(number), math.ceil(number)
        fix = (
            f"set {name} to {low} ({'one GPU' if low == 1 else f'{low} GPUs'} each) or "
            f"{high} ({high} GPUs each), or to 0.5 to share a GPU between two trials"
        )
    raise invalid(error, name, value, expected=_EXPECTED, fix=fix)


def trials_per_gpu(gpus_per_trial: float) -> int:
    """How many trials run on one GPU at once: ``floor(1/f)`` for a share ``f`` below 1,
    1 for whole GPUs, 0 for CPU trials."""
    if gpus_per_trial <= 0:
        return 0
    if gpus_per_trial >= 1:
        return 1
    # 1/3 and 1/11 written as floats are a hair off: 1 / (1/11) is 10.999999999999998.
    return math.floor(1 / gpus_per_trial + _TOLERANCE)


def gpu_request(gpus_per_trial: float) -> float:
    """The ``GPU`` resource a trial asks Dask for: ``n`` for whole GPUs, ``1/k`` of one
    (rounded down to a multiple of 2**-30) for a share, 0 for CPU trials."""
    if gpus_per_trial <= 0:
        return 0.0
    if gpus_per_trial >= 1:
        return float(math.floor(gpus_per_trial))
    return (_GRAIN // trials_per_gpu(gpus_per_trial)) / _GRAIN


def trial_slots(gpu_resources: float, gpus_per_trial: float) -> int:
    """How many trials of ``gpus_per_trial`` a worker offering ``gpu_resources`` Dask ``GPU``
    resources runs at once, as Dask counts: ``floor(resources / request)``, exactly."""
    request = gpu_request(gpus_per_trial)
    if request <= 0 or gpu_resources <= 0:
        return 0
    return math.floor(Fraction(gpu_resources) / Fraction(request))


def gpus_per_worker(gpus_per_trial: float) -> int:
    """Whole GPUs a cluster helper asks SLURM or Kubernetes for per worker:
    ``ceil(gpus_per_trial)``, never a fraction."""
    return math.ceil(gpus_per_trial) if gpus_per_trial > 0 else 0


def visible_device_ids(count: int | None = None) -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them.

    Parameters
    ----------
    count
        How many GPUs there are when ``CUDA_VISIBLE_DEVICES`` is not set: ids ``0`` to
        ``count - 1``. None: only what the variable lists.

    Returns
    -------
    list of str
        The entries of ``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-<uuid>``), or
        ``["0", ..., str(count - 1)]`` when it is not set; empty when it is set but empty.
    """
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(index) for index in range(count or 0)]
    return [entry.strip() for entry in listed.split(",") if entry.strip()]
