"""Chaos: a search while worker processes, or the driver, are SIGKILLed; what the store keeps.

    python benchmarks/chaos.py --trials 1000 --workers 4 --json benchmarks/results/chaos.json
    python benchmarks/chaos.py --trials 300 --driver-kills 5

Worker kills (the default): regularized evolution on the simulated NAS-Bench-201 task (median
trial ``--median`` seconds) on a ``LocalCluster`` of ``--workers`` worker processes under
nannies, while a thread SIGKILLs a random worker process every ``--kill-every`` seconds (0.5x
to 1.5x of it); the nanny starts a new one and Dask retries the interrupted trials.

Driver kills (``--driver-kills K``): the same search through ``morphml run`` in a subprocess
connected to the cluster, SIGKILLed K times at random moments, each time continued with
``morphml resume``.

The table and the JSON give the trials requested and stored, rows stored twice, trials lost,
failed trials (and those failed because a worker was lost more often than retries allow), the
kills, the trials the kills interrupted or the driver held, trial executions beyond the first,
and the longest time from a worker kill to an interrupted trial starting again.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from morphml_dask.chaos import ChaosReport, driver_chaos, worker_chaos
from morphml_dask.optim import RegularizedEvolution
from morphml_dask.space import CellSpace
from morphml_dask.tasks import NB201TabularTask

DEFAULT_JSON = Path(__file__).parent / "results" / "chaos.json"
# The median simulated 12-epoch cost of a NAS-Bench-201 cell on CIFAR-10, in seconds
# (benchmarks/driver_utilisation.py measures it); time_scale turns it into --median.
MEDIAN_COST_S = 110.0
POPULATION = 20


def run(args: argparse.Namespace, folder: Path) -> ChaosReport:
    from distributed import Client, LocalCluster

    time_scale = args.median / MEDIAN_COST_S
    logs = folder / "executions"
    logs.mkdir()
    with LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=args.workers,
        threads_per_worker=args.threads,
        processes=True,
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        if args.driver_kills:
            experiment = folder / "experiment.yaml"
            experiment.write_text(
                yaml.safe_dump(
                    {
                        "name": "chaos-driver",
                        "space": {"name": "nb201-cell"},
                        "task": {"name": "nb201-tabular", "time_scale": time_scale},
                        "optimizer": {
                            "name": "regularized-evolution",
                            "population_size": POPULATION,
                            "seed": args.seed,
                        },
                        "max_trials": args.trials,
                        "store": str(folder / "store"),
                    }
                )
            )
            return driver_chaos(
                cluster.scheduler_address,
                experiment,
                str(folder / "store"),
                logs,
                kills=args.driver_kills,
                seed=args.seed,
                first_kill_after=(args.kill_every / 2, args.kill_every * 1.5),
            )
        with Client(cluster) as client:  # type: ignore[no-untyped-call]
            report, _ = worker_chaos(
                client,
                RegularizedEvolution(
                    CellSpace(), population_size=POPULATION, max_trials=args.trials, seed=args.seed
                ),
                NB201TabularTask(time_scale=time_scale),
                str(folder / "store"),
                logs,
                interval=args.kill_every,
                seed=args.seed,
            )
            return report


def _table(report: ChaosReport) -> str:
    fields = report.to_dict()
    fields.pop("kill_times_s")
    width = max(len(k) for k in fields)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in fields.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--median", type=float, default=0.2, help="median trial seconds")
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills")
    parser.add_argument("--driver-kills", type=int, default=0, help="kill the driver instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="morphml-chaos-") as folder:
        report = run(args, Path(folder))
    print(_table(report))
    gaps = [b - a for a, b in zip(report.kill_times_s, report.kill_times_s[1:], strict=False)]
    document: dict[str, Any] = {
        "benchmark": "chaos",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "argv": sys.argv[1:],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "median_seconds_between_kills": round(statistics.median(gaps), 3) if gaps else None,
        "result": report.to_dict(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
