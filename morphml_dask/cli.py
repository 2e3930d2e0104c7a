"""The ``morphml`` command: thin commands over the public API."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask.exceptions import (
    ClusterError,
    MorphMLError,
    SecurityError,
    StorageError,
    StorageInputError,
)

if TYPE_CHECKING:
    from morphml_dask._progress import ProgressBar
    from morphml_dask.driver import Search

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
    except ModuleNotFoundError as error:
        package = (error.name or "").split(".")[0]
        extra = _EXTRAS.get(package)
        if extra is None:
            raise
        print(
            f"morphml: error: this command needs the Python package {package!r}, "
            f"which is not installed\n  fix: pip install 'morphml_dask[{extra}]'",
            file=sys.stderr,
        )
        return 2


# Optional packages, by the extra that installs them.
_EXTRAS = {
    "matplotlib": "report",
    "s3fs": "s3",
    "dask_jobqueue": "slurm",
    "dask_kubernetes": "kubernetes",
    "bokeh": "dashboard",
}


@contextlib.contextmanager
def _reading_store(url: str) -> Iterator[None]:
    """Errors of reading an existing store (no such endpoint, bucket or credentials) as a
    `StorageError` that says what to check."""
    try:
        yield
    except (MorphMLError, ModuleNotFoundError):
        raise
    except Exception as error:
        raise StorageError(
            f"cannot read the store at {url}",
            expected="a reachable store holding a search",
            received=f"{type(error).__name__}: {error}",
            fix="check the URL, and for S3 the endpoint and credentials: --storage-options "
            '\'{"endpoint_url": "http://HOST:PORT"}\' or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, '
            "AWS_SECRET_ACCESS_KEY",
        ) from error


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="morphml", description="Distributed neural-architecture search on Dask."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_train(commands)
    _add_run(commands)
    _add_resume(commands)
    _add_report(commands)
    _add_export(commands)
    return parser


# argparse's type for the object add_subparsers returns is private.
_Commands = Any


def _add_train(commands: _Commands) -> None:
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


def _add_run(commands: _Commands) -> None:
    run = commands.add_parser(
        "run",
        help="run a search described by an experiment YAML on a Dask cluster",
        description="Run the search an experiment YAML describes (space, task, optimizer, "
        "budget, store). Without --scheduler it uses a local cluster of worker processes. "
        "Ctrl-C stops it; `morphml resume URL` continues it.",
    )
    run.add_argument("experiment", type=Path, help="the experiment YAML, e.g. examples/digits.yaml")
    run.add_argument("--store", help="store URL, overriding the experiment's")
    _cluster_arguments(run)
    run.set_defaults(command=_run)


def _add_resume(commands: _Commands) -> None:
    resume = commands.add_parser(
        "resume",
        help="continue a stopped or crashed search from its store",
        description="Continue the search stored at URL from its last checkpoint: trials that "
        "were running are run again under the same ids, stored results are kept.",
    )
    resume.add_argument("url", help="the search's store URL")
    _cluster_arguments(resume)
    resume.set_defaults(command=_resume)


def _add_report(commands: _Commands) -> None:
    report = commands.add_parser(
        "report",
        help="write an HTML report and PNG figures of a stored search",
        description="Read the search stored at URL (a folder or s3://...) and write a "
        "self-contained report.html, with best-so-far, Pareto front, learning curves, failures, "
        "worker timeline and the best architecture, and each figure as a PNG beside it.",
    )
    report.add_argument("url", help="the search's store URL")
    report.add_argument("--out", type=Path, default=Path("report"), help="output folder (./report)")
    report.add_argument(
        "--storage-options", metavar="JSON", help="fsspec options of the store as a JSON object"
    )
    report.add_argument(
        "--objective", help="metric to rank trials by (default: the one the search optimized)"
    )
    report.add_argument("--top", type=int, default=5, help="how many best trials to show (5)")
    report.set_defaults(command=_report)


def _add_export(commands: _Commands) -> None:
    export = commands.add_parser(
        "export",
        help="write a stored trial's model as files that load with plain PyTorch",
        description="Write the model of a trial stored at URL to --out: model.pt2 "
        "(torch.export), state_dict.pt, config.json and a README.md with its metrics; none "
        "of them needs morphml_dask to load.",
    )
    export.add_argument("url", help="the search's store URL")
    export.add_argument(
        "--trial", default="best", help="a trial id, or best: the best by the search's objective"
    )
    export.add_argument("--out", type=Path, required=True, help="output folder, new or empty")
    export.add_argument(
        "--model",
        metavar="MODULE:NAME",
        help="for your own train function: the export hook, export(config, state) -> (model, "
        "example_input); by default the train function's export attribute",
    )
    export.add_argument(
        "--storage-options", metavar="JSON", help="fsspec options of the store as a JSON object"
    )
    export.set_defaults(command=_export)


def _cluster_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--scheduler", help="address of a running Dask scheduler (tcp://HOST:PORT, tls://...)"
    )
    command.add_argument(
        "--cluster",
        choices=["local", "slurm", "kubernetes"],
        help="without --scheduler, the cluster to start (morphml.cluster.kind, local): SLURM "
        "jobs from the site's dask-jobqueue settings, or a DaskCluster on Kubernetes, scaling "
        "from 0 to morphml.cluster.maximum-workers workers",
    )
    command.add_argument(
        "--storage-options",
        metavar="JSON",
        help="fsspec options of the store as a JSON object, e.g. '{\"endpoint_url\": ...}'; "
        "prefer environment variables for credentials, which are never saved",
    )
    command.add_argument(
        "--upload",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="a module of yours (.py, or a package as .zip or .egg) to send to every worker "
        "before the search starts (Client.upload_file), e.g. the file of the space and train "
        "functions on a remote cluster; repeat for more files",
    )
    command.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no live progress bar on a terminal: a status line per 10 trials, as in logs",
    )
    tls = command.add_argument_group(
        "TLS", "encrypt and authenticate every Dask comm (all three files, PEM)"
    )
    tls.add_argument("--tls-ca-file", help="the CA certificate that signed every certificate")
    tls.add_argument("--tls-cert", help="the certificate of this client (and local cluster)")
    tls.add_argument("--tls-key", help="the key of --tls-cert")


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


def _run(args: argparse.Namespace) -> int:
    from morphml_dask.deploy import connect
    from morphml_dask.driver import search_from_experiment
    from morphml_dask.experiment import load_experiment

    tls = _tls(args)
    options = _storage_options(args.storage_options)
    uploads = _uploads(args.upload)
    experiment = load_experiment(args.experiment)
    name, gpus = experiment.name, experiment.gpus_per_trial
    with tls, connect(args.scheduler, args.cluster, name=name, gpus_per_trial=gpus) as client:
        _upload(client, uploads)
        search = search_from_experiment(
            experiment, store=args.store, storage_options=options, client=client
        )
        return _drive(search, experiment.max_trials, progress=args.progress)


def _resume(args: argparse.Namespace) -> int:
    from morphml_dask.deploy import connect
    from morphml_dask.driver import resume, stored_experiment

    tls = _tls(args)
    options = _storage_options(args.storage_options)
    uploads = _uploads(args.upload)
    with _reading_store(args.url):
        experiment = stored_experiment(args.url, options)
    name, gpus = experiment.name, experiment.gpus_per_trial
    with tls, connect(args.scheduler, args.cluster, name=name, gpus_per_trial=gpus) as client:
        _upload(client, uploads)
        search = resume(args.url, options, client=client)
        return _drive(search, search.optimizer.max_trials, progress=args.progress)


def _report(args: argparse.Namespace) -> int:
    from morphml_dask.report import epochs_saved, write_report
    from morphml_dask.storage import open_store

    options = _storage_options(args.storage_options)
    with _reading_store(args.url):
        page = write_report(
            args.url, args.out, storage_options=options, objective=args.objective, top=args.top
        )
        saved = epochs_saved(open_store(args.url, options))
    if saved.pruned:
        print(f"pruning stopped {saved.pruned} trials early and saved {saved}")
    print(page)
    return 0


def _export(args: argparse.Namespace) -> int:
    from morphml_dask.export import EXPORT_FILES, export_trial
    from morphml_dask.storage import open_store

    options = _storage_options(args.storage_options)
    if args.model is not None and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # --model names a module of the current folder
    with _reading_store(args.url):  # an unreachable store says what to check
        open_store(args.url, options).load_checkpoint()
    folder = export_trial(args.url, args.out, args.trial, storage_options=options, model=args.model)
    summary = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    objective = summary["objective"]
    print(f"trial {summary['trial_id']}: {objective['metric']}={objective['value']}")
    for name in EXPORT_FILES:
        print(folder / name)
    return 0


_UPLOADABLE = (".py", ".zip", ".egg")


def _uploads(files: list[Path]) -> list[Path]:
    """The ``--upload`` files, checked, and importable here too: the driver imports the same
    modules (a .py file's folder, or the archive itself, goes on ``sys.path``)."""
    for file in files:
        if not file.exists():
            problem, received = "does not exist", f"{file}: no such file"
        elif not file.is_file():
            problem, received = "is not a file", f"{file}: a folder or a special file"
        elif file.suffix not in _UPLOADABLE:
            problem, received = "is not a module", f"{file}: a {file.suffix or 'suffixless'} file"
        else:
            problem = ""
        if problem:
            raise ClusterError(
                f"--upload {file} {problem}",
                expected=f"a module file ending in {', '.join(_UPLOADABLE)} (a package zipped)",
                received=received,
                fix=f"check the path (relative to {Path.cwd()}), or zip a package folder: "
                "python -m zipfile -c mypkg.zip mypkg/",
            )
        entry = str((file if file.suffix != ".py" else file.parent).resolve())
        if entry not in sys.path:
            sys.path.insert(0, entry)
    return files


def _upload(client: Any, files: list[Path]) -> None:
    """Send each file to the cluster's workers (present and future) before the search; the
    worker processes of a local cluster (no client yet) inherit the path to it instead."""
    if client is None:
        for file in files:
            print(f"{file}: the local cluster's workers import it from where it is", flush=True)
        return
    for file in files:
        try:
            client.upload_file(str(file))
        except Exception as error:  # the module failed to import on a worker, most often
            raise ClusterError(
                f"cannot upload {file} to the cluster",
                expected="a module every worker can import",
                received=f"{type(error).__name__}: {error}"[:300],
                fix="install what the module imports on the workers (their image or "
                "environment), then run again",
            ) from error
        print(f"uploaded {file} to the workers", flush=True)


def _storage_options(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        options = error
    if not isinstance(options, dict):
        shown = f"invalid JSON ({options})" if isinstance(options, Exception) else repr(options)
        raise StorageInputError(
            "--storage-options is not a JSON object",
            expected='a JSON object of fsspec options, e.g. \'{"endpoint_url": "http://..."}\'',
            received=shown,
            fix="quote the whole object for the shell and use double quotes inside it",
        )
    return options


def _tls(args: argparse.Namespace) -> Any:
    """dask.config set for TLS while the command runs, when the TLS files are given."""
    import contextlib

    import dask.config

    files = (args.tls_ca_file, args.tls_cert, args.tls_key)
    if not any(files):
        return contextlib.nullcontext()
    if not all(files):
        flags = ("--tls-ca-file", "--tls-cert", "--tls-key")
        given = [flag for flag, value in zip(flags, files, strict=True) if value]
        raise SecurityError(
            "TLS needs three files",
            expected="--tls-ca-file, --tls-cert and --tls-key together",
            received=f"only {', '.join(given)}",
            fix="pass all three, or none for plain TCP",
        )
    from morphml_dask.driver import tls_settings

    return dask.config.set(tls_settings(*files))


def _drive(search: Search, total: int | None, progress: bool = True) -> int:
    """Run ``search`` with a live progress display (a bar where standard error is a
    terminal, unless ``progress`` is False); Ctrl-C stops it cleanly."""
    import time

    from morphml_dask.space import ArchGraph

    if total is not None:  # a warm-up's scoring trials are trials too
        total += search.optimizer.warmup_trials
    display = _display(search, total, progress)
    search.start()
    with contextlib.closing(display):  # a bar stops drawing even when the search raises
        try:
            while search.running:
                display.show()
                time.sleep(0.5)
        except KeyboardInterrupt:
            display.close()
            print("\nstopping: running trials are cancelled and kept for resume ...", flush=True)
            search.stop()
            search.wait()
            print(f"stopped. Continue with: morphml resume {search.store.url}")
            return 130
        table = search.wait()
        display.show(final=True)
    failed, pruned = ((table["state"] == state).sum() for state in ("fail", "pruned"))
    print(f"{len(table)} trials, {failed} failed, {pruned} pruned; results in {search.store.url}")
    objective = search.task.objective
    best = search.store.best(3, objective, search.task.direction)
    for trial_id, value, fingerprint in zip(
        best["trial_id"], best[objective], best["fingerprint"], strict=True
    ):
        print(f"  {trial_id}  {objective}={value:.4g}  {str(fingerprint)[:12]}")
    if not best.empty:
        record = search.store.record(str(best["trial_id"].iloc[0]))
        what = "architecture" if isinstance(record.trial.arch, ArchGraph) else "configuration"
        print(f"best {what}: {record.trial.arch!r}")
    return 0


def _display(search: Search, total: int | None, progress: bool) -> _Progress | ProgressBar:
    """The bar where it can be drawn and is wanted, else the status lines."""
    from morphml_dask._progress import ProgressBar, bar_wanted

    if bar_wanted(progress):
        return ProgressBar(search, total)
    lines = _Progress(search, total)
    lines.interactive &= progress  # --no-progress: the lines of logs on a terminal too
    return lines


class _Progress:
    """One rewritten status line on a terminal; a line per 10 trials in logs and CI."""

    def __init__(self, search: Search, total: int | None) -> None:
        self.search = search
        self.total = total
        self.interactive = sys.stdout.isatty()
        self.shown = -1
        self.announced = False

    def show(self, final: bool = False) -> None:
        if not self.announced and (link := self.search.dashboard_link):
            # The morphml page is there when the scheduler was started with it (morphml's
            # local cluster and deploy helpers do that; see morphml_dask.dashboard).
            self.announced = True
            print(f"dashboard: {link} (this search: {link.rsplit('/', 1)[0]}/morphml)")
        status = self.search.status()
        if not (self.interactive or final) and status.done // 10 == self.shown:
            return
        self.shown = status.done // 10
        of = f"/{self.total}" if self.total else ""
        line = (
            f"trials {status.done}{of} done, {status.running} running, "
            f"{status.failed} failed, {status.pruned} pruned, {status.reused} reused; "
            f"best {status.best_trial or '-'}; {status.elapsed:.0f}s"
        )
        if self.interactive:
            print(f"\r{line}", end="\n" if final else "", flush=True)
        else:
            print(line, flush=True)

    def close(self) -> None:
        """Nothing to stop: each line is printed whole."""


if __name__ == "__main__":
    raise SystemExit(main())
