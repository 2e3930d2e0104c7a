"""The ``morphml`` command: thin commands over the public API."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from morphml_dask.exceptions import MorphMLError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``morphml`` command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.command(args))
    except MorphMLError as error:
        print(f"morphml: error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="morphml", description="Distributed neural-architecture search on Dask."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train one architecture end to end and print its metrics",
        description="Train one architecture (sampled from a space, or read from JSON) on "
        "scikit-learn's digits or a Zarr dataset, and print its metrics.",
    )
    train.add_argument("--arch", type=Path, help="architecture JSON (ArchGraph.to_dict())")
    train.add_argument("--seed", type=int, default=0, help="seed of sampling and training")
    train.add_argument("--epochs", type=int, default=5, help="training budget in epochs")
    train.add_argument("--max-nodes", type=int, default=4, help="DAG space size when sampling")
    train.add_argument(
        "--dataset", default="digits", help="'digits' or a Zarr URL with images and labels"
    )
    train.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    train.add_argument("--output", type=Path, help="write the metrics and curve as JSON here")
    train.set_defaults(command=_train)
    return parser


def _train(args: argparse.Namespace) -> int:
    from morphml_dask.space import ArchGraph, DagSpace
    from morphml_dask.tasks import TrainingTask, open_xarray_dataset

    if args.arch is not None:
        arch = ArchGraph.from_dict(json.loads(args.arch.read_text(encoding="utf-8")))
    else:
        arch = DagSpace(max_nodes=args.max_nodes).sample(np.random.default_rng(args.seed))
    dataset = "digits" if args.dataset == "digits" else open_xarray_dataset(args.dataset)
    task = TrainingTask(dataset, seed=args.seed)
    print(f"architecture {arch.fingerprint}: {arch!r}")
    result = task.evaluate(arch, args.epochs, device=args.device)
    print(f"{'epoch':>5} {'train_loss':>10} {'val_loss':>9} {'val_acc %':>9}")
    for point in result.curve:
        print(
            f"{int(point['epoch']):>5} {point['train_loss']:>10.4f} "
            f"{point['val_loss']:>9.4f} {point['val_accuracy']:>9.2f}"
        )
    for name, value in result.metrics.items():
        print(f"{name:>14}: {value:.6g}")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "arch": arch.to_dict(),
            "fingerprint": arch.fingerprint,
            "task": task.to_dict(),
            "metrics": result.metrics,
            "curve": result.curve,
        }
        args.output.write_text(json.dumps(document, indent=2), encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
