"""Run a morphml_dask search on a SLURM site; the Dask workers come and go as SLURM jobs.

Start it where sbatch works and the compute nodes can reach you (a login node, or a small
CPU job), inside tmux or screen: this process runs the scheduler and the search driver.

    python clusters/slurm/launch.py examples/nb201.yaml --jobs 8

Job settings come from dask-jobqueue's configuration (copy clusters/slurm/jobqueue.yaml to
~/.config/dask/jobqueue.yaml); the options below override it. The experiment should set
``gpus_per_trial: 1`` so that each trial takes one of a worker's GPUs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path, help="the experiment YAML")
    parser.add_argument("--jobs", type=int, default=4, help="most SLURM jobs at once (4)")
    parser.add_argument("--min-jobs", type=int, default=0, help="fewest SLURM jobs (0)")
    parser.add_argument("--gpus-per-worker", type=int, default=1, help="GPUs per job (1)")
    parser.add_argument("--gres", help="GRES name GPUs are asked under: gpu (default), gpu:a100")
    parser.add_argument("--cores", type=int, help="cores per job (jobqueue.slurm.cores)")
    parser.add_argument("--memory", help="memory per job, e.g. 64GB (jobqueue.slurm.memory)")
    parser.add_argument("--walltime", help="per job, e.g. 04:00:00 (jobqueue.slurm.walltime)")
    parser.add_argument("--queue", help="the partition (jobqueue.slurm.queue)")
    parser.add_argument("--store", help="store URL, overriding the experiment's")
    parser.add_argument(
        "--queue-wait",
        type=float,
        default=3600.0,
        help="seconds the search may have no worker (jobs queueing) before it gives up (3600)",
    )
    args = parser.parse_args(argv)

    from distributed import Client

    from morphml_dask.deploy import slurm_cluster
    from morphml_dask.driver import search_from_experiment
    from morphml_dask.experiment import load_experiment

    experiment = load_experiment(args.experiment)
    if args.gpus_per_worker and not experiment.gpus_per_trial:
        print("note: the experiment has gpus_per_trial 0: trials will not take GPUs", flush=True)
    cluster = slurm_cluster(
        gpus_per_worker=args.gpus_per_worker,
        gres=args.gres,
        cores=args.cores,
        memory=args.memory,
        walltime=args.walltime,
        queue=args.queue,
    )
    with cluster, Client(cluster) as client:  # type: ignore[no-untyped-call]
        # Jobs are submitted while trials wait and cancelled when workers stay idle; retired
        # workers (--lifetime) are replaced. The search queues trials for the workers there
        # are (one slot's worth while there are none), so adapt grows the cluster as jobs start.
        cluster.adapt(minimum_jobs=args.min_jobs, maximum_jobs=args.jobs)
        print(f"dashboard: {client.dashboard_link}", flush=True)
        print(cluster.job_script(), flush=True)
        search = search_from_experiment(
            experiment, store=args.store, client=client, worker_timeout=args.queue_wait
        )
        table = search.run()
    done = table[table["state"] == "complete"]
    print(f"{len(table)} trials, {len(done)} complete; results in {search.store.url}")
    best = search.store.best(3, search.task.objective, search.task.direction)
    print(best[["trial_id", search.task.objective, "job_id"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
