"""Model size and compute: parameter counts and FLOPs of a forward pass."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from morphml_dask.exceptions import ModelBuildError

__all__ = ["count_flops", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    """The number of parameter values of ``model``.

    Parameters
    ----------
    model
        Any module.

    Returns
    -------
    int
        The sum of ``numel()`` over ``model.parameters()``, each shared parameter once.
        BatchNorm running statistics are buffers and are not counted. Frozen parameters
        (``requires_grad=False``) are counted, as NAS-Bench-201's ``model_size`` counts
        every parameter (it reports this number divided by 1e6).
    """
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The floating-point operations of one forward pass on an input of ``input_shape``.

    Parameters
    ----------
    model
        Any module taking one tensor.
    input_shape
        The input's shape, batch dimension included, e.g. ``(1, 3, 32, 32)``.

    Returns
    -------
    int
        FLOPs as `torch.utils.flop_counter.FlopCounterMode` counts them: a multiply-add is
        two FLOPs (twice the "FLOPs" NAS-Bench-201 reports, which are multiply-adds), and
        only matrix products and convolutions count, not BN, pooling or activations.

    Notes
    -----
    The pass runs on zeros in eval mode without gradients, so BatchNorm running statistics
    are left untouched; every submodule's training flag is restored afterwards.
    """
    if (
        not isinstance(input_shape, tuple)
        or not input_shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)
    ):
        raise ModelBuildError(
            "invalid input shape for count_flops",
            expected="a non-empty tuple of positive ints, batch first, e.g. (1, 3, 32, 32)",
            received=repr(input_shape),
            fix="pass the shape of one input batch as a tuple, e.g. count_flops(model, "
            "(1, 3, 32, 32))",
        )
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    modes = [(module, module.training) for module in model.modules()]
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(torch.zeros(input_shape, device=device, dtype=dtype))
    finally:
        for module, training in modes:
            module.training = training
    return int(counter.get_total_flops())
