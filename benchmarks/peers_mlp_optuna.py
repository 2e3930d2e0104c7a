"""The MLP search of ``examples/mlp_wine.py`` written for Optuna, for the side-by-side.

    bash benchmarks/peers-env.sh                          # once: .bench-venv with Optuna
    .bench-venv/bin/python benchmarks/peers_mlp_optuna.py # 40 trials of 10 epochs

The same space (Optuna's define-by-run ``trial.suggest_*``), the same data, model and
training epoch (imported from the example), the same 40 trials of 10 epochs, one report per
epoch; Optuna's default sampler (TPE), seeded, in this process. The lines between the
``listing`` markers are what ``benchmarks/peers_mlp.py`` counts and the documentation shows.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import optuna
import torch

# The shared model and training code is the example's own.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from mlp_wine import evaluate, mlp, train_epoch, wine


# listing: start
def objective(trial: optuna.Trial) -> float:
    depth = trial.suggest_int("depth", 1, 4)
    config: dict[str, Any] = {
        "widths": [
            trial.suggest_categorical(f"width_{i}", [16, 32, 64, 128]) for i in range(depth)
        ],
        "activation": trial.suggest_categorical("activation", ["relu", "gelu", "tanh"]),
        "dropout": (
            trial.suggest_float("dropout_rate", 0.05, 0.5)
            if trial.suggest_categorical("dropout", [False, True])
            else 0.0
        ),
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
    }
    data, model = wine(), mlp(config, seed=0)
    opt = torch.optim.AdamW(model.parameters(), config["lr"], weight_decay=config["weight_decay"])
    for epoch in range(1, 11):
        train_epoch(model, opt, data, config["batch_size"])
        metrics = evaluate(model, data)
        trial.report(metrics["val_accuracy"], epoch)
    return metrics["val_accuracy"]


if __name__ == "__main__":
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=40)
    print(study.best_value, study.best_params)
# listing: end
