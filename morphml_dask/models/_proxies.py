"""Zero-cost proxies: scores of an untrained network, from one minibatch or from none.

Each proxy maps an ``nn.Module`` at initialisation to a float, higher meaning "predicted to
train better" for the accuracy proxies, and leaves the module exactly as it found it: weights,
buffers (BatchNorm statistics), gradients, ``requires_grad`` flags and every submodule's
training flag are restored.

Data-free: ``synflow`` (Tanaka et al., NeurIPS 2020; as a NAS proxy, Abdelfattah et al.,
ICLR 2021), ``params``, ``flops``, ``latency_ms`` and ``peak_memory_mb`` need only an input
shape. Data-dependent: ``jacob_cov`` and ``naswot`` (Mellor et al., ICML 2021), ``snip``
(Lee et al., ICLR 2019) and ``grad_norm`` (Abdelfattah et al.) need a batch of images, the last
two with labels. The gradient proxies sum over the weights of convolutional and linear layers,
as Abdelfattah et al. aggregate them.
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the name every torch user reads)
from torch import nn

from morphml_dask.exceptions import InputError
from morphml_dask.models._profile import count_flops, count_parameters
from morphml_dask.validation import is_int

__all__ = [
    "DATA_FREE_PROXIES",
    "PROXIES",
    "Batch",
    "Proxy",
    "flops",
    "grad_norm",
    "jacob_cov",
    "latency_ms",
    "naswot",
    "params",
    "peak_memory_mb",
    "score",
    "snip",
    "synflow",
]

Batch = tuple[torch.Tensor, torch.Tensor]
"""A minibatch: images ``(N, C, H, W)`` and their integer labels ``(N,)``."""

_WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)
# Mellor et al.'s and Abdelfattah et al.'s jacob_cov regulariser of the correlation spectrum.
_JACOB_COV_K = 1e-5
_MIB = 2**20


class Proxy(Protocol):
    """The signature every entry of `PROXIES` shares."""

    def __call__(
        self,
        model: nn.Module,
        batch: Batch | None = None,
        *,
        input_shape: tuple[int, ...] | None = None,
    ) -> float: ...


# -- keeping the model as it was -----------------------------------------------------------------


@contextlib.contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    """Run a block, then put back ``model``'s state, gradients, grad flags and modes."""
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    grads = [(p, p.grad, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        with torch.no_grad():
            current = model.state_dict(keep_vars=True)
            for key, value in state.items():
                current[key].copy_(value)
        for parameter, grad, requires_grad in grads:
            parameter.grad = grad
            parameter.requires_grad_(requires_grad)
        for module, training in modes:
            module.training = training


def _device(model: nn.Module) -> torch.device:
    reference = next(model.parameters(), None)
    return reference.device if reference is not None else torch.device("cpu")


def _weights(model: nn.Module) -> list[torch.nn.Parameter]:
    """The weights of the convolutional and linear layers, each shared one once."""
    seen: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, _WEIGHTED) and isinstance(weight, torch.nn.Parameter):
            seen.setdefault(id(weight), weight)
    return list(seen.values())


def _weight_gradients(model: nn.Module, batch: Batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(w, dL/dw)`` for each conv/linear weight: cross-entropy on ``batch``, train mode."""
    weights = _weights(model)
    for weight in weights:
        weight.requires_grad_(True)
    inputs, targets = _on_device(model, batch)
    model.train()
    loss = F.cross_entropy(model(inputs), targets)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [
        (w.detach(), torch.zeros_like(w) if g is None else g)
        for w, g in zip(weights, grads, strict=True)
    ]


def _on_device(model: nn.Module, batch: Batch) -> Batch:
    inputs, targets = batch
    device = _device(model)
    return inputs.to(device), targets.to(device)


# -- data-free proxies ---------------------------------------------------------------------------


def synflow(
    model: nn.Module, batch: Batch | None = None, *, input_shape: tuple[int, ...] | None = None
) -> float:
    """Synaptic flow: ``sum |theta * dR/dtheta|`` with ``R`` the sum of the output.

    The network is linearised as Tanaka et al. prescribe: every parameter replaced by its
    absolute value and the input by a single all-ones image, so that ``R`` sums the products of
    weights along all input-output paths. Only the shape of ``batch`` (or ``input_shape``) is used.

    Parameters
    ----------
    model
        The network, untouched: the proxy runs on a copy.
    batch
        Gives the image shape; its values are ignored.
    input_shape
        The image shape, batch first (its batch size is ignored), when no ``batch`` is given.

    Returns
    -------
    float
        The sum over the weights of convolutional and linear layers, in float64.

    Notes
    -----
    BatchNorm layers are removed (made identities), as in Abdelfattah et al.'s ``synflow``
    (their BN-free variant, the one their NAS-Bench-201 table reports). Kept in training mode,
    BN would normalise the constant all-ones activations of a one-image batch to zero; kept in
    eval mode, its statistics, whatever training left there, would rescale the flow. The copy
    runs in float64 because the path sums of a deep network overflow float32.
    """
    shape = _input_shape("synflow", batch, input_shape)
    linear = copy.deepcopy(model).double().eval()
    _remove_batchnorm(linear)
    with torch.no_grad():
        for parameter in linear.parameters():
            parameter.abs_()
    weights = _weights(linear)
    for weight in weights:
        weight.requires_grad_(True)
    ones = torch.ones((1, *shape[1:]), dtype=torch.float64, device=_device(linear))
    flow = linear(ones).sum()
    grads = torch.autograd.grad(flow, weights, allow_unused=True)
    with torch.no_grad():
        pairs = zip(weights, grads, strict=True)
        return _total([(w * g).abs().sum() for w, g in pairs if g is not None])


def _total(per_layer: list[torch.Tensor]) -> float:
    """The sum of per-layer scalars in float64, read back once: a read per layer would wait
    for the GPU once per layer."""
    if not per_layer:
        return 0.0
    return float(torch.stack([value.double() for value in per_layer]).sum())


def _remove_batchnorm(model: nn.Module) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())


def params(
    model: nn.Module, batch: Batch | None = None, *, input_shape: tuple[int, ...] | None = None
) -> float:
    """The number of parameters (`count_parameters`); needs neither data nor a shape."""
    return float(count_parameters(model))


def flops(
    model: nn.Module, batch: Batch | None = None, *, input_shape: tuple[int, ...] | None = None
) -> float:
    """FLOPs of a forward pass of one image (`count_flops`: a multiply-add is two FLOPs)."""
    shape = _input_shape("flops", batch, input_shape)
    return float(count_flops(model, (1, *shape[1:])))


def latency_ms(
    model: nn.Module,
    batch: Batch | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    warmup: int = 3,
    repeats: int = 10,
) -> float:
    """Milliseconds per forward pass of one batch on the model's device: warm, median.

    Parameters
    ----------
    model
        Timed in eval mode without gradients (inference).
    batch
        The images to time; their values do not matter.
    input_shape
        Without a batch, zeros of this shape, batch first, are timed.
    warmup
        Untimed passes first, which pay for allocations, cuDNN autotuning and caches.
    repeats
        Timed passes; the median resists the odd slow one (a busy core, a page fault).
    """
    inputs = _inputs("latency_ms", model, batch, input_shape)
    cuda = inputs.device.type == "cuda"
    with _restored(model), torch.no_grad():
        model.eval()
        for _ in range(warmup):
            model(inputs)
        times = []
        for _ in range(max(1, repeats)):
            if cuda:
                torch.cuda.synchronize(inputs.device)
            start = time.perf_counter()
            model(inputs)
            if cuda:
                # Kernels run asynchronously: without waiting, only the launch is timed.
                torch.cuda.synchronize(inputs.device)
            times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def peak_memory_mb(
    model: nn.Module, batch: Batch | None = None, *, input_shape: tuple[int, ...] | None = None
) -> float:
    """Memory of one training step's forward and backward pass on one batch, in MiB (2**20 B).

    On a CUDA device this is measured: `torch.cuda.max_memory_allocated` over the step, after
    resetting the peak (parameters already on the device included). On any other device it is
    counted, as tracemalloc cannot see torch's allocator: parameter bytes twice (weights and
    their gradients) plus the bytes of every distinct tensor a module outputs in the forward
    pass, which autograd keeps for the backward pass. The count is an estimate of the same
    quantity: it ignores the allocator's caching and the backward pass's temporaries.
    """
    inputs = _inputs("peak_memory_mb", model, batch, input_shape)
    with _restored(model):
        model.train()
        if inputs.device.type == "cuda":
            torch.cuda.synchronize(inputs.device)
            torch.cuda.reset_peak_memory_stats(inputs.device)
            model(inputs).sum().backward()
            torch.cuda.synchronize(inputs.device)
            return torch.cuda.max_memory_allocated(inputs.device) / _MIB
        return _counted_training_bytes(model, inputs) / _MIB


def _counted_training_bytes(model: nn.Module, inputs: torch.Tensor) -> int:
    outputs: dict[int, int] = {}
    # Held until the count is done: a tensor freed during the forward pass would let the
    # allocator hand its address to the next output, which would then count as the same
    # storage (and the total would change from run to run).
    kept: list[torch.Tensor] = []

    def record(_module: nn.Module, _args: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            kept.append(output)
            # In-place ops (ReLU(inplace=True)) return their input: count storage once.
            outputs[output.untyped_storage().data_ptr()] = output.untyped_storage().nbytes()

    handles = [m.register_forward_hook(record) for m in model.modules()]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return 2 * parameter_bytes + inputs.numel() * inputs.element_size() + sum(outputs.values())


# -- data-dependent proxies ----------------------------------------------------------------------


def jacob_cov(
    model: nn.Module, batch: Batch | None = None, *, input_shape: tuple[int, ...] | None = None
) -> float:
    """Jacobian covariance (Mellor et al.'s first score, Abdelfattah et al.'s ``jacob_cov``).

    With ``J`` the gradients of each image's summed logits with respect to the image,
    flattened, and ``lambda`` the eigenvalues of the correlation matrix of ``J``'s rows:
    ``-sum(log(lambda + k) + 1 / (lambda + k))``, ``k = 1e-5``. Higher when the images'
    Jacobians are less correlated. The model runs in training mode; labels are not used.

    A network whose output ignores an image (a NAS-Bench-201 cell whose output node no path
    from its input reaches) scores ``-inf``: a constant Jacobian has no correlation, and such
    a network cannot learn.
    """
    inputs = _require_batch("jacob_cov", batch)[0]
    with _restored(model):
        model.train()
        images = inputs.to(_device(model)).detach().requires_grad_(True)
        (jacobian,) = torch.autograd.grad(model(images).sum(), images, allow_unused=True)
    if jacobian is None:
        return -math.inf
    rows = jacobian.reshape(jacobian.shape[0], -1).double().cpu().numpy()
    if np.any(rows.std(axis=1) == 0):
        return -math.inf
    eigenvalues = np.linalg.eigvalsh(np.corrcoef(rows))
    return float(-np.sum(np.log(eigenvalues + _JACOB_COV_K) + 1.0 / (eigenvalues + _JACOB_COV_K)))


def naswot(
    model: nn.Module, batch: Batch | None = None, *, input_shape: tuple[int, ...] | None = None
) -> float:
    """NASWOT (Mellor et al., ICML 2021): ``log |det K|`` of the binary-code kernel.

    Each image's code is, per ``nn.ReLU`` module, which units it switches on. ``K[i, j]``
    counts the units on which images ``i`` and ``j`` agree (both on or both off), summed over
    the ReLU modules: the number of units minus the Hamming distance of the codes. Higher when
    the network tells the images apart. Training mode, no gradients; labels are not used.

    Raises
    ------
    InputError
        When ``model`` has no ``nn.ReLU`` module (a functional ``relu`` is invisible to hooks).
    """
    inputs = _require_batch("naswot", batch)[0]
    kernel = torch.zeros((inputs.shape[0], inputs.shape[0]), dtype=torch.float64)

    def accumulate(_module: nn.Module, _args: object, output: torch.Tensor) -> None:
        codes = (output.detach().reshape(output.shape[0], -1) > 0).double().cpu()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise InputError(
            "naswot needs ReLU modules to read activation codes from",
            expected="a model with torch.nn.ReLU modules",
            received=f"a {type(model).__name__} without any",
            fix="use nn.ReLU modules instead of torch.nn.functional.relu, or another proxy",
        )
    handles = [m.register_forward_hook(accumulate) for m in relus]
    try:
        with _restored(model), torch.no_grad():
            model.train()
            model(inputs.to(_device(model)))
    finally:
        for handle in handles:
            handle.remove()
    return float(torch.linalg.slogdet(kernel)[1])


def snip(
    model: nn.Module, batch: Batch | None = None, *, input_shape: tuple[int, ...] | None = None
) -> float:
    """SNIP saliency summed: ``sum |w * dL/dw|`` with ``L`` the mean cross-entropy of
    ``batch``, over the weights of convolutional and linear layers (training mode)."""
    checked = _require_batch("snip", batch)
    with _restored(model):
        pairs = _weight_gradients(model, checked)
        return _total([(w * g).abs().sum() for w, g in pairs])


def grad_norm(
    model: nn.Module, batch: Batch | None = None, *, input_shape: tuple[int, ...] | None = None
) -> float:
    """The Euclidean norm of ``dL/dw`` per convolutional or linear layer, summed over the
    layers, as Abdelfattah et al. define it; ``L`` is the mean cross-entropy (training mode)."""
    checked = _require_batch("grad_norm", batch)
    with _restored(model):
        pairs = _weight_gradients(model, checked)
        return _total([torch.linalg.vector_norm(g) for _, g in pairs])


# -- arguments -----------------------------------------------------------------------------------


def _require_batch(name: str, batch: Batch | None) -> Batch:
    if (
        not isinstance(batch, tuple | list)
        or len(batch) != 2
        or not all(isinstance(t, torch.Tensor) for t in batch)
    ):
        raise InputError(
            f"the proxy {name!r} needs a batch of data",
            expected="batch=(images, labels): two tensors, e.g. 64 training images "
            "(N, C, H, W) and their integer labels (N,)",
            received="batch=None" if batch is None else f"batch of type {type(batch).__name__}",
            fix=f"pass a training minibatch, e.g. score(model, [{name!r}], batch=(x, y)), or "
            f"use the data-free proxies {list(DATA_FREE_PROXIES)} with input_shape=",
        )
    return batch[0], batch[1]


def _input_shape(
    name: str, batch: Batch | None, input_shape: tuple[int, ...] | None
) -> tuple[int, ...]:
    if batch is not None:
        return tuple(_require_batch(name, batch)[0].shape)
    if (
        isinstance(input_shape, tuple)
        and len(input_shape) >= 2
        and all(is_int(d) and d > 0 for d in input_shape)
    ):
        return input_shape
    raise InputError(
        f"the proxy {name!r} needs the input's shape",
        expected="batch=(images, labels), or input_shape: a tuple of positive ints, batch "
        "first, e.g. (64, 3, 32, 32)",
        received=f"batch=None, input_shape={input_shape!r}",
        fix=f"pass input_shape=(batch_size, channels, height, width), e.g. score(model, "
        f"[{name!r}], input_shape=(64, 3, 32, 32))",
    )


def _inputs(
    name: str, model: nn.Module, batch: Batch | None, input_shape: tuple[int, ...] | None
) -> torch.Tensor:
    if batch is not None:
        return _on_device(model, _require_batch(name, batch))[0]
    reference = next(model.parameters(), None)
    dtype = reference.dtype if reference is not None else torch.float32
    return torch.zeros(_input_shape(name, None, input_shape), dtype=dtype, device=_device(model))


# -- the registry --------------------------------------------------------------------------------

PROXIES: dict[str, Proxy] = {
    "synflow": synflow,
    "params": params,
    "flops": flops,
    "latency_ms": latency_ms,
    "peak_memory_mb": peak_memory_mb,
    "jacob_cov": jacob_cov,
    "naswot": naswot,
    "snip": snip,
    "grad_norm": grad_norm,
}
"""Every proxy by name; each maps ``(model, batch=None, *, input_shape=None)`` to a float."""

DATA_FREE_PROXIES = ("synflow", "params", "flops", "latency_ms", "peak_memory_mb")
"""The proxies that need no batch, only an input shape (``params`` not even that)."""


def score(
    model: nn.Module,
    proxies: Sequence[str] | str,
    batch: Batch | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> dict[str, float]:
    """Score ``model`` by each of ``proxies``, leaving it as it was.

    Parameters
    ----------
    model
        An untrained network mapping images to logits.
    proxies
        Names from `PROXIES` (a single name is accepted too).
    batch
        ``(images, labels)``: needed by ``jacob_cov``, ``naswot``, ``snip`` and ``grad_norm``;
        gives the input shape to the others.
    input_shape
        The shape of an input batch, batch first, e.g. ``(64, 3, 32, 32)``, for data-free
        proxies when no ``batch`` is given.

    Returns
    -------
    dict of str to float
        Each proxy's value, in the order asked.

    Raises
    ------
    InputError
        For an unknown proxy name, a data-dependent proxy without a batch, or neither a batch
        nor an input shape where a shape is needed; all checked before any proxy runs.

    Examples
    --------
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> score(model, ["params", "flops"], input_shape=(8, 1, 2, 2))
    {'params': 23.0, 'flops': 36.0}
    """
    names = [proxies] if isinstance(proxies, str) else list(proxies)
    unknown = [name for name in names if name not in PROXIES]
    if unknown or not names:
        raise InputError(
            "unknown zero-cost proxy" if unknown else "no proxy named",
            expected=f"a non-empty list of names from {sorted(PROXIES)}",
            received=repr(unknown[0]) if unknown else repr(proxies),
            fix="pick proxies from morphml_dask.models.PROXIES, e.g. ['synflow', 'params']",
        )
    for name in names:
        if name not in DATA_FREE_PROXIES:
            _require_batch(name, batch)
        elif name != "params":
            _input_shape(name, batch, input_shape)
    return {name: PROXIES[name](model, batch, input_shape=input_shape) for name in names}
