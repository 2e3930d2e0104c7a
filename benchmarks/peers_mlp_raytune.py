"""The MLP search of ``examples/mlp_wine.py`` written for Ray Tune, for the side-by-side.

    bash benchmarks/peers-env.sh                            # once: .bench-venv with Ray Tune
    .bench-venv/bin/python benchmarks/peers_mlp_raytune.py  # 40 trials of 10 epochs

The same space (a ``param_space``; the widths and the dropout rate depend on other
decisions, so they are ``tune.sample_from`` functions), the same data, model and training
epoch (imported from the example), the same 40 trials of 10 epochs, one report per epoch;
Tune's default search (random) on a local Ray. The lines between the ``listing`` markers are
what ``benchmarks/peers_mlp.py`` counts and the documentation shows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray import tune

# The shared model and training code is the example's own. Ray's worker processes import
# it too: they inherit this process's environment.
EXAMPLES = str(Path(__file__).resolve().parents[1] / "examples")
sys.path.insert(0, EXAMPLES)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [EXAMPLES, os.environ.get("PYTHONPATH")]))
from mlp_wine import evaluate, mlp, train_epoch, wine  # noqa: E402


# listing: start
def trainable(config: dict[str, Any]) -> None:
    data, model = wine(), mlp(config, seed=0)
    opt = torch.optim.AdamW(model.parameters(), config["lr"], weight_decay=config["weight_decay"])
    for _ in range(10):
        train_epoch(model, opt, data, config["batch_size"])
        tune.report(evaluate(model, data))


param_space = {
    "depth": tune.randint(1, 5),
    "widths": tune.sample_from(
        lambda config: [int(np.random.choice([16, 32, 64, 128])) for _ in range(config["depth"])]
    ),
    "activation": tune.choice(["relu", "gelu", "tanh"]),
    "dropout": tune.sample_from(
        lambda config: np.random.uniform(0.05, 0.5) if np.random.rand() < 0.5 else 0.0
    ),
    "lr": tune.loguniform(1e-4, 1e-1),
    "weight_decay": tune.loguniform(1e-6, 1e-2),
    "batch_size": tune.choice([16, 32, 64]),
}

if __name__ == "__main__":
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", num_samples=40),
    )
    print(tuner.fit().get_best_result().config)
# listing: end
