"""Search a small ResNet-style CNN and its learning rate on scikit-learn's 8x8 digits.

Each trial decides the number of stages (1 to 3; each after the first halves the image), the
width of each stage, the kernel size, the skip connection of the residual blocks and the
learning rate (log-uniform). The skip connections are those of He et al., "Deep Residual
Learning for Image Recognition" (CVPR 2016): ``none`` (a plain CNN), ``identity`` (option
A: the input itself, subsampled and zero-padded where the shape changes) or ``projection``
(option B: a strided 1x1 convolution where the shape changes). The objective is the
validation accuracy in percent.

    python examples/resnet_digits.py           # 24 trials of 4 epochs on a local cluster
    python examples/resnet_digits.py --full    # 64 trials of 12 epochs
    morphml run examples/resnet_digits.yaml    # from the shell, resumable

The local cluster's worker processes import this file as the module ``resnet_digits``, so
the space and train functions live at module level and the search starts only under
``__main__``. An epoch over the 1,437 training digits takes a fraction of a second to a few
seconds on one CPU core, depending on the widths.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from morphml_dask.driver import Search
from morphml_dask.optim import RegularizedEvolution
from morphml_dask.space import FunctionSpace, Sampler
from morphml_dask.tasks import FunctionTask, TrialContext

# A fixed split, whatever the trial's seed, so that every trial is scored on the same digits.
SPLIT_SEED = 0
VALIDATION_FRACTION = 0.2
BATCH_SIZE = 64
SKIPS = ("none", "identity", "projection")


@dataclass(frozen=True)
class Split:
    """Images (N, 1, 8, 8) scaled to [0, 1] and their labels, training and validation."""

    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@lru_cache(maxsize=1)
def _digit_arrays() -> tuple[np.ndarray[Any, Any], ...]:
    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).reshape(-1, 1, 8, 8)  # pixel values are 0 to 16
    x, x_val, y, y_val = train_test_split(
        images,
        labels,
        test_size=VALIDATION_FRACTION,
        stratify=labels,
        random_state=SPLIT_SEED,
    )
    return x, y, x_val, y_val


def digits(device: str | torch.device = "cpu") -> Split:
    """The digits as tensors on ``device``: 1,437 training and 360 validation images."""
    x, y, x_val, y_val = _digit_arrays()

    def images(a: np.ndarray[Any, Any]) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32, device=device)

    def labels(a: np.ndarray[Any, Any]) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.long, device=device)

    return Split(images(x), labels(y), images(x_val), labels(y_val))


class IdentitySkip(nn.Module):
    """He et al.'s option A: the input subsampled by ``stride``, its channels zero-padded
    to ``width_out`` (or, where a stage narrows, cut to it): no parameters."""

    def __init__(self, width_in: int, width_out: int, stride: int) -> None:
        super().__init__()
        self.extra = width_out - width_in
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # Pad the channels (the third dimension from the end) at their end; a negative
        # amount cuts them instead.
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a skip connection, then ReLU (He et al., Fig. 2)."""

    def __init__(self, width_in: int, width: int, kernel: int, stride: int, skip: str) -> None:
        super().__init__()
        pad = kernel // 2
        self.body = nn.Sequential(
            nn.Conv2d(width_in, width, kernel, stride, pad, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, kernel, 1, pad, bias=False),
            nn.BatchNorm2d(width),
        )
        self.skip: nn.Module | None = None
        if skip == "identity":
            self.skip = IdentitySkip(width_in, width, stride)
        elif skip == "projection":
            reshaped = stride != 1 or width_in != width
            self.skip = (
                nn.Sequential(
                    nn.Conv2d(width_in, width, 1, stride, bias=False), nn.BatchNorm2d(width)
                )
                if reshaped
                else nn.Identity()  # option B projects only where the shape changes
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.skip is not None:
            out = out + self.skip(x)
        return torch.relu(out)


def resnet(config: dict[str, Any], *, seed: int = 0) -> nn.Sequential:
    """A stem convolution, one residual block per stage, global average pooling, a classifier."""
    torch.manual_seed(seed)
    kernel, skip = config["kernel"], config["skip"]
    width_in = config["widths"][0]
    layers: list[nn.Module] = [
        nn.Conv2d(1, width_in, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(width_in),
        nn.ReLU(),
    ]
    for stage, width in enumerate(config["widths"]):
        stride = 1 if stage == 0 else 2  # 8x8, then 4x4, then 2x2
        layers.append(ResidualBlock(width_in, width, kernel, stride, skip))
        width_in = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width_in, 10)]
    return nn.Sequential(*layers)


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, data: Split) -> float:
    """One pass over the training digits in a random order; the mean training loss."""
    model.train()
    total = 0.0
    for batch in torch.split(torch.randperm(len(data.y), device=data.y.device), BATCH_SIZE):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(data.x[batch]), data.y[batch])
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        total += loss.item() * len(batch)
    return total / len(data.y)


@torch.no_grad()
def evaluate(model: nn.Module, data: Split) -> dict[str, float]:
    """Validation loss and accuracy (percent), in eval mode."""
    model.eval()
    logits = model(data.x_val)
    return {
        "val_loss": nn.functional.cross_entropy(logits, data.y_val).item(),
        "val_accuracy": 100.0 * (logits.argmax(dim=1) == data.y_val).float().mean().item(),
    }


def space(s: Sampler) -> dict[str, Any]:
    """Stages, a width per stage, kernel size, skip connection and learning rate."""
    stages = s.int("stages", 1, 3)
    return {
        "widths": [s.choice(f"width_{stage}", [8, 16, 32]) for stage in range(stages)],
        "kernel": s.choice("kernel", [3, 5]),
        "skip": s.choice("skip", list(SKIPS)),
        "lr": s.float("lr", 1e-3, 0.3, log=True),
    }


def fit(config: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
    """Train with SGD (Nesterov momentum) from where the saved state left off, to the budget."""
    data = digits(ctx.device)
    model = resnet(config, seed=ctx.seed).to(ctx.device)
    opt = torch.optim.SGD(model.parameters(), config["lr"], momentum=0.9, nesterov=True)
    if state := ctx.restore():  # an ASHA promotion, or a retried trial, continues
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
    else:  # a child of an evolution with inherit_weights starts from what fits of its parent
        ctx.inherit(model)
    metrics: dict[str, float] = {}
    for epoch in range(ctx.trained_epochs + 1, ctx.budget + 1):
        metrics = {"train_loss": train_epoch(model, opt, data), **evaluate(model, data)}
        ctx.report(epoch, **metrics)
        # Each epoch: a trial that runs again after its worker died continues from here.
        ctx.save({"model": model.state_dict(), "opt": opt.state_dict()})
        if ctx.should_stop():  # the search's pruner stopped this trial
            break
    params = float(sum(p.numel() for p in model.parameters()))
    return {**(metrics or evaluate(model, data)), "params": params}


def main(argv: list[str] | None = None) -> None:
    """Run the search on a local cluster of worker processes and print the best trials."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="64 trials of 12 epochs")
    parser.add_argument("--store", default="./runs/resnet-digits", help="the store's URL")
    args = parser.parse_args(argv)
    trials, epochs = (64, 12) if args.full else (24, 4)
    search = Search(
        RegularizedEvolution(
            FunctionSpace(space), population_size=8, budget=epochs, max_trials=trials, seed=0
        ),
        FunctionTask(fit, objective="val_accuracy", direction="maximize"),
        store=args.store,
    )
    table = search.run()
    print(table.nlargest(3, "val_accuracy")[["trial_id", "val_accuracy", "params"]])


if __name__ == "__main__":  # the workers import this file; only the driver searches
    main()
