"""Zero-cost proxies: each against a value worked out by hand on a tiny network, the model
left as it was, and the errors.

The tiny network is ``x -> W2 relu(W1 x)`` without biases,

    W1 = [[1, -1], [2, 1]]    W2 = [[1, 2], [-1, 1]]

on the batch ``x1 = (1, 2)`` with label 0 and ``x2 = (2, -1)`` with label 1:

    W1 x1 = (-1, 4) -> relu (0, 4) -> logits (8, 4)
    W1 x2 = ( 3, 3) -> relu (3, 3) -> logits (9, 0)
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from morphml_dask.exceptions import InputError
from morphml_dask.models import (
    DATA_FREE_PROXIES,
    PROXIES,
    build_model,
    latency_ms,
    score,
)
from morphml_dask.space import ArchGraph, CellSpace, Node


def two_layers(w1: list[list[float]], w2: list[list[float]]) -> nn.Sequential:
    """``x -> w2 relu(w1 x)``, without biases."""
    first = nn.Linear(len(w1[0]), len(w1), bias=False)
    second = nn.Linear(len(w2[0]), len(w2), bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor(w1))
        second.weight.copy_(torch.tensor(w2))
    return nn.Sequential(first, nn.ReLU(), second)


W1 = [[1.0, -1.0], [2.0, 1.0]]


def tiny() -> nn.Sequential:
    return two_layers(W1, [[1.0, 2.0], [-1.0, 1.0]])


BATCH = (torch.tensor([[1.0, 2.0], [2.0, -1.0]]), torch.tensor([0, 1]))

# Mean cross-entropy: dL/dlogits of image n is (softmax - onehot) / 2.
#   image 1, logits (8, 4), label 0: (-a/2, a/2) with a = softmax(8, 4)[1] = 1 / (1 + e^4)
#   image 2, logits (9, 0), label 1: (b/2, -b/2) with b = softmax(9, 0)[0] = 1 / (1 + e^-9)
A = 1 / (1 + math.exp(4))
B = 1 / (1 + math.exp(-9))
# dL/dW2 = sum_n delta_n relu_n^T = [[0, -2a], [0, 2a]] + [[1.5b, 1.5b], [-1.5b, -1.5b]]
G2 = np.array([[1.5 * B, 1.5 * B - 2 * A], [-1.5 * B, -1.5 * B + 2 * A]])
# Back through W2^T and the ReLU masks (0, 1) and (1, 1): (0, -a/2) and (b, b/2); times x_n^T:
G1 = np.array([[2 * B, -B], [B - A / 2, -A - B / 2]])


def test_params_by_hand() -> None:
    assert score(tiny(), ["params"]) == {"params": 8.0}


def test_flops_by_hand() -> None:
    # Two 2x2 matrix-vector products per image, 4 multiply-adds each, 2 FLOPs per multiply-add;
    # counted for one image whatever the batch size.
    assert score(tiny(), ["flops"], input_shape=(5, 2)) == {"flops": 16.0}


def test_synflow_by_hand() -> None:
    # |W1| = [[1, 1], [2, 1]], |W2| = [[1, 2], [1, 1]], input (1, 1): hidden (2, 3), output
    # (8, 5), R = 13. dR/dW2 = [[2, 3], [2, 3]], so sum |W2 * dR/dW2| = 2 + 6 + 2 + 3 = 13;
    # dR/dhidden = column sums of |W2| = (2, 3), dR/dW1 = [[2, 2], [3, 3]], and
    # sum |W1 * dR/dW1| = 2 + 2 + 6 + 3 = 13 (synaptic flow is conserved layer to layer).
    assert score(tiny(), ["synflow"], input_shape=(1, 2)) == {"synflow": pytest.approx(26.0)}
    # Only the batch's shape matters.
    assert score(tiny(), ["synflow"], batch=BATCH)["synflow"] == pytest.approx(26.0)


def test_synflow_removes_batchnorm() -> None:
    # A BN between the layers (whatever its statistics) is made an identity, as in
    # Abdelfattah et al.'s BN-free synflow: the value stays 26.
    net = tiny()
    bn = nn.BatchNorm1d(2)
    bn.load_state_dict({**bn.state_dict(), "running_mean": torch.full((2,), 5.0)})
    net.insert(1, bn)
    assert score(net, ["synflow"], input_shape=(1, 2))["synflow"] == pytest.approx(26.0)


def test_snip_by_hand() -> None:
    # sum |W1 * G1| = 2b + b + 2(b - a/2) + (a + b/2) = 5.5b
    # sum |W2 * G2| = 1.5b + 2(1.5b - 2a) + 1.5b + (1.5b - 2a) = 7.5b - 6a
    expected = 13 * B - 6 * A
    assert expected == pytest.approx(12.890478, abs=1e-6)
    assert score(tiny(), ["snip"], batch=BATCH)["snip"] == pytest.approx(expected, rel=1e-6)


def test_grad_norm_by_hand() -> None:
    # The Frobenius norm of each layer's gradient, summed over the two layers.
    layer1 = math.sqrt(4 * B**2 + B**2 + (B - A / 2) ** 2 + (A + B / 2) ** 2)
    layer2 = math.sqrt(4.5 * B**2 + 2 * (1.5 * B - 2 * A) ** 2)
    assert (layer1, layer2) == pytest.approx((np.linalg.norm(G1), np.linalg.norm(G2)))
    value = score(tiny(), ["grad_norm"], batch=BATCH)["grad_norm"]
    assert value == pytest.approx(layer1 + layer2, rel=1e-6)


def test_naswot_by_hand() -> None:
    # ReLU codes: image 1 (0, 1), image 2 (1, 1). K[i, j] counts agreeing units:
    # K = [[2, 1], [1, 2]], det K = 3.
    assert score(tiny(), ["naswot"], batch=BATCH)["naswot"] == pytest.approx(math.log(3))


def test_jacob_cov_by_hand() -> None:
    # Three inputs, so that two Jacobians can be partly correlated:
    # W1 = [[1, 0, 1], [0, 1, -1]], W2 = [[1, 2]]. d(logit)/dx = W1^T (mask * (1, 2)):
    #   x1 = (1, 1, 0): hidden (1, 1), mask (1, 1): J1 = (1, 0, 1) + 2 (0, 1, -1) = (1, 2, -1)
    #   x2 = (1, -1, 0): hidden (1, -1), mask (1, 0): J2 = (1, 0, 1)
    # Centred: (1, 4, -5)/3 and (1, -2, 1)/3; r = -12 / sqrt(42 * 6) = -2 / sqrt(7).
    net = two_layers([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]], [[1.0, 2.0]])
    images = torch.tensor([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0]])
    r = -2 / math.sqrt(7)
    k = 1e-5
    expected = -sum(math.log(lam + k) + 1 / (lam + k) for lam in (1 + r, 1 - r))
    assert expected == pytest.approx(-3.819244, abs=1e-6)
    value = score(net, ["jacob_cov"], batch=(images, torch.tensor([0, 0])))["jacob_cov"]
    assert value == pytest.approx(expected, rel=1e-6)


def test_peak_memory_counted_on_cpu() -> None:
    # Weights and their gradients 2 x 8 x 4 B, the input 16 B, and three distinct module
    # outputs of 2 x 2 float32 (the Sequential's output is the last Linear's): 128 B.
    value = score(tiny(), ["peak_memory_mb"], batch=BATCH)["peak_memory_mb"]
    assert value == pytest.approx(128 / 2**20)


def test_peak_memory_counts_an_in_place_relu_once() -> None:
    net = tiny()
    net[1] = nn.ReLU(inplace=True)
    value = score(net, ["peak_memory_mb"], batch=BATCH)["peak_memory_mb"]
    assert value == pytest.approx(112 / 2**20)


def test_latency_is_the_median_of_the_timed_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake clock: passes of 1, 5 and 2 ms; the warm-up passes are not timed.
    ticks = iter([0.0, 0.001, 1.0, 1.005, 2.0, 2.002])
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks))
    assert latency_ms(tiny(), BATCH, warmup=2, repeats=3) == pytest.approx(2.0)


def test_latency_measured() -> None:
    value = score(tiny(), ["latency_ms"], input_shape=(4, 2))["latency_ms"]
    assert 0 < value < 1000


def test_registry_and_data_free_names() -> None:
    # The names themselves are pinned against the tasks' torch-free copy in
    # tests/tasks/test_proxy_task.py.
    assert set(DATA_FREE_PROXIES) <= set(PROXIES)
    # Data-free proxies run from a shape alone.
    values = score(tiny(), DATA_FREE_PROXIES, input_shape=(2, 2))
    assert list(values) == list(DATA_FREE_PROXIES)
    assert all(math.isfinite(v) for v in values.values())


CONNECTED = (
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
)
# The output node sums none(node 0), none(node 1) and skip(node 2), and node 2 is zeros.
DISCONNECTED = "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"


def nb201(arch_str: str = CONNECTED) -> nn.Module:
    torch.manual_seed(0)
    return build_model(CellSpace().from_arch_str(arch_str), 10, in_channels=3)


def dag() -> nn.Module:
    torch.manual_seed(0)
    arch = ArchGraph(["input", Node("conv", kernel=3, channels=8), "output"], [(0, 1), (1, 2)])
    return build_model(arch, 10, in_channels=1)


@pytest.mark.parametrize(
    ("make", "shape"), [(nb201, (4, 3, 16, 16)), (dag, (4, 1, 8, 8))], ids=["nb201", "dag"]
)
def test_weights_gradients_and_modes_restored(make: object, shape: tuple[int, ...]) -> None:
    assert callable(make)
    model: nn.Module = make()
    model.train()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    head = list(model.children())[-1]
    head.eval()  # a mixed state, restored module by module
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = (torch.randn(shape), torch.randint(0, 10, (shape[0],)))
    values = score(model, list(PROXIES), batch=batch)
    assert not any(math.isnan(v) for v in values.values()), values
    after = model.state_dict()
    # BN running statistics included: the training-mode passes must not move them.
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and not head.training
    assert not frozen.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_network_that_ignores_its_input() -> None:
    # Its Jacobian is zero: no correlation, the lowest jacob_cov; the rest stay defined.
    batch = (torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,)))
    values = score(nb201(DISCONNECTED), list(PROXIES), batch=batch)
    assert values["jacob_cov"] == -math.inf
    assert all(math.isfinite(v) for k, v in values.items() if k != "jacob_cov"), values


def test_synflow_restores_weight_signs() -> None:
    net = tiny()
    score(net, ["synflow"], input_shape=(1, 2))
    first = net.get_submodule("0")
    assert isinstance(first, nn.Linear)
    assert torch.equal(first.weight, torch.tensor(W1))
    assert first.weight.dtype == torch.float32


def test_unknown_proxy_message() -> None:
    with pytest.raises(
        InputError,
        match=r"unknown zero-cost proxy\n.*expected: a non-empty "
        r"list of names from \[.*'synflow'.*\]\n  received: 'synflo'\n  "
        r"fix: pick proxies from morphml_dask.models.PROXIES",
    ):
        score(tiny(), ["params", "synflo"])


def test_empty_proxy_list_message() -> None:
    with pytest.raises(InputError, match="no proxy named"):
        score(tiny(), [])


@pytest.mark.parametrize("name", ["jacob_cov", "naswot", "snip", "grad_norm"])
def test_data_dependent_proxy_without_batch_message(name: str) -> None:
    with pytest.raises(
        InputError,
        match=rf"the proxy '{name}' needs a batch of data\n  expected: batch=\(images, labels\)"
        rf".*\n  received: batch=None\n  fix: pass a training minibatch",
    ):
        score(tiny(), [name], input_shape=(2, 2))


def test_errors_come_before_any_proxy_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def spy(*args: object, **kwargs: object) -> float:
        calls.append("params")
        return 0.0

    monkeypatch.setitem(PROXIES, "params", spy)
    with pytest.raises(InputError, match="needs a batch"):
        score(tiny(), ["params", "snip"])
    assert calls == []


def test_shape_needed_message() -> None:
    with pytest.raises(
        InputError,
        match=r"the proxy 'flops' needs the input's shape\n"
        r".*\n  received: batch=None, input_shape=None",
    ):
        score(tiny(), ["flops"])


def test_naswot_needs_relu_modules() -> None:
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(InputError, match="naswot needs ReLU modules"):
        score(net, ["naswot"], batch=BATCH)


def test_the_cpu_memory_count_is_the_same_every_time() -> None:
    """Outputs freed during the forward pass once let the allocator reuse their addresses,
    which made distinct outputs count as one, differently from run to run."""
    from morphml_dask.models import build_model
    from morphml_dask.space import DagSpace

    model = build_model(
        DagSpace(max_nodes=5, widths=(16, 32, 48)).sample(np.random.default_rng(1)),
        10,
        in_channels=1,
    )
    counts = {PROXIES["peak_memory_mb"](model, input_shape=(64, 1, 8, 8)) for _ in range(5)}
    assert len(counts) == 1, counts
