"""The pruning benchmark's Ray Tune contender: ``ASHAScheduler``, 4 trials at once.

Run by ``benchmarks/pruning.py`` with ``.bench-venv``'s interpreter (Ray is no dependency
of the package)::

    .bench-venv/bin/python benchmarks/pruning_raytune.py --job JOB.json --out OUT.json

One local Ray (``num_cpus=4``, one CPU per trial: 4 trials at once), started once for all
the seeds; per seed, one ``Tuner.fit`` whose grid runs the job's configurations in order,
each with the example's own ``fit`` function, its reports going to ``tune.report``. The
scheduler stops a trial from outside, so ``ctx.should_stop()`` stays False and the trial
ends where Ray stops it. Actors are reused (``reuse_actors=True``, not Tune's default) so
that a trial does not pay for a new process that imports torch.

What a trial trained is written by the trial itself, before each report, to a file per
trial: the epochs counted are those trained, whatever Ray did with the reports.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

# Before Ray is imported: no CSV, JSON or TensorBoard logs per trial.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

import ray
import torch
from _meta import versions
from pruning import PeerContext, fit_function, peer_main, trial_row
from ray import tune
from ray.tune.schedulers import ASHAScheduler


def trainable(config: dict[str, Any], job: dict[str, Any], progress: str) -> None:
    """Train the job's configuration ``config["index"]`` of seed ``config["run"]``."""
    torch.set_num_threads(1)
    entry = job["runs"][config["run"]]["trials"][config["index"]]
    record = Path(progress) / f"{entry['trial_id']}.json"

    def on_report(step: int, value: float) -> bool:
        record.write_text(json.dumps({"epochs": step, "objective": value}), encoding="utf-8")
        tune.report({"val_accuracy": value})
        return False  # the scheduler stops the trial itself

    fit_function(job["module"])(
        entry["config"], PeerContext(entry["seed"], job["epochs"], on_report)
    )


def scheduler(job: dict[str, Any]) -> ASHAScheduler:
    """Asynchronous successive halving with the rungs of ours: 1, 3, 9 ... below the budget."""
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=job["epochs"],
        grace_period=job["min_budget"],
        reduction_factor=job["eta"],
    )


def run_seed(job: dict[str, Any], index: int, folder: Path) -> dict[str, Any]:
    """One ``Tuner.fit`` over the configurations of run ``index``: wall time and trials."""
    run = job["runs"][index]
    progress = folder / f"progress-{run['seed']}"
    progress.mkdir()
    tuner = tune.Tuner(
        tune.with_parameters(trainable, job=job, progress=str(progress)),
        param_space={"run": index, "index": tune.grid_search(list(range(len(run["trials"]))))},
        tune_config=tune.TuneConfig(
            metric="val_accuracy",
            mode="max",
            scheduler=scheduler(job),
            max_concurrent_trials=job["slots"],
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str(folder / "ray_results"), verbose=0),
    )
    start = time.perf_counter()
    tuner.fit()
    wall = time.perf_counter() - start
    rows = []
    for entry in run["trials"]:
        path = progress / f"{entry['trial_id']}.json"
        done = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        epochs, objective = done.get("epochs", 0), done.get("objective", float("nan"))
        state = "complete" if epochs >= job["epochs"] else "pruned"
        rows.append(trial_row(entry["trial_id"], epochs, objective, state))
    return {"seed": run["seed"], "wall_s": round(wall, 2), "trials": rows}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Every seed of ``job`` on one local Ray."""
    folder = Path.cwd()
    start = time.perf_counter()
    ray.init(num_cpus=job["slots"], include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - start
    try:
        runs = [run_seed(job, index, folder) for index in range(len(job["runs"]))]
    finally:
        ray.shutdown()
    settings = {
        "scheduler": "ASHAScheduler(time_attr='training_iteration', max_t={epochs},"
        " grace_period={min_budget}, reduction_factor={eta})".format(**job),
        "max_concurrent_trials": job["slots"],
        "reuse_actors": True,
        "ray_init_s": round(startup, 1),
    }
    return {"versions": versions("ray", "torch"), "settings": settings, "runs": runs}


if __name__ == "__main__":
    peer_main(run_job)
