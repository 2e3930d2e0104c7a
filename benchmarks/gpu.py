"""The GPU check: trials sharing one GPU, its utilisation, the worker path's overhead and a
search's trials per hour, in one prepared run that fits a short slot on a GPU machine.

    python benchmarks/gpu.py --json benchmarks/results/gpu.json   # a GPU machine: < 8 minutes
    python benchmarks/gpu.py --device cpu --quick --json OUT      # a dry run of every path

Data: CIFAR-shaped synthetic images (3x32x32, 10 classes; random pixels and labels, since
throughput is what is measured), written to a Zarr store in a temporary folder, so that the
search's workers open it themselves. Networks: NAS-Bench-201's for one strong cell
(`CellSpace`) and a `DagSpace` network (two reduction stages at 32x32).

Sections, each timed against ``--budget-s`` (a section that would not fit is skipped and
says so; the JSON is rewritten after each, and a watchdog writes it and exits if the run
overshoots the budget by 30 s):

1. ``sharing``: 1, 2, 4 and 8 trials at once on one GPU, threads of one process, each on its
   own CUDA stream (as a worker runs trials with ``gpus_per_trial`` 1, 0.5, 0.25, 0.125):
   images/s per trial and per GPU, GPU utilisation sampled from NVML (``pynvml``) or
   ``nvidia-smi``, and peak memory (`torch.cuda.max_memory_allocated`; per trial, the
   process's peak above what it held before, over the number of trials). A trial is
   `TrainingTask.evaluate`: build, train, validate each epoch, test; images/s count the
   training images.
2. ``overhead``: one trial through a `Search` on a `LocalCluster` worker (`run_trial`'s span
   on the worker) against a plain PyTorch loop on the same worker and GPU: same model and
   initialisation, data, epochs, batch size, batch order, optimizer, schedule, per-epoch
   validation and final test. Alternating, three times, medians.
3. ``search``: a short real search on the same cluster, ``gpus_per_trial=0.25`` (four
   trials at once on the GPU), random NAS-Bench-201 cells: trials per hour, images/s, GPU
   utilisation.
4. ``proxies``: the zero-cost proxies of both networks, freshly initialised, as a warm-up,
   a limit or an objective measures them (`morphml_dask.models.score`: ``latency_ms`` on
   batches of 1 and 256, ``peak_memory_mb`` of a training step, ``synflow``), on the GPU
   and on the CPU, with the seconds each scoring took.
5. ``precision``: one NAS-Bench-201 trial in fp32, bf16 and, if the budget allows,
   compiled (`TrainingTask`'s ``precision`` and ``compile``): images/s of each.

Goals (the issue's): four NB201 trainings sharing a GPU reach 2.5x the images/s of one; GPU
utilisation at least 85 % with four; at most 5 % overhead against the plain loop. The JSON's
``goals`` says what was measured and whether each is met.

Exit status: 0 when every section ran, 1 when one failed (``errors`` in the JSON says which
and why), 2 on a machine without a CUDA GPU (unless ``--device cpu``), 3 when the watchdog
stopped the run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask.driver import Search
from morphml_dask.optim import RandomSearch
from morphml_dask.space import ArchGraph, CellSpace, Node
from morphml_dask.tasks import ImageDataset, TrainingTask, open_xarray_dataset

if TYPE_CHECKING:
    from distributed import Client

RESULTS = Path(__file__).parent / "results"
NB201_CELL = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
    "nor_conv_3x3~2|"
)
GOALS = {"sharing_speedup_4": 2.5, "utilisation_4": 85.0, "overhead": 0.05}


def dag_network() -> ArchGraph:
    """A `DagSpace` architecture: three convolutions with a skip, 64 channels."""
    return ArchGraph(
        [
            "input",
            Node("conv", kernel=3, channels=64),
            Node("sep_conv", kernel=5, channels=64),
            Node("conv", kernel=3, channels=64),
            "output",
        ],
        [(0, 1), (1, 2), (2, 3), (3, 4), (1, 4)],
    )


@dataclass
class Settings:
    """The sizes of one run."""

    device: str
    quick: bool
    budget_s: float
    side: int
    train: int
    held_out: int
    batch_size: int
    levels: tuple[int, ...]
    repeats: int
    target_trial_s: float
    search_trials: int

    @classmethod
    def of(cls, args: argparse.Namespace) -> Settings:
        if args.quick:
            return cls(args.device, True, args.budget_s, 8, 64, 32, 32, (1, 2), 1, 0.0, 2)
        return cls(
            args.device, False, args.budget_s, 32, 10_240, 1_024, 256, (1, 2, 4, 8), 3, 6.0, 24
        )


class Budget:
    """Seconds left of the run's budget."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def allows(self, seconds: float) -> bool:
        return self.left() > seconds


# -- GPU utilisation ------------------------------------------------------------------------


class GpuSampler:
    """Samples the GPU's utilisation (%) and memory used (MB) every 200 ms in the background,
    from NVML when ``pynvml`` imports, else from ``nvidia-smi``; nothing on a CPU run."""

    def __init__(self, device: str) -> None:
        self.samples: list[tuple[float, float, float]] = []
        self.source = "none"
        self._stop = threading.Event()
        self._process: subprocess.Popen[str] | None = None
        if device == "cpu":
            return
        index = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        self.index = int(index) if index.isdigit() else 0
        try:
            self._start_nvml()
        except Exception:  # no pynvml, or NVML failed: ask nvidia-smi instead
            self._start_smi()

    def _start_nvml(self) -> None:
        nvml: Any = importlib.import_module("pynvml")
        nvml.nvmlInit()
        handle = nvml.nvmlDeviceGetHandleByIndex(self.index)

        def poll() -> None:
            while not self._stop.wait(0.2):
                util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                used = nvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
                self.samples.append((time.perf_counter(), float(util), float(used)))

        threading.Thread(target=poll, daemon=True).start()
        self.source = "nvml"

    def _start_smi(self) -> None:
        query = [
            "nvidia-smi",
            "--query-gpu=utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
            "-lms",
            "200",
            "-i",
            str(self.index),
        ]
        try:
            self._process = subprocess.Popen(query, stdout=subprocess.PIPE, text=True)
        except OSError:
            return
        process = self._process

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                with contextlib.suppress(ValueError):
                    util, used = (float(v) for v in line.split(","))
                    self.samples.append((time.perf_counter(), util, used))

        threading.Thread(target=read, daemon=True).start()
        self.source = "nvidia-smi"

    def window(self, start: float, end: float) -> dict[str, float | None]:
        """Mean and max utilisation and max memory used between two `perf_counter` times."""
        inside = [s for s in list(self.samples) if start <= s[0] <= end]
        if not inside:
            return {"util_mean": None, "util_max": None, "memory_used_mb_max": None}
        return {
            "util_mean": round(statistics.fmean(s[1] for s in inside), 1),
            "util_max": max(s[1] for s in inside),
            "memory_used_mb_max": max(s[2] for s in inside),
        }

    def close(self) -> None:
        self._stop.set()
        if self._process is not None:
            self._process.terminate()


# -- data and trials ------------------------------------------------------------------------


def write_dataset(folder: Path, settings: Settings) -> ImageDataset:
    """CIFAR-shaped random images and labels in a Zarr store, opened by URL."""
    import xarray as xr

    rng = np.random.default_rng(0)
    count = settings.train + 2 * settings.held_out
    images = rng.random((count, 3, settings.side, settings.side), dtype=np.float32)
    labels = rng.integers(0, 10, count)
    split = np.array(["train"] * settings.train + ["val", "test"] * settings.held_out)
    variables = {
        "images": (("sample", "channel", "y", "x"), images),
        "labels": (("sample",), labels),
        "split": (("sample",), split),
    }
    url = str(folder / "cifar-shaped.zarr")
    xr.Dataset(variables).to_zarr(url, mode="w", zarr_format=2)
    return open_xarray_dataset(url)


def device_of(settings: Settings) -> str:
    return "cuda:0" if settings.device == "cuda" else "cpu"


def run_threads(task: TrainingTask, arch: ArchGraph, epochs: int, count: int, device: str) -> Any:
    """``count`` trials at once, threads of this process, each on its own CUDA stream:
    ``(start, end)`` of each and of the whole."""
    import torch

    barrier = threading.Barrier(count)
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * count
    errors: list[BaseException] = []

    def trial(index: int) -> None:
        cuda = device.startswith("cuda")
        stream = torch.cuda.Stream(device) if cuda else None  # type: ignore[no-untyped-call]
        barrier.wait()
        start = time.perf_counter()
        try:
            with (
                torch.cuda.device(device) if cuda else contextlib.nullcontext(),
                torch.cuda.stream(stream) if cuda else contextlib.nullcontext(),
            ):
                task.evaluate(arch, epochs, device=device)
                if stream is not None:
                    stream.synchronize()
        except BaseException as error:  # reported by the caller
            errors.append(error)
        spans[index] = (start, time.perf_counter())

    threads = [threading.Thread(target=trial, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return spans


def memory_stats(device: str) -> Callable[[int], dict[str, float]]:
    """Starts counting peak memory; the returned function gives the peaks for ``n`` trials."""
    import torch

    if not device.startswith("cuda"):
        return lambda n: {}
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)

    def peaks(trials: int) -> dict[str, float]:
        peak = torch.cuda.max_memory_allocated(device)
        return {
            "peak_allocated_mb": round(peak / 2**20, 1),
            "peak_per_trial_mb": round((peak - base) / trials / 2**20, 1),
            "peak_reserved_mb": round(torch.cuda.max_memory_reserved(device) / 2**20, 1),
        }

    return peaks


def calibrate(task: TrainingTask, arch: ArchGraph, settings: Settings) -> tuple[int, float]:
    """Warm up (CUDA context, kernels, the dataset on the device), then the epochs that make
    one trial last about ``target_trial_s``, and the seconds of one epoch."""
    device = device_of(settings)
    task.evaluate(arch, 1, device=device)
    start = time.perf_counter()
    run_threads(task, arch, 1, 1, device)
    epoch_s = time.perf_counter() - start
    if settings.quick:
        return 1, epoch_s
    return max(1, min(30, round(settings.target_trial_s / epoch_s))), epoch_s


# -- 1. sharing -----------------------------------------------------------------------------


def sharing(
    name: str, arch: ArchGraph, dataset: ImageDataset, settings: Settings, ctx: Run
) -> dict[str, Any]:
    """Images/s per trial and per GPU with 1, 2, 4, 8 trials at once on one GPU."""
    device = device_of(settings)
    task = TrainingTask(dataset, batch_size=settings.batch_size, seed=0)
    epochs, epoch_s = calibrate(task, arch, settings)
    rows: list[dict[str, Any]] = []
    for count in settings.levels:
        estimate = 1.2 * count * epochs * epoch_s + 5
        if not ctx.budget.allows(estimate + ctx.reserve):
            rows.append({"trials": count, "skipped": f"needs ~{estimate:.0f} s of the budget"})
            continue
        peaks = memory_stats(device)
        spans = run_threads(task, arch, epochs, count, device)
        first, last = min(s for s, _ in spans), max(e for _, e in spans)
        images = settings.train * epochs
        per_trial = [images / (end - start) for start, end in spans]
        row = {
            "trials": count,
            "gpus_per_trial": round(1 / count, 4),
            "images_per_s_per_trial": round(statistics.fmean(per_trial), 1),
            "images_per_s_per_gpu": round(images * count / (last - first), 1),
            "wall_s": round(last - first, 3),
            **ctx.sampler.window(first, last),
            **peaks(count),
        }
        rows.append(row)
        ctx.table_row(name, row)
    single = next((r for r in rows if r.get("trials") == 1 and "skipped" not in r), None)
    for row in rows:
        if single is not None and "images_per_s_per_gpu" in row:
            row["speedup"] = round(row["images_per_s_per_gpu"] / single["images_per_s_per_gpu"], 3)
    return {"epochs": epochs, "epoch_s": round(epoch_s, 3), "rows": rows}


# -- 2. precision and compile ---------------------------------------------------------------


def precision(arch: ArchGraph, dataset: ImageDataset, settings: Settings, ctx: Run) -> Any:
    """One NAS-Bench-201 trial in fp32, bf16 and compiled (when the budget allows), each
    after an untimed first call (``first_call_s``: kernels, and the compilation)."""
    device = device_of(settings)
    variants: dict[str, dict[str, Any]] = {
        "fp32": {},
        "bf16": {"precision": "bf16"},
        "compiled": {"compile": True},
    }
    epochs, _ = calibrate(TrainingTask(dataset, batch_size=settings.batch_size), arch, settings)
    rows: dict[str, dict[str, Any]] = {}
    for label, options in variants.items():
        if label == "compiled" and (settings.quick or not ctx.budget.allows(150)):
            rows[label] = {"skipped": "compiling needs about two minutes of the budget"}
            continue
        task = TrainingTask(dataset, batch_size=settings.batch_size, seed=0, **options)
        try:
            start = time.perf_counter()
            run_threads(task, arch, 1, 1, device)
            first = time.perf_counter() - start
            start = time.perf_counter()
            run_threads(task, arch, epochs, 1, device)
            wall = time.perf_counter() - start
        except Exception as error:  # e.g. no C compiler for torch.compile: the others stand
            rows[label] = {"error": f"{type(error).__name__}: {error}"[:1000]}
            print(f"  precision {label:9s} failed: {rows[label]['error'][:200]}", flush=True)
            continue
        rows[label] = {
            "epochs": epochs,
            "images_per_s": round(settings.train * epochs / wall, 1),
            "wall_s": round(wall, 3),
            "first_call_s": round(first, 3),
        }
        print(f"  precision {label:9s} {rows[label]['images_per_s']:>10.1f} images/s", flush=True)
    return rows


# -- 3. the worker path against a plain loop ------------------------------------------------


def proxy_costs(networks: dict[str, ArchGraph], settings: Settings) -> dict[str, Any]:
    """Latency, peak memory and synflow of each network on the device and on the CPU."""
    import torch

    from morphml_dask.models import build_model, score

    rows: dict[str, Any] = {}
    for name, arch in networks.items():
        for device in dict.fromkeys((device_of(settings), "cpu")):
            for batch in (1, 8 if settings.quick else 256):
                torch.manual_seed(0)
                model = build_model(arch, 10, in_channels=3).to(device)
                started = time.perf_counter()
                values = score(
                    model,
                    ("latency_ms", "peak_memory_mb", "synflow"),
                    input_shape=(batch, 3, settings.side, settings.side),
                )
                values["scoring_s"] = time.perf_counter() - started
                rows[f"{name}/{device}/batch{batch}"] = values
                print(f"  {name} {device} batch {batch}: {values}", flush=True)
    return rows


def plain_loop(task: TrainingTask, arch: ArchGraph, epochs: int, device: str) -> float:
    """`TrainingTask`'s recipe as a plain PyTorch loop, on the worker: the yardstick."""
    import torch
    from torch import nn

    start = time.perf_counter()
    data = task.dataset.load()
    model = task.build(arch).to(device)
    x, y = torch.from_numpy(data.x_train).to(device), torch.from_numpy(data.y_train).to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=task.learning_rate, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = 0.5 * task.learning_rate * (1.0 + math.cos(math.pi * epoch / epochs))
        model.train()
        generator = torch.Generator().manual_seed(task.seed * 100_003 + epoch)
        order = torch.randperm(len(x), generator=generator).to(device)
        total = torch.zeros((), dtype=torch.float64, device=device)
        for first in range(0, len(x), task.batch_size):
            batch = order[first : first + task.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += loss.detach().double() * len(batch)
        total.item()
        _held_out(model, data.x_val, data.y_val, device)
    _held_out(model, data.x_test, data.y_test, device)
    return time.perf_counter() - start


def _held_out(model: Any, images: Any, labels: Any, device: str) -> float:
    """Accuracy on held-out data in batches of 512: part of any recipe that reports it."""
    import torch

    x, y = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.no_grad():
        for first in range(0, len(x), 512):
            correct += (model(x[first : first + 512]).argmax(1) == y[first : first + 512]).sum()
    return float(correct.item()) / len(x)


def searched(
    client: Client, task: TrainingTask, optimizer: RandomSearch, gpus: float, folder: Path
) -> tuple[Any, float]:
    """A search on ``client`` into a fresh store: its trials table and ``run``'s wall time."""
    store = folder / f"store-{time.monotonic_ns()}"
    search = Search(optimizer, task, store=str(store), client=client, gpus_per_trial=gpus)
    start = time.perf_counter()
    table = search.run()
    return table, time.perf_counter() - start


def overhead(client: Client, dataset: ImageDataset, settings: Settings, ctx: Run) -> Any:
    """`run_trial`'s span on the worker against the plain loop, alternating, medians."""
    gpus = 1 if settings.device == "cuda" else 0
    task = TrainingTask(dataset, batch_size=settings.batch_size, seed=0)
    space = CellSpace()
    arch = RandomSearch(space, seed=0).ask(1)[0].arch
    assert isinstance(arch, ArchGraph)
    device = device_of(settings)
    resources = {"GPU": 1} if gpus else None

    def plain(epochs: int) -> float:
        future = client.submit(
            plain_loop, task, arch, epochs, device, pure=False, resources=resources
        )
        return float(future.result())

    def ours(epochs: int) -> float:
        optimizer = RandomSearch(space, budget=epochs, max_trials=1, seed=0)
        table, _ = searched(client, task, optimizer, gpus, ctx.folder)
        assert list(table["state"]) == ["complete"], table["error"].tolist()
        return float(table["end_time"].iloc[0] - table["start_time"].iloc[0])

    plain(1), ours(1)  # first calls: CUDA context, kernels, the dataset read; untimed
    one_epoch = plain(1)
    epochs = 1 if settings.quick else max(1, min(30, round(settings.target_trial_s / one_epoch)))
    plains: list[float] = []
    workers: list[float] = []
    for _ in range(settings.repeats):
        if plains and not ctx.budget.allows(2.5 * (plains[-1] + workers[-1]) + ctx.reserve):
            break
        plains.append(plain(epochs))
        workers.append(ours(epochs))
    t_plain, t_ours = statistics.median(plains), statistics.median(workers)
    result = {
        "epochs": epochs,
        "plain_s": [round(t, 3) for t in plains],
        "worker_trial_s": [round(t, 3) for t in workers],
        "overhead": round(t_ours / t_plain - 1.0, 4),
    }
    print(f"  overhead: plain {t_plain:.3f} s, worker {t_ours:.3f} s", flush=True)
    return result


# -- 4. a search's trials per hour ----------------------------------------------------------


def search_rate(client: Client, dataset: ImageDataset, settings: Settings, ctx: Run) -> Any:
    """A short search of random NB201 cells, four trials at once on the GPU."""
    gpus = 0.25 if settings.device == "cuda" else 0
    epochs = 1
    count = settings.search_trials
    optimizer = RandomSearch(CellSpace(), budget=epochs, max_trials=count, seed=1)
    task = TrainingTask(dataset, batch_size=settings.batch_size, seed=0)
    start = time.perf_counter()
    table, wall = searched(client, task, optimizer, gpus, ctx.folder)
    complete = int((table["state"] == "complete").sum())
    makespan = float(table["end_time"].max() - table["start_time"].min())
    result = {
        "gpus_per_trial": gpus,
        "trials": count,
        "complete": complete,
        "epochs": epochs,
        "run_wall_s": round(wall, 3),
        "trials_per_hour": round(complete / wall * 3600, 1),
        "images_per_s": round(complete * settings.train * epochs / makespan, 1),
        **ctx.sampler.window(start, start + wall),
    }
    print(f"  search: {complete} trials in {wall:.1f} s, {result['trials_per_hour']}/h", flush=True)
    return result


@contextlib.contextmanager
def worker_cluster(settings: Settings) -> Iterator[Client]:
    """One worker process: on a GPU machine, the package's default local cluster for
    ``gpus_per_trial=0.25`` (its first GPU, four threads, ``resources={"GPU": 1}``)."""
    from distributed import Client, LocalCluster

    if settings.device == "cuda":
        from morphml_dask.driver import default_client

        client, cluster = default_client(0.25)
    else:
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address="127.0.0.1:0"
        )
        client = Client(cluster)  # type: ignore[no-untyped-call]
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]
        if cluster is not None:
            cluster.close()


# -- the run --------------------------------------------------------------------------------


class Run:
    """What the sections share: the budget, the sampler, the JSON document and its path."""

    def __init__(self, settings: Settings, path: Path, folder: Path) -> None:
        self.settings = settings
        self.budget = Budget(settings.budget_s)
        self.sampler = GpuSampler(settings.device)
        self.path = path
        self.folder = folder
        self.started = time.perf_counter()
        # Kept back for the sections after the current one.
        self.reserve = 0.0 if settings.quick else 60.0
        self.document: dict[str, Any] = {
            "benchmark": "gpu",
            "settings": asdict(settings),
            "environment": environment(settings.device),
            "sampler": self.sampler.source,
            "errors": {},
        }

    def section(self, name: str, work: Callable[[], Any], needs_s: float = 0.0) -> None:
        if not self.budget.allows(needs_s):
            self.document[name] = {"skipped": f"{self.budget.left():.0f} s left, needs {needs_s}"}
        else:
            print(f"{name}:", flush=True)
            start = time.perf_counter()
            try:
                self.document[name] = work()
            except Exception as error:  # recorded; the other sections still run
                self.document["errors"][name] = f"{type(error).__name__}: {error}"[:2000]
                print(f"  failed: {self.document['errors'][name]}", flush=True)
            self.document.setdefault("section_s", {})[name] = round(time.perf_counter() - start, 1)
        self.write()

    def table_row(self, network: str, row: dict[str, Any]) -> None:
        util = row.get("util_mean")
        memory = row.get("peak_per_trial_mb")
        print(
            f"  {network:6s} {row['trials']:>2d} trials  {row['images_per_s_per_trial']:>10.1f} "
            f"img/s/trial  {row['images_per_s_per_gpu']:>10.1f} img/s/GPU  "
            f"util {'-' if util is None else f'{util:.0f}%':>4s}  "
            f"peak {'-' if memory is None else f'{memory:.0f} MB':>8s}/trial",
            flush=True,
        )

    def write(self) -> None:
        self.document["seconds"] = round(time.perf_counter() - self.started, 1)
        self.document["goals"] = goals(self.document)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.document, indent=1) + "\n")


def goals(document: dict[str, Any]) -> dict[str, Any]:
    """Each goal of the issue, measured (None where not) and whether it is met."""
    rows = document.get("sharing_nb201", {}).get("rows", [])
    four: dict[str, Any] = next((r for r in rows if r.get("trials") == 4 and "speedup" in r), {})
    measured = {
        "sharing_speedup_4": four.get("speedup"),
        "utilisation_4": four.get("util_mean"),
        "overhead": document.get("overhead", {}).get("overhead"),
    }
    cpu = document["settings"]["device"] == "cpu"
    result = {}
    for name, goal in GOALS.items():
        value = measured[name]
        met = (
            None
            if value is None or cpu
            else (value <= goal if name == "overhead" else value >= goal)
        )
        result[name] = {"goal": goal, "measured": value, "met": met}
    return result


def environment(device: str) -> dict[str, Any]:
    import torch

    found: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "device": device,
    }
    if device == "cuda":
        found.update(
            gpu=torch.cuda.get_device_name(0),
            gpus=torch.cuda.device_count(),
            cuda=torch.version.cuda,
            gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        )
    return found


def watchdog(run: Run, seconds: float) -> None:
    """Write what was measured and exit if the run overshoots: a GPU slot is short."""

    def expire() -> None:
        run.document["errors"]["watchdog"] = f"stopped after {seconds:.0f} s"
        run.write()
        print(f"watchdog: stopped after {seconds:.0f} s; wrote {run.path}", flush=True)
        os._exit(3)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=RESULTS / "gpu.json")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a dry run")
    parser.add_argument("--budget-s", type=float, default=420.0, help="default: 420")
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --device cpu --quick for a dry run", file=sys.stderr)
        return 2
    settings = Settings.of(args)
    with tempfile.TemporaryDirectory(prefix="morphml-gpu-") as tmp:
        run = Run(settings, args.json, Path(tmp))
        watchdog(run, settings.budget_s + 30)
        dataset = write_dataset(Path(tmp), settings)
        nb201 = CellSpace().from_arch_str(NB201_CELL)
        run.section("sharing_nb201", lambda: sharing("nb201", nb201, dataset, settings, run))
        run.section("sharing_dag", lambda: sharing("dag", dag_network(), dataset, settings, run))
        with worker_cluster(settings) as client:
            run.section("overhead", lambda: overhead(client, dataset, settings, run))
            run.section("search", lambda: search_rate(client, dataset, settings, run), 30.0)
        networks = {"nb201": nb201, "dag": dag_network()}
        run.section("proxies", lambda: proxy_costs(networks, settings), 20.0)
        # Last: compiling may take minutes, and the goals above come first.
        # A dry run on the CPU takes the smaller network: bf16 on a CPU is slow.
        arch = dag_network() if settings.quick else nb201
        run.section("precision", lambda: precision(arch, dataset, settings, run), 30.0)
        run.sampler.close()
        run.write()
    print(json.dumps(run.document["goals"], indent=1))
    print(f"wrote {args.json}")
    return 1 if run.document["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
