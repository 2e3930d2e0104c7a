"""morphml_dask next to Ray Tune and Optuna on the same simulated NAS-Bench-201 search.

    bash benchmarks/peers-env.sh          # once: .bench-venv with Ray, Optuna and the package
    python benchmarks/peers.py --trials 2000 --slots 50 --median 0.5 \\
        --json benchmarks/results/peers.json
    python benchmarks/peers.py --quick    # 300 trials, 16 slots, no ASHA runs

The workload is the same for every contender: a trial samples a NAS-Bench-201 cell uniformly
(15,625 cells), looks up its 12-epoch CIFAR-10 validation accuracy and sleeps its 12-epoch
training time scaled so that the median trial sleeps ``--median`` seconds; ``--trials``
configurations, ``--slots`` trials at a time. ASHA variants (rungs at 12 and 200 epochs,
reduction factor 3) sleep the other 188 epochs' worth for each configuration that goes on.
The contenders:

- ``morphml-random`` / ``morphml-asha``: `Search` with `RandomSearch` / `ASHA` on a
  ``LocalCluster`` of 2 worker processes x ``slots/2`` threads, store in memory;
- ``bare-dask``: the same cluster, ``client.submit`` + ``as_completed`` keeping ``slots``
  in flight: the floor for any driver on Dask;
- ``ray-tune-random`` / ``ray-tune-asha``: Ray Tune's FIFO / ASHA scheduler on a local Ray
  (``num_cpus=slots``, one CPU per trial, so exactly ``slots`` run at once; no dashboard;
  ``reuse_actors=True``, Tune's advice for many short trials);
- ``optuna-threads-random`` / ``optuna-threads-asha``: ``study.optimize(n_jobs=slots)`` on
  in-memory storage with ``RandomSampler`` (and ``SuccessiveHalvingPruner``);
- ``optuna-journal-random``: ``JournalStorage`` on a file, 2 processes x ``slots/2`` threads;
- ``optuna-dask-random``: Optuna's ``DaskStorage`` (optuna-integration), one
  ``study.optimize`` task per slot on the same ``LocalCluster``.

Each runs in its own process with ``.bench-venv``'s interpreter and a timeout
(`_peers_contenders.py`); one that fails or times out is reported with its error. From the
jobs each contender ran (start and end taken inside the trial):

- makespan: first start to last end; ``wall``: the whole search call, start-up included;
- utilisation: the makespan of a zero-overhead greedy list schedule of the same durations on
  ``slots`` slots, divided by the measured makespan (1.0: no slot ever waited);
- trials/s: configurations evaluated per second of makespan;
- the best 12-epoch validation accuracy found, and the 200-epoch accuracy of that cell.

morphml_dask answers a cell it has already evaluated from its store without running it again
(``jobs`` < ``configs``); the peers run every repeat.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _peers_contenders import CONTENDERS

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).resolve().parent / "_peers_contenders.py"
BENCH_PYTHON = ROOT / ".bench-venv" / "bin" / "python"
DEFAULT_JSON = Path(__file__).parent / "results" / "peers.json"

# --quick runs one contender per system, without the long ASHA runs.
QUICK_CONTENDERS = (
    "morphml-random",
    "bare-dask",
    "ray-tune-random",
    "optuna-threads-random",
    "optuna-journal-random",
)
# These need only the package and Dask, so they run without .bench-venv too.
OURS = ("morphml-random", "morphml-asha", "bare-dask")
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
QUICK = {"trials": 300, "slots": 16, "median": 0.1, "timeout": 45.0}
FULL = {"trials": 2000, "slots": 50, "median": 0.5, "timeout": 900.0}


def write_lookup(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], float]:
    """Save the arrays the peers' trials read (from `NB201TabularTask`'s tables) to ``path``;
    return the 12-epoch and 200-epoch validation accuracies and the median 12-epoch cost."""
    from morphml_dask.space import NUM_CELLS, CellSpace
    from morphml_dask.tasks._nb201 import _columns

    space = CellSpace()
    table = _columns("cifar10")
    index_of_code = np.empty(NUM_CELLS, dtype=np.int64)
    for index in range(NUM_CELLS):
        ops = space.to_ops(space.from_index(index))
        index_of_code[sum(OPS.index(op) * len(OPS) ** k for k, op in enumerate(ops))] = index
    np.savez(
        path,
        val_12=table.val_12,
        train_time_200=table.train_time_200,
        index_of_code=index_of_code,
    )
    median_cost = float(np.median(table.train_time_200 * 12 / 200))
    return table.val_12, table.val_200, median_cost


def greedy_makespan(durations: Sequence[float], slots: int) -> float:
    """Makespan of a zero-overhead list schedule: each job, in order, to the earliest-free slot."""
    free = [0.0] * slots
    for duration in durations:
        heapq.heapreplace(free, free[0] + duration)
    return max(free)


def run_contender(
    name: str, args: argparse.Namespace, time_scale: float, lookup: Path, workdir: Path
) -> dict[str, Any]:
    """Run one contender in its own process; its raw document, or ``{"error": ...}``."""
    python = BENCH_PYTHON if BENCH_PYTHON.exists() else Path(sys.executable)
    if not BENCH_PYTHON.exists() and name not in OURS:
        return {
            "error": f"skipped: {BENCH_PYTHON.relative_to(ROOT)} is missing; create it with"
            " `bash benchmarks/peers-env.sh` (Ray, Optuna and this package, kept out of the"
            " package's dependencies)"
        }
    out, log = workdir / f"{name}.json", workdir / f"{name}.log"
    command = [
        str(python),
        str(CHILD),
        name,
        f"--trials={args.trials}",
        f"--slots={args.slots}",
        f"--time-scale={time_scale!r}",
        f"--seed={args.seed}",
        f"--lookup={lookup}",
        f"--out={out}",
    ]
    started = time.perf_counter()
    with log.open("w") as handle:
        # A session of its own, so that a timeout also ends what the contender started
        # (Ray's raylet and workers, Dask's nannies).
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return {"error": f"timed out after {args.timeout:.0f} s", "process_s": args.timeout}
    elapsed = time.perf_counter() - started
    if code != 0 or not out.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-12:]
        return {"error": f"exit code {code}: " + " | ".join(tail), "process_s": elapsed}
    document: dict[str, Any] = json.loads(out.read_text())
    document["process_s"] = elapsed
    return document


def summarise(
    raw: dict[str, Any], slots: int, val_12: np.ndarray[Any, Any], val_200: np.ndarray[Any, Any]
) -> dict[str, Any]:
    """The figures of one contender's row."""
    row: dict[str, Any] = {
        "makespan_s": None,
        "utilisation": None,
        "trials_per_s": None,
        "best_val_accuracy_12": None,
        "best_val_accuracy_200": None,
        "versions": raw.get("versions", {}),
        "error": raw.get("error"),
        "process_s": round(float(raw.get("process_s", 0.0)), 2),
    }
    jobs = sorted((float(s), float(e)) for s, e in raw.get("jobs", []))
    configs = raw.get("configs", [])
    if row["error"] is not None or not jobs or not configs:
        if row["error"] is None:
            row["error"] = "no trial completed"
        return row
    makespan = max(e for _, e in jobs) - jobs[0][0]
    durations = [e - s for s, e in jobs]
    ideal = greedy_makespan(durations, slots)
    best_index = max(configs, key=lambda c: (c[1], -c[0]))[0]
    row.update(
        makespan_s=round(makespan, 3),
        utilisation=round(ideal / makespan, 4),
        trials_per_s=round(len(configs) / makespan, 2),
        best_val_accuracy_12=float(val_12[best_index]),
        best_val_accuracy_200=float(val_200[best_index]),
        ideal_s=round(ideal, 3),
        wall_s=round(float(raw["wall_s"]), 3),
        configs=len(configs),
        jobs=len(jobs),
        promoted=int(raw.get("promoted", 0)),
        median_job_s=round(float(np.median(durations)), 4),
        notes=raw.get("notes", ""),
    )
    return row


def _table(rows: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"NAS-Bench-201 CIFAR-10, {args.trials} configurations, {args.slots} slots, median trial"
        f" {args.median} s",
        f"{'contender':<23}{'configs':>8}{'jobs':>6}{'to 200':>7}{'makespan s':>11}"
        f"{'wall s':>8}{'ideal s':>8}{'util':>7}{'trials/s':>9}{'best 12ep':>10}{'its 200ep':>10}",
    ]
    for name, r in rows.items():
        if r["makespan_s"] is None:
            lines.append(f"{name:<23}  {r['error'][:150]}")
            continue
        lines.append(
            f"{name:<23}{r['configs']:>8}{r['jobs']:>6}{r['promoted']:>7}{r['makespan_s']:>11.2f}"
            f"{r['wall_s']:>8.1f}{r['ideal_s']:>8.2f}{r['utilisation']:>7.3f}"
            f"{r['trials_per_s']:>9.1f}{r['best_val_accuracy_12']:>10.2f}"
            f"{r['best_val_accuracy_200']:>10.2f}"
        )
    versions: dict[str, str] = {}
    for r in rows.values():
        versions.update(r["versions"])
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    for name, r in rows.items():
        if r.get("notes"):
            lines.append(f"{name}: {r['notes']}")
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="300 trials, 16 slots, median 0.1 s, 45 s per contender, the random-search ones",
    )
    parser.add_argument("--trials", type=int, help=f"configurations (default {FULL['trials']})")
    parser.add_argument("--slots", type=int, help=f"trials at once, even (default {FULL['slots']})")
    parser.add_argument("--median", type=float, help="median trial seconds (default 0.5)")
    parser.add_argument("--timeout", type=float, help="seconds per contender (default 900)")
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, help="default: all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.contenders is None:
        args.contenders = list(QUICK_CONTENDERS if args.quick else CONTENDERS)
    if args.trials < 1:
        parser.error(f"--trials must be at least 1, got {args.trials}; e.g. --trials 2000")
    if args.slots < 2 or args.slots % 2:
        parser.error(
            f"--slots must be an even number of at least 2 (2 worker processes x slots/2"
            f" threads), got {args.slots}; e.g. --slots 50"
        )
    if not args.median > 0:
        parser.error(f"--median must be a positive number of seconds, got {args.median}")
    if not args.timeout > 0:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    if not BENCH_PYTHON.exists():
        print(
            f"{BENCH_PYTHON.relative_to(ROOT)} is missing: Ray Tune and Optuna are skipped."
            " Create it with `bash benchmarks/peers-env.sh`.",
            file=sys.stderr,
        )
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="peers-") as directory:
        workdir = Path(directory)
        lookup = workdir / "nb201.npz"
        val_12, val_200, median_cost = write_lookup(lookup)
        time_scale = args.median / median_cost
        for name in args.contenders:
            raw = run_contender(name, args, time_scale, lookup, workdir)
            rows[name] = summarise(raw, args.slots, val_12, val_200)
            status = rows[name]["error"] or f"makespan {rows[name]['makespan_s']} s"
            print(f"{name}: {status}", file=sys.stderr, flush=True)
    print(_table(rows, args))
    document = {
        "benchmark": "peers",
        "settings": {
            "trials": args.trials,
            "slots": args.slots,
            "median_target_s": args.median,
            "median_12_epoch_cost_s": round(median_cost, 3),
            "time_scale": time_scale,
            "timeout_s": args.timeout,
            "seed": args.seed,
            "quick": args.quick,
            "interpreter": ".bench-venv" if BENCH_PYTHON.exists() else "current (peers skipped)",
        },
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count() or 1,
        "argv": sys.argv[1:],
        "peers": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
