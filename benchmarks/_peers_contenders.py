"""The contenders of `benchmarks/peers.py`, one per process: ``python _peers_contenders.py NAME``.

Run by ``peers.py`` with ``.bench-venv``'s interpreter (Ray and Optuna live there, never in
the package's dependencies), each in its own process with a timeout, so that a peer that
crashes or hangs costs its own row and nothing else. Writes one JSON document: every job
that ran (worker-side unix start and end), every configuration sampled (NAS-Bench-201 index
and 12-epoch validation accuracy), how many went on to 200 epochs, the wall time of the
search call and the versions of what ran it. ``peers.py`` turns these into the table.

The workload is the same for every contender: a trial is a NAS-Bench-201 cell, its 12-epoch
validation accuracy looked up, and a sleep of its 12-epoch training time times
``--time-scale``. An ASHA trial that goes on to 200 epochs sleeps the other 188 epochs' worth.
The peers' trial function reads arrays that ``peers.py`` built from `NB201TabularTask`'s
tables (the same data as the morphml_dask contenders, which run the task itself) and imports
nothing of morphml_dask, so that a Ray actor or Optuna process does not pay for importing
torch.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _meta import versions

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]

EDGES = 6
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
SHORT, FULL = 12, 200
# Ray's and Optuna's ASHA stop a trial at the 12-epoch report unless it is in the top 1/ETA
# of the results at that rung so far; morphml_dask's promotes the top 1/ETA to 200 epochs.
ETA = 3


@dataclass(frozen=True)
class Lookup:
    """NAS-Bench-201 CIFAR-10, indexed by NAS-Bench-201 index, and how ops map to indices."""

    val_12: FloatArray
    train_time_200: FloatArray
    index_of_code: IntArray  # sum(op_k * 5**k) over the edges -> NAS-Bench-201 index
    time_scale: float

    def index(self, ops: Sequence[str]) -> int:
        code = sum(OPS.index(op) * len(OPS) ** k for k, op in enumerate(ops))
        return int(self.index_of_code[code])

    def train(self, index: int, first: int, last: int) -> float:
        """Sleep the scaled cost of epochs ``first`` to ``last``; the 12-epoch accuracy."""
        time.sleep(self.train_time_200[index] * (last - first) / FULL * self.time_scale)
        return float(self.val_12[index])


def load_lookup(path: Path, time_scale: float) -> Lookup:
    """The arrays `peers.py` wrote from `NB201TabularTask`'s tables (``np.savez``)."""
    with np.load(path) as data:
        return Lookup(
            val_12=data["val_12"],
            train_time_200=data["train_time_200"],
            index_of_code=data["index_of_code"],
            time_scale=time_scale,
        )


@dataclass
class Outcome:
    """What a contender reports: see the module docstring."""

    jobs: list[tuple[float, float]]
    configs: list[tuple[int, float]]
    promoted: int
    wall_s: float
    versions: dict[str, str]
    notes: str = ""


# -- morphml_dask and the bare Dask loop ---------------------------------------------------


def _local_cluster(slots: int) -> Any:
    from distributed import LocalCluster

    return LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=2,
        threads_per_worker=slots // 2,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )


def _warm_worker() -> None:
    """Import the task and read its tables once, so the first trials do not pay for it."""
    from morphml_dask.space import CellSpace
    from morphml_dask.tasks import NB201TabularTask

    NB201TabularTask("cifar10").evaluate(CellSpace().from_index(0), SHORT)


def _capped_asha(configurations: int, seed: int) -> Any:
    """morphml_dask's ASHA over the budgets (12, 200), sampling ``configurations`` cells and
    then only promoting: the peers' ASHA runs sample a fixed number of configurations, and
    `ASHA`'s ``max_trials`` would count promotions too."""
    from morphml_dask.optim import ASHA
    from morphml_dask.space import CellSpace
    from morphml_dask.trial import Trial

    class CappedASHA(ASHA):
        def __init__(self) -> None:
            super().__init__(CellSpace(), budgets=[SHORT, FULL], eta=ETA, seed=seed)
            self.sampled = 0

        def _promotable(self) -> bool:
            return any(
                rung.top
                and rung.waiting
                and (-rung.waiting[0][0], -rung.waiting[0][1]) >= rung.top[0]
                for rung in self._rungs.values()
            )

        def _suggest(self, n: int) -> list[Trial]:
            trials = []
            for _ in range(n):
                if self.sampled >= configurations and not self._promotable():
                    break
                trial = self._get_job()
                self.sampled += trial.parent is None
                trials.append(trial)
            return trials

        def _done(self) -> bool:
            return self.sampled >= configurations and not self._promotable()

    return CappedASHA()


def run_morphml(args: argparse.Namespace, asha: bool) -> Outcome:
    from distributed import Client

    from morphml_dask.driver import Search
    from morphml_dask.optim import RandomSearch
    from morphml_dask.space import CellSpace
    from morphml_dask.tasks import NB201TabularTask

    optimizer = (
        _capped_asha(args.trials, args.seed)
        if asha
        else RandomSearch(CellSpace(), budget=SHORT, max_trials=args.trials, seed=args.seed)
    )
    # A temporary folder as the store: the worker processes write to it too (not the driver's
    # memory), and it costs the search what a real store costs.
    with (
        _local_cluster(args.slots) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
        tempfile.TemporaryDirectory(prefix="morphml-peers-") as folder,
    ):
        client.wait_for_workers(2)
        client.run(_warm_worker)
        search = Search(
            optimizer,
            NB201TabularTask("cifar10", time_scale=args.time_scale),
            store=os.path.join(folder, "store"),
            client=client,
            name="peers",
        )
        start = time.perf_counter()
        table = search.run()
        wall = time.perf_counter() - start
    ran = table.dropna(subset=["start_time", "end_time"]).sort_values("start_time")
    short = table[table["budget"] == SHORT]
    reused = int(table["reused"].sum())
    return Outcome(
        jobs=list(zip(ran["start_time"].astype(float), ran["end_time"].astype(float), strict=True)),
        configs=[
            (int(i), float(v))
            for i, v in zip(short["index"], short["val_accuracy"], strict=True)
            if v == v  # a failed trial has no accuracy (NaN)
        ],
        promoted=int((table["budget"] == FULL).sum()),
        wall_s=wall,
        versions=versions("morphml_dask", "dask", "distributed"),
        notes=f"{reused} repeated cells answered from the store without running" if reused else "",
    )


def _bare_trial(lookup: Lookup, index: int) -> tuple[float, float, int, float]:
    start = time.time()
    value = lookup.train(index, 0, SHORT)
    return start, time.time(), index, value


def run_bare_dask(args: argparse.Namespace, lookup: Lookup) -> Outcome:
    from distributed import Client, as_completed

    rng = np.random.default_rng(args.seed)
    indices = rng.integers(len(lookup.val_12), size=args.trials).tolist()
    results: list[tuple[float, float, int, float]] = []
    with _local_cluster(args.slots) as cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(2)
        shared = client.scatter(lookup, broadcast=True)
        start = time.perf_counter()
        first = [client.submit(_bare_trial, shared, i, pure=False) for i in indices[: args.slots]]
        pending = indices[args.slots :]
        completed = as_completed(first)  # type: ignore[no-untyped-call]
        for future in completed:
            results.append(future.result())
            future.release()
            if pending:
                completed.add(client.submit(_bare_trial, shared, pending.pop(), pure=False))  # type: ignore[no-untyped-call]
        wall = time.perf_counter() - start
    return Outcome(
        jobs=[(s, e) for s, e, _, _ in results],
        configs=[(i, v) for _, _, i, v in results],
        promoted=0,
        wall_s=wall,
        versions=versions("dask", "distributed"),
    )


# -- Ray Tune ------------------------------------------------------------------------------


def _ray_trainable(config: dict[str, Any], lookup: Lookup, asha: bool) -> None:
    from ray import tune

    index = lookup.index([config[f"edge{k}"] for k in range(EDGES)])
    start = time.time()
    value = lookup.train(index, 0, SHORT)
    report = {"index": index, "val_12": value, "start": start, "epoch": SHORT}
    tune.report({**report, "val_accuracy": value, "end": time.time()})
    if asha:
        lookup.train(index, SHORT, FULL)
        tune.report({**report, "epoch": FULL, "val_accuracy": value, "end": time.time()})


def run_ray(args: argparse.Namespace, lookup: Lookup, asha: bool) -> Outcome:
    # No usage reporting (there is no network), no automatic CSV/JSON/TensorBoard loggers
    # (morphml_dask writes to memory here too) and no progress table.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    ray.init(
        num_cpus=args.slots,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=256 * 2**20,
        log_to_driver=False,
    )
    try:
        scheduler = (
            ASHAScheduler(time_attr="epoch", grace_period=SHORT, max_t=FULL, reduction_factor=ETA)
            if asha
            else FIFOScheduler()
        )
        tuner = tune.Tuner(
            tune.with_parameters(_ray_trainable, lookup=lookup, asha=asha),
            param_space={f"edge{k}": tune.choice(list(OPS)) for k in range(EDGES)},
            tune_config=tune.TuneConfig(
                metric="val_accuracy",
                mode="max",
                scheduler=scheduler,
                num_samples=args.trials,
                max_concurrent_trials=args.slots,
                # Tune's advice for many short trials: keep the actors instead of starting
                # a process per trial.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(storage_path=str(args.out.parent / "ray"), verbose=0),
        )
        start = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - start
    finally:
        ray.shutdown()
    rows = [r.metrics for r in grid if r.metrics and "index" in r.metrics]
    errors = [str(r.error) for r in grid if r.error is not None]
    return Outcome(
        jobs=[(float(m["start"]), float(m["end"])) for m in rows],
        configs=[(int(m["index"]), float(m["val_12"])) for m in rows],
        promoted=sum(int(m["epoch"]) == FULL for m in rows),
        wall_s=wall,
        versions=versions("ray"),
        notes=f"{len(errors)} trials errored, first: {errors[0][:300]}" if errors else "",
    )


# -- Optuna --------------------------------------------------------------------------------


def _optuna_objective(lookup: Lookup, asha: bool) -> Callable[[Any], float]:
    def objective(trial: Any) -> float:
        import optuna

        ops = [trial.suggest_categorical(f"edge{k}", OPS) for k in range(EDGES)]
        index = lookup.index(ops)
        start = time.time()
        value = lookup.train(index, 0, SHORT)
        run = {"index": index, "val_12": value, "start": start, "epoch": SHORT}
        if asha:
            trial.report(value, SHORT)
            if trial.should_prune():
                trial.set_user_attr("run", {**run, "end": time.time()})
                raise optuna.TrialPruned()
            lookup.train(index, SHORT, FULL)
            run["epoch"] = FULL
        trial.set_user_attr("run", {**run, "end": time.time()})
        return value

    return objective


def _optuna_study(storage: Any, asha: bool, seed: int, name: str | None = None) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (
        optuna.pruners.SuccessiveHalvingPruner(min_resource=SHORT, reduction_factor=ETA)
        if asha
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=seed),
        pruner=pruner,
        load_if_exists=name is not None,
    )


def _optuna_outcome(study: Any, wall: float, extra: Sequence[str] = ()) -> Outcome:
    runs = [t.user_attrs["run"] for t in study.trials if "run" in t.user_attrs]
    failed = [t for t in study.trials if "run" not in t.user_attrs]
    return Outcome(
        jobs=[(float(r["start"]), float(r["end"])) for r in runs],
        configs=[(int(r["index"]), float(r["val_12"])) for r in runs],
        promoted=sum(int(r["epoch"]) == FULL for r in runs),
        wall_s=wall,
        versions=versions("optuna", *extra),
        notes=f"{len(failed)} trials recorded no run" if failed else "",
    )


def run_optuna_threads(args: argparse.Namespace, lookup: Lookup, asha: bool) -> Outcome:
    study = _optuna_study(None, asha, args.seed)
    start = time.perf_counter()
    study.optimize(_optuna_objective(lookup, asha), n_trials=args.trials, n_jobs=args.slots)
    return _optuna_outcome(study, time.perf_counter() - start)


def _journal_worker(path: str, name: str, lookup: Lookup, trials: int, threads: int) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(JournalFileBackend(path))
    study = optuna.load_study(study_name=name, storage=storage)
    study.optimize(_optuna_objective(lookup, False), n_trials=trials, n_jobs=threads)


def run_optuna_journal(args: argparse.Namespace, lookup: Lookup) -> Outcome:
    import multiprocessing

    import optuna
    from optuna.storages.journal import JournalFileBackend

    path = str(args.out.parent / "optuna-journal.log")
    storage = optuna.storages.JournalStorage(JournalFileBackend(path))
    _optuna_study(storage, False, args.seed, name="peers")  # created here, loaded by each worker
    shares = [args.trials // 2, args.trials - args.trials // 2]
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_journal_worker, args=(path, "peers", lookup, share, args.slots // 2)
        )
        for share in shares
    ]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    codes = [w.exitcode for w in workers]
    if any(codes):
        raise RuntimeError(f"an Optuna worker process failed: exit codes {codes}")
    return _optuna_outcome(optuna.load_study(study_name="peers", storage=storage), wall)


def run_optuna_dask(args: argparse.Namespace, lookup: Lookup) -> Outcome:
    from distributed import Client, wait

    try:
        from optuna_integration import DaskStorage
    except ImportError:
        from optuna.integration import DaskStorage

    with _local_cluster(args.slots) as cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(2)
        study = _optuna_study(DaskStorage(client=client), False, args.seed, name="peers")
        objective = _optuna_objective(lookup, False)
        # Optuna's documented pattern: one long-running optimize() task per slot, each
        # running its share of the trials against the storage on the scheduler.
        shares = [
            args.trials // args.slots + (k < args.trials % args.slots) for k in range(args.slots)
        ]
        start = time.perf_counter()
        futures = [
            client.submit(study.optimize, objective, n_trials=share, pure=False)
            for share in shares
            if share
        ]
        wait(futures)  # type: ignore[no-untyped-call]
        for future in futures:
            future.result()
        wall = time.perf_counter() - start
        return _optuna_outcome(study, wall, extra=("optuna-integration", "dask", "distributed"))


# -- the command line ----------------------------------------------------------------------

CONTENDERS = (
    "morphml-random",
    "morphml-asha",
    "bare-dask",
    "ray-tune-random",
    "ray-tune-asha",
    "optuna-threads-random",
    "optuna-threads-asha",
    "optuna-journal-random",
    "optuna-dask-random",
)


def run(args: argparse.Namespace) -> Outcome:
    name = args.contender
    if name.startswith("morphml-"):
        return run_morphml(args, asha=name.endswith("asha"))
    lookup = load_lookup(args.lookup, args.time_scale)
    if name == "bare-dask":
        return run_bare_dask(args, lookup)
    if name.startswith("ray-tune-"):
        return run_ray(args, lookup, asha=name.endswith("asha"))
    if name.startswith("optuna-threads-"):
        return run_optuna_threads(args, lookup, asha=name.endswith("asha"))
    if name == "optuna-journal-random":
        return run_optuna_journal(args, lookup)
    return run_optuna_dask(args, lookup)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("contender", choices=CONTENDERS)
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--slots", type=int, required=True)
    parser.add_argument("--time-scale", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lookup", type=Path, required=True, help="the .npz peers.py wrote")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    outcome = run(args)
    document = {
        "contender": args.contender,
        "jobs": outcome.jobs,
        "configs": outcome.configs,
        "promoted": outcome.promoted,
        "wall_s": outcome.wall_s,
        "versions": outcome.versions,
        "notes": outcome.notes,
    }
    args.out.write_text(json.dumps(document))


if __name__ == "__main__":
    main()
