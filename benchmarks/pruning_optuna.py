"""The pruning benchmark's Optuna contender: ``SuccessiveHalvingPruner``, 4 processes.

Run by ``benchmarks/pruning.py`` with ``.bench-venv``'s interpreter (Optuna is no
dependency of the package)::

    .bench-venv/bin/python benchmarks/pruning_optuna.py --job JOB.json --out OUT.json

For each seed of the job, one study in a journal file, optimized by 4 worker processes at
once (Optuna's way to use several processes: ``study.optimize`` in each, one shared
storage), each process one trial at a time. Trial number ``i`` trains the job's ``i``-th
configuration with the example's own ``fit`` function, its reports going to
``trial.report`` and ``ctx.should_stop()`` answering ``trial.should_prune()``; a stopped
trial raises ``optuna.TrialPruned``. The sampler, `RandomSampler`, samples nothing: the
configurations are the job's.

Processes rather than ``n_jobs`` threads: the example's training draws its batch order from
torch's global generator, which threads of one process would share, so that a trial would
not train as it does in the other contenders. The 4 processes start once (torch and the
example imported) and serve every seed.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from _meta import versions
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from pruning import PeerContext, fit_function, peer_main, trial_row


def pruner(job: dict[str, Any]) -> Any:
    """Successive halving with the rungs of ours: ``min_budget * eta**k`` epochs."""
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=job["min_budget"], reduction_factor=job["eta"], min_early_stopping_rate=0
    )


# Set in each pool process: every share of a study waits here until all have started, so
# that the shares run in as many processes at once (a free process could take two).
_all_started: Any = None


def _warm(module: str, barrier: Any = None) -> None:
    """A pool process's start: quiet Optuna, one torch thread, the example imported."""
    global _all_started
    _all_started = barrier
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    fit_function(module)


def _started() -> None:
    _all_started.wait()


def optimize(job: dict[str, Any], index: int, journal: str) -> list[dict[str, Any]]:
    """One process's share of the study of run ``index``: the trials it trained.

    Each process asks for trials until the study holds as many as the run has; two
    processes may both ask for one more at the very end, and the surplus trials train
    nothing and count nowhere.
    """
    _started()
    run = job["runs"][index]
    entries, fit = run["trials"], fit_function(job["module"])
    study = optuna.load_study(
        study_name=f"seed-{run['seed']}",
        storage=JournalStorage(JournalFileBackend(journal)),
        sampler=optuna.samplers.RandomSampler(seed=run["seed"]),
        pruner=pruner(job),
    )
    rows: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        if trial.number >= len(entries):
            raise optuna.TrialPruned()
        entry = entries[trial.number]

        def on_report(step: int, value: float) -> bool:
            trial.report(value, step)
            return bool(trial.should_prune())

        ctx = PeerContext(entry["seed"], job["epochs"], on_report)
        fit(entry["config"], ctx)
        state = "pruned" if ctx.stopped else "complete"
        rows.append(trial_row(entry["trial_id"], ctx.epochs, ctx.objective, state))
        if ctx.stopped:
            raise optuna.TrialPruned()
        return ctx.objective

    done = optuna.study.MaxTrialsCallback(len(entries), states=None)
    study.optimize(objective, n_trials=len(entries), callbacks=[done])
    return rows


def run_seed(pool: Any, job: dict[str, Any], index: int, folder: Path) -> dict[str, Any]:
    """The study of run ``index`` on the pool's processes: wall time and trials."""
    run = job["runs"][index]
    journal = str(folder / f"study-{run['seed']}.log")
    optuna.create_study(
        study_name=f"seed-{run['seed']}",
        storage=JournalStorage(JournalFileBackend(journal)),
        direction="maximize",
    )
    start = time.perf_counter()
    shares = pool.starmap(optimize, [(job, index, journal)] * job["slots"])
    wall = time.perf_counter() - start
    rows = sorted((row for share in shares for row in share), key=lambda row: row["trial_id"])
    return {"seed": run["seed"], "wall_s": round(wall, 2), "trials": rows}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Every seed of ``job``, one study after another, on one pool of processes."""
    _warm(job["module"])
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(job["slots"])
    with context.Pool(job["slots"], _warm, (job["module"], barrier)) as pool:
        pool.starmap(_started, [()] * job["slots"])  # every process up before the clock starts
        runs = [run_seed(pool, job, index, Path.cwd()) for index in range(len(job["runs"]))]
    settings = {
        "pruner": "SuccessiveHalvingPruner(min_resource={min_budget}, reduction_factor={eta},"
        " min_early_stopping_rate=0)".format(**job),
        "processes": job["slots"],
        "storage": "JournalStorage(JournalFileBackend(...))",
    }
    return {"versions": versions("optuna", "torch"), "settings": settings, "runs": runs}


if __name__ == "__main__":
    peer_main(run_job)
