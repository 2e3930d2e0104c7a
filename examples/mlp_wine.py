"""Search an MLP and its training together on scikit-learn's wine data.

Depth (1 to 4 hidden layers), the width of each layer, the activation, dropout (a yes/no
decision that opens a rate), the learning rate and weight decay (log-uniform) and the batch
size are decided per trial; the objective is the validation accuracy in percent.

    python examples/mlp_wine.py        # 40 trials of 10 epochs on a local cluster
    morphml run examples/mlp_wine.yaml # the same search from the shell, resumable

The local cluster's worker processes import this file as the module ``mlp_wine`` (its
folder is on their path), so the space and train functions live at module level and the
search starts only under ``__main__``. The data are 178 wines, 13 measurements each, 3
cultivars: a trial trains in well under a second on one CPU core.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from torch import nn

from morphml_dask.driver import Search
from morphml_dask.optim import RegularizedEvolution
from morphml_dask.space import FunctionSpace, Sampler
from morphml_dask.tasks import FunctionTask, TrialContext

# The train/validation split is fixed, whatever the trial's seed: every trial is scored on
# the same 54 wines, so their accuracies compare.
SPLIT_SEED = 0
VALIDATION_FRACTION = 0.3
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class Split:
    """Standardized features and labels of the training and validation parts."""

    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@lru_cache(maxsize=1)
def _wine_arrays() -> tuple[np.ndarray[Any, Any], ...]:
    features, labels = load_wine(return_X_y=True)
    x, x_val, y, y_val = train_test_split(
        features,
        labels,
        test_size=VALIDATION_FRACTION,
        stratify=labels,
        random_state=SPLIT_SEED,
    )
    # Standardize with the training part's statistics only: the validation wines stay unseen.
    mean, std = x.mean(axis=0), x.std(axis=0)
    return (x - mean) / std, y, (x_val - mean) / std, y_val


def wine(device: str | torch.device = "cpu") -> Split:
    """The wine data as tensors on ``device``: 124 training and 54 validation wines."""
    x, y, x_val, y_val = _wine_arrays()

    def features(a: np.ndarray[Any, Any]) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32, device=device)

    def labels(a: np.ndarray[Any, Any]) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.long, device=device)

    return Split(features(x), labels(y), features(x_val), labels(y_val))


def mlp(config: dict[str, Any], *, seed: int = 0) -> nn.Sequential:
    """The MLP a configuration describes, its weights initialised from ``seed``."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    width_in = 13  # the wine measurements
    for width in config["widths"]:
        layers += [nn.Linear(width_in, width), ACTIVATIONS[config["activation"]]()]
        if config["dropout"] > 0:
            layers.append(nn.Dropout(config["dropout"]))
        width_in = width
    layers.append(nn.Linear(width_in, 3))  # the three cultivars
    return nn.Sequential(*layers)


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, data: Split, batch_size: int) -> None:
    """One pass over the training wines in a random order, one step per batch."""
    model.train()
    for batch in torch.split(torch.randperm(len(data.y), device=data.y.device), batch_size):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(data.x[batch]), data.y[batch])
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()


@torch.no_grad()
def evaluate(model: nn.Module, data: Split) -> dict[str, float]:
    """Training loss, validation loss and validation accuracy (percent), in eval mode."""
    model.eval()
    logits = model(data.x_val)
    return {
        "train_loss": nn.functional.cross_entropy(model(data.x), data.y).item(),
        "val_loss": nn.functional.cross_entropy(logits, data.y_val).item(),
        "val_accuracy": 100.0 * (logits.argmax(dim=1) == data.y_val).float().mean().item(),
    }


# listing: start
def space(s: Sampler) -> dict[str, Any]:
    depth = s.int("depth", 1, 4)
    return {
        "widths": [s.choice(f"width_{i}", [16, 32, 64, 128]) for i in range(depth)],
        "activation": s.choice("activation", ["relu", "gelu", "tanh"]),
        "dropout": s.float("dropout_rate", 0.05, 0.5) if s.bool("dropout") else 0.0,
        "lr": s.float("lr", 1e-4, 1e-1, log=True),
        "weight_decay": s.float("weight_decay", 1e-6, 1e-2, log=True),
        "batch_size": s.choice("batch_size", [16, 32, 64]),
    }


def fit(config: dict[str, Any], ctx: TrialContext) -> None:
    data, model = wine(ctx.device), mlp(config, seed=ctx.seed).to(ctx.device)
    opt = torch.optim.AdamW(model.parameters(), config["lr"], weight_decay=config["weight_decay"])
    if state := ctx.restore():  # an ASHA promotion continues from its parent's weights
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
    for epoch in range(ctx.trained_epochs + 1, ctx.budget + 1):
        train_epoch(model, opt, data, config["batch_size"])
        ctx.report(epoch, **evaluate(model, data))
        if ctx.should_stop():  # the search's pruner stopped this trial
            break
    ctx.save({"model": model.state_dict(), "opt": opt.state_dict()})


if __name__ == "__main__":  # the workers import this file; only the driver searches
    optimizer = RegularizedEvolution(FunctionSpace(space), budget=10, max_trials=40, seed=0)
    task = FunctionTask(fit, objective="val_accuracy", direction="maximize")
    table = Search(optimizer, task, store="./runs/mlp-wine").run()
    print(table.nlargest(3, "val_accuracy")[["trial_id", "val_accuracy", "val_loss"]])
# listing: end
