"""GPU placement on a machine without GPUs: the ``morphml.cluster.gpus`` override makes the
local cluster assume GPUs and its workers trust their ``CUDA_VISIBLE_DEVICES``, so that the
placement (which worker sees which GPU, how many trials share one, which devices a trial
gets) is tested on real worker processes while no trial touches CUDA."""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dask.config
import numpy as np
import pytest
from distributed import Client, LocalCluster

from morphml_dask.driver import GPUPlugin, Search
from morphml_dask.driver._cluster import default_client, local_cluster, slots_of
from morphml_dask.driver._devices import DevicePool, _pool_of
from morphml_dask.driver._worker import run_trial
from morphml_dask.exceptions import ClusterError, ExperimentError, InputError, UnschedulableError
from morphml_dask.experiment import load_experiment
from morphml_dask.gpus import (
    check_gpus_per_trial,
    gpu_request,
    gpus_per_worker,
    trial_slots,
    trials_per_gpu,
)
from morphml_dask.optim import RandomSearch
from morphml_dask.space import FunctionSpace, Sampler
from morphml_dask.tasks import FunctionTask, TrialContext
from morphml_dask.trial import Trial, TrialRecord, TrialResult

TRIAL_SECONDS = 0.6


def space(s: Sampler) -> dict[str, Any]:
    return {"x": s.float("x", 0.0, 1.0)}


def sleeps(config: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
    """A trial that holds its devices a while and says what it was given."""
    time.sleep(TRIAL_SECONDS)
    return {
        "score": float(config["x"]),
        "devices": float(len(ctx.devices)),
        "shared": float(ctx.shared),
    }


@pytest.fixture
def two_fake_gpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two GPUs assumed (``morphml.cluster.gpus``), whatever this machine has."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with dask.config.set({"morphml.cluster.gpus": 2}):
        yield


def _search(store: Path, gpus_per_trial: float, trials: int) -> list[TrialRecord]:
    """The records of a search of sleeping trials on the local cluster the search starts
    itself (worker processes: the store is a folder they share with the driver)."""
    search = Search(
        RandomSearch(FunctionSpace(space), max_trials=trials, seed=0),
        FunctionTask(sleeps, objective="score", direction="maximize"),
        store=str(store),
        gpus_per_trial=gpus_per_trial,
        max_pack=1,
        worker_wait=60,
    )
    search.run()
    records = search.store.records()
    assert len(records) == trials and all(record.result.ok for record in records)
    return records


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (one ending as another starts: not both)."""
    events = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    return max(itertools.accumulate(change for _, change in events))


def _visible(dask_worker: Any) -> tuple[str | None, tuple[str, ...]]:
    return os.environ.get("CUDA_VISIBLE_DEVICES"), _pool_of(dask_worker).devices


def _by_name(client: Client) -> dict[Any, tuple[str | None, tuple[str, ...]]]:
    names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
    return {names[address]: seen for address, seen in client.run(_visible).items()}


# -- the local cluster -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("two_fake_gpus")
def test_each_worker_sees_its_own_gpu_and_a_restarted_worker_the_same() -> None:
    client, cluster = default_client(1)
    assert cluster is not None, "a default client of another test is still open"
    with cluster, client:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        assert sorted((w["nthreads"], w["resources"]["GPU"]) for w in workers) == [(1, 1)] * 2
        # Each process sees one GPU of its own, as its cuda:0.
        assert _by_name(client) == {0: ("0", ("cuda:0",)), 1: ("1", ("cuda:0",))}
        client.restart()  # every nanny starts a new worker process
        assert _by_name(client) == {0: ("0", ("cuda:0",)), 1: ("1", ("cuda:0",))}


@pytest.mark.slow
@pytest.mark.usefixtures("two_fake_gpus")
def test_two_trials_share_each_gpu_at_once_and_never_three(tmp_path: Path) -> None:
    records = _search(tmp_path / "store", 0.5, trials=16)
    assert {record.device for record in records} == {"cuda:0"}
    assert {_given(record) for record in records} == {(1.0, 1.0)}  # one GPU, shared
    spans: dict[str | None, list[tuple[float, float]]] = {}
    for record in records:
        assert record.start_time is not None and record.end_time is not None
        spans.setdefault(record.worker, []).append((record.start_time, record.end_time))
    assert len(spans) == 2
    for worker, runs in spans.items():
        assert _most_at_once(runs) == 2, f"{worker} did not run its trials two at a time"


@pytest.mark.slow
@pytest.mark.usefixtures("two_fake_gpus")
def test_a_trial_of_two_gpus_gets_both(tmp_path: Path) -> None:
    records = _search(tmp_path / "store", 2, trials=3)
    assert {record.device for record in records} == {"cuda:0,cuda:1"}
    assert {_given(record) for record in records} == {(2.0, 0.0)}  # two GPUs of its own
    spans = [(record.start_time or 0.0, record.end_time or 0.0) for record in records]
    assert _most_at_once(spans) == 1  # one worker owns both GPUs: one such trial at a time


def _given(record: TrialRecord) -> tuple[float, float]:
    """The devices a trial was given and whether it shared them, as it reported."""
    return record.result.metrics["devices"], record.result.metrics["shared"]


@pytest.mark.usefixtures("two_fake_gpus")
def test_a_trial_wanting_more_gpus_than_the_machine_has_is_refused() -> None:
    with pytest.raises(
        UnschedulableError,
        match=r"(?s)a trial wants more GPUs than this machine has.*at least 4 GPUs for "
        r"gpus_per_trial=4.*2 GPU\(s\).*set gpus_per_trial to 2 or less",
    ):
        local_cluster(4)


def test_more_gpus_assumed_than_cuda_visible_devices_lists_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with (
        dask.config.set({"morphml.cluster.gpus": 2}),
        pytest.raises(
            ClusterError,
            match=r"(?s)assumes more GPUs than CUDA_VISIBLE_DEVICES lists.*at most 1 GPU.*"
            r"morphml.cluster.gpus=2, CUDA_VISIBLE_DEVICES='3'",
        ),
    ):
        local_cluster(1)


@pytest.mark.parametrize(
    ("resources", "threads", "gpus_per_trial", "slots"),
    [
        ({"GPU": 1}, 2, 0.5, 2),
        ({"GPU": 1}, 4, 0.25, 4),
        ({"GPU": 1}, 2, 0.25, 2),  # a trial per thread
        ({"GPU": 1}, 4, 0.3, 3),
        ({"GPU": 2}, 1, 2, 1),
        ({"GPU": 2}, 4, 1, 2),
    ],
)
def test_the_slots_are_the_trials_the_resources_and_threads_run_at_once(
    resources: dict[str, float], threads: int, gpus_per_trial: float, slots: int
) -> None:
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=1,
            threads_per_worker=threads,
            processes=False,
            resources=resources,
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        assert slots_of(client, gpus_per_trial, wait=5) == slots


# -- the device pool ----------------------------------------------------------------------------


def test_whole_gpus_are_lent_once_and_shares_fill_the_fullest_gpu_first() -> None:
    pool = DevicePool(["cuda:0", "cuda:1"])
    with pool.borrow(0) as cpu:
        assert cpu == ("cpu",)
    with pool.borrow(2) as both:
        assert both == ("cuda:0", "cuda:1")
        with pytest.raises(RuntimeError, match=r"asked for 1 GPU\(s\) but 0 of this worker's 2"):
            pool.borrow(1).__enter__()
    with pool.borrow(0.3) as first, pool.borrow(0.3) as second, pool.borrow(1) as whole:
        assert first == second == ("cuda:0",) and whole == ("cuda:1",)
        assert pool.held() == pytest.approx({"cuda:0": 2 / 3, "cuda:1": 1.0})
        with pool.borrow(0.3) as third:
            assert third == ("cuda:0",)  # three trials of 0.3 share a GPU
            with pytest.raises(RuntimeError, match=r"asked for 1/3 of a GPU but none of"):
                pool.borrow(0.3).__enter__()
    assert pool.held() == {}


def test_a_worker_without_gpus_runs_gpu_trials_on_the_cpu() -> None:
    with DevicePool([]).borrow(1) as devices:
        assert devices == ("cpu",)


@pytest.mark.parametrize(("gpus", "borrowers"), [(1, 2), (0.5, 4), (0.25, 8), (2, 1)])
def test_no_device_is_lent_twice_while_the_plugin_is_registered_again_and_again(
    two_fake_gpus: None, gpus: float, borrowers: int
) -> None:
    """Trials borrow from the worker's pool (as `run_trial` does) in many threads, at most
    as many at once as Dask's resources allow, while every search registers the plugin
    anew: no device is ever held beyond its capacity."""
    worker = SimpleNamespace()
    capacity = trials_per_gpu(gpus)
    admitted = threading.Semaphore(borrowers)  # Dask's GPU resources
    holders: Counter[str] = Counter()
    counting = threading.Lock()
    overlent: list[dict[str, int]] = []
    stop = threading.Event()

    def trial() -> None:
        for _ in range(100):
            with admitted, _pool_of(worker).borrow(gpus) as devices:
                with counting:
                    holders.update(devices)
                    if any(holders[device] > capacity for device in devices):
                        overlent.append(dict(holders))
                time.sleep(0.0002)
                with counting:
                    holders.subtract(devices)

    def register_again() -> None:
        while not stop.wait(0.0001):  # every search registers the plugin on every worker
            GPUPlugin().setup(worker)

    registrar = threading.Thread(target=register_again)
    registrar.start()
    threads = [threading.Thread(target=trial) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    registrar.join()
    assert overlent == []
    assert _pool_of(worker).devices == ("cuda:0", "cuda:1")
    assert _pool_of(worker).held() == {}


def test_run_trial_lends_the_devices_and_names_them_in_the_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import morphml_dask.driver._devices as worker_module

    monkeypatch.setattr(worker_module, "_LOCAL_POOL", DevicePool(["cuda:0", "cuda:1"]))
    task = FunctionTask(_says_where, objective="devices", direction="maximize")
    trial = Trial(id="t", arch=FunctionSpace(space).sample(np.random.default_rng(0)), budget=1)
    for gpus, device, given in [(2, "cuda:0,cuda:1", (2.0, 0.0)), (0.5, "cuda:0", (1.0, 1.0))]:
        outcome = run_trial(trial, task, gpus=gpus)
        metrics = TrialResult.from_dict(outcome["result"]).metrics
        assert outcome["device"] == device
        assert (metrics["devices"], metrics["shared"]) == given


def _says_where(config: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
    # The devices are assumed: activating them on this machine must not touch CUDA.
    assert ctx.stream is None
    return {"devices": float(len(ctx.devices)), "shared": float(ctx.shared)}


# -- what gpus_per_trial means -----------------------------------------------------------------


@pytest.mark.parametrize("k", [*range(1, 65), 100, 1000])
def test_k_requests_of_a_share_fit_a_gpu_in_dasks_float_arithmetic_and_k_plus_1_do_not(
    k: int,
) -> None:
    for resources in (1, 2, 4, 8):
        request, left, running = gpu_request(1 / k), float(resources), 0
        while left >= request:  # what a Dask worker does as tasks start
            left -= request
            running += 1
        assert running == resources * k == trial_slots(resources, 1 / k)


def _held_for(seconds: float) -> tuple[float, float]:
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


def test_dask_runs_as_many_shares_at_once_as_the_slots_say() -> None:
    """Tenths of two GPUs: twenty at once on a real worker, as `trial_slots` says (ten
    requests of a plain 0.1 per GPU would let only nineteen run)."""
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=1,
            threads_per_worker=24,
            processes=False,
            resources={"GPU": 2},
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        assert slots_of(client, 0.1, wait=5) == 20
        futures = [
            client.submit(_held_for, 0.5, pure=False, resources={"GPU": gpu_request(0.1)})
            for _ in range(40)
        ]
        assert _most_at_once(client.gather(futures)) == 20


@pytest.mark.parametrize(
    ("gpus_per_trial", "per_gpu", "asked", "per_worker"),
    [
        (0, 0, 0.0, 0),
        (0.5, 2, 0.5, 1),
        (0.25, 4, 0.25, 1),
        (0.3, 3, 1 / 3, 1),
        (0.1, 10, 0.1, 1),
        (0.001, 1000, 0.001, 1),
        (1, 1, 1.0, 1),
        (2, 1, 2.0, 2),
    ],
)
def test_a_share_runs_floor_1_over_f_trials_per_gpu(
    gpus_per_trial: float, per_gpu: int, asked: float, per_worker: int
) -> None:
    assert trials_per_gpu(gpus_per_trial) == per_gpu
    assert gpu_request(gpus_per_trial) == pytest.approx(asked, abs=2**-30)
    assert gpu_request(gpus_per_trial) <= asked
    assert gpus_per_worker(gpus_per_trial) == per_worker


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (-1, r"(?s)invalid gpus_per_trial\n  expected: a number >= 0.*received: -1 \(int\)"),
        (True, r"(?s)invalid gpus_per_trial.*received: True \(bool\)"),
        ("0.5", r"(?s)invalid gpus_per_trial.*received: '0.5' \(str\)"),
        (
            1.5,
            r"(?s)invalid gpus_per_trial\n  expected: 0 \(CPU\), a share of one GPU from 0.001 to 1 "
            r".*received: 1.5 \(float\)\n  fix: set gpus_per_trial to 1 \(one GPU each\) or 2 "
            r"\(2 GPUs each\), or to 0.5 to share a GPU between two trials",
        ),
        (2.5, r"fix: set gpus_per_trial to 2 \(2 GPUs each\) or 3 \(3 GPUs each\)"),
        (0.0001, r"received: 0.0001 \(float\)\n  fix: set gpus_per_trial to 0.001 or more"),
    ],
)
def test_bad_gpus_per_trial_say_what_is_expected(value: object, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern):
        check_gpus_per_trial(value)


def test_search_takes_a_share_of_a_gpu_and_refuses_half_gpus_above_one() -> None:
    def make(gpus_per_trial: float | None) -> Search:
        return Search(
            RandomSearch(FunctionSpace(space), max_trials=1, seed=0),
            FunctionTask(sleeps, objective="score", direction="maximize"),
            store=f"memory://gpus-{uuid.uuid4().hex}",
            gpus_per_trial=gpus_per_trial,
        )

    assert make(0.5).gpus_per_trial == 0.5
    with dask.config.set({"morphml.gpus-per-trial": 0.25}):
        assert make(None).gpus_per_trial == 0.25
    with pytest.raises(ClusterError, match=r"(?s)invalid gpus_per_trial.*received: 1.5 \(float\)"):
        make(1.5)


_DOCUMENT = """
name: shared
space: {function: "test_gpus:space"}
task: {function: "test_gpus:sleeps", objective: score, direction: maximize}
optimizer: {name: random-search, seed: 0}
max_trials: 2
store: memory://shared
"""


@pytest.mark.parametrize("gpus", [0.5, 0.25, 2])
def test_an_experiment_file_takes_a_share_of_a_gpu(gpus: float) -> None:
    from morphml_dask.driver import search_from_experiment

    experiment = load_experiment({**_yaml(_DOCUMENT), "gpus_per_trial": gpus})
    assert experiment.gpus_per_trial == gpus
    assert search_from_experiment(experiment).gpus_per_trial == gpus


def test_an_experiment_file_refuses_a_fraction_above_one() -> None:
    with pytest.raises(
        ExperimentError,
        match=r"(?s)invalid value for gpus_per_trial.*received: 1.5 \(float\).*"
        r"fix: set gpus_per_trial to 1 \(one GPU each\) or 2",
    ):
        load_experiment({**_yaml(_DOCUMENT), "gpus_per_trial": 1.5})


def _yaml(text: str) -> dict[str, Any]:
    import yaml

    document: dict[str, Any] = yaml.safe_load(text)
    return document


def test_the_context_runs_on_the_cpu_and_on_assumed_gpus_without_cuda() -> None:
    trial = Trial(id="t", arch=FunctionSpace(space).sample(np.random.default_rng(0)), budget=1)
    for devices, shared in [((), False), (("cuda:0",), True), (("cuda:0", "cuda:1"), False)]:
        ctx = TrialContext(trial, devices=devices, shared=shared)
        with ctx.activate():
            assert ctx.stream is None  # no CUDA here: nothing to make current
        assert ctx.shared is shared and ctx.devices == (tuple(devices) or ("cpu",))
