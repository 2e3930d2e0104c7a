"""Chaos: a search while worker processes, or the driver, are SIGKILLed; what the store keeps.

    python benchmarks/chaos.py --trials 1000 --workers 4 --json benchmarks/results/chaos.json
    python benchmarks/chaos.py --trials 300 --driver-kills 5
    python benchmarks/chaos.py --training --trials 200 --workers 2 --kill-every 8 \
        --json benchmarks/results/chaos_training.json

Worker kills (the default): regularized evolution on the simulated NAS-Bench-201 task (median
trial ``--median`` seconds) on a ``LocalCluster`` of ``--workers`` worker processes under
nannies, while a thread SIGKILLs a random worker process every ``--kill-every`` seconds (0.5x
to 1.5x of it); the nanny starts a new one and Dask retries the interrupted trials.

Driver kills (``--driver-kills K``): the same search through ``morphml run`` in a subprocess
connected to the cluster, SIGKILLed K times at random moments, each time continued with
``morphml resume``.

Real training on S3 (``--training``): ASHA (rungs of 1, 3 and 9 epochs) over small DAG
networks (`DagSpace`, at most 3 nodes) trained on scikit-learn's digits (`TrainingTask`), so
that every promotion loads its parent's weights, with the store on a moto S3 server reached
through a `TcpOutage` forwarder. Worker processes are SIGKILLed every ``--kill-every``
seconds and the endpoint goes down for ``--outage`` seconds, ``--outage-after`` seconds after
the first trial started. The result adds the failed trials a kill or the outage caused, the
promoted trials, the parents whose weights are missing or do not load, and the outage window.

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

from morphml_dask.chaos import ChaosReport, driver_chaos, training_chaos, worker_chaos
from morphml_dask.optim import ASHA, RegularizedEvolution
from morphml_dask.space import CellSpace, DagSpace
from morphml_dask.tasks import NB201TabularTask, TrainingTask

DEFAULT_JSON = Path(__file__).parent / "results" / "chaos.json"
# The median simulated 12-epoch cost of a NAS-Bench-201 cell on CIFAR-10, in seconds
# (benchmarks/driver_utilisation.py measures it); time_scale turns it into --median.
MEDIAN_COST_S = 110.0
POPULATION = 20
BUDGETS = [1, 3, 9]  # epochs of the ASHA rungs in --training mode


def run(args: argparse.Namespace, folder: Path) -> ChaosReport:
    from distributed import Client, LocalCluster

    if args.training:
        return run_training(args, folder)
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


def run_training(args: argparse.Namespace, folder: Path) -> ChaosReport:
    """The ``--training`` mode: real training, ASHA promotions, S3, kills and an outage."""
    import os
    import uuid

    import s3fs
    from distributed import Client, LocalCluster

    from morphml_dask.faults import TcpOutage
    from morphml_dask.testing import moto_s3_server

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    logs = folder / "executions"
    logs.mkdir()
    with (
        moto_s3_server() as endpoint,
        TcpOutage(int(endpoint.rsplit(":", 1)[1])) as outage,
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=args.workers,
            threads_per_worker=args.threads,
            processes=True,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        options = {"key": "testing", "secret": "testing", "endpoint_url": outage.endpoint}
        bucket = f"chaos-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(**options).mkdir(bucket)
        report, _ = training_chaos(
            client,
            ASHA(
                DagSpace(max_nodes=3),
                budgets=BUDGETS,
                eta=3,
                max_trials=args.trials,
                seed=args.seed,
            ),
            TrainingTask("digits", max_epochs=BUDGETS[-1], batch_size=128, seed=args.seed),
            f"s3://{bucket}/search",
            logs,
            outage,
            storage_options=options,
            interval=args.kill_every,
            outage_after=args.outage_after,
            outage_seconds=args.outage,
            seed=args.seed,
            max_retries=args.max_retries,
        )
        return report


def _table(report: ChaosReport) -> str:
    fields = report.to_dict()
    fields.pop("kill_times_s")
    if report.mode != "training-kills-outage":
        for name in ("failed_by_chaos", "promoted", "parents_missing", "parent_errors", "outage_s"):
            fields.pop(name)
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
    parser.add_argument("--training", action="store_true", help="real training on S3")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds the S3 store is down")
    parser.add_argument("--outage-after", type=float, default=5.0, help="seconds before it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-retries",
        type=int,
        help="times the driver runs a lost trial again (morphml.max-retries, 2 by default): "
        "kills every few seconds on two workers exhaust it for a trial now and then",
    )
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
