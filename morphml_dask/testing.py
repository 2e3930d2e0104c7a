"""Contract suites that every implementation of an extension point passes.

Use them from your own tests when you write an optimizer::

    from morphml_dask.testing import check_optimizer

    def test_my_optimizer_keeps_the_contract():
        check_optimizer(lambda seed: MyOptimizer(CellSpace(), max_trials=40, seed=seed))

The factory takes a seed and returns a fresh optimizer with a finite ``max_trials``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from morphml_dask.exceptions import OptimizerError
from morphml_dask.optim import BaseOptimizer, RandomSearch
from morphml_dask.optim._warmup import is_warmup, warmup_metric
from morphml_dask.space import CellSpace, Config, DagSpace, Sampler
from morphml_dask.trial import Trial, TrialRecord, TrialResult

if TYPE_CHECKING:
    from morphml_dask.storage import BaseStore

__all__ = [
    "branin_result",
    "branin_space",
    "check_optimizer",
    "check_out_of_order_and_failures",
    "check_repeated_and_unknown_tells",
    "check_same_seed_same_sequence",
    "check_state_dict_round_trip",
    "check_store",
    "conditional_cell_space",
    "conditional_space",
    "free_port",
    "local_client",
    "moto_s3_server",
    "run_optimizer",
    "synthetic_result",
]

OptimizerFactory = Callable[[int], BaseOptimizer]
Evaluator = Callable[[Trial], TrialResult]


def synthetic_result(trial: Trial, *, fail_rate: float = 0.0) -> TrialResult:
    """A deterministic stand-in for training: metrics derived from the fingerprint.

    ``val_accuracy`` grows with the budget like a learning curve; ``params`` is a second,
    conflicting objective; a zero-cost warm-up's trial gets its proxy, which ranks the
    architectures roughly as ``val_accuracy`` does. A ``fail_rate`` share of architectures
    fail, always the same ones.
    """
    digest = hashlib.sha256(f"{trial.arch.fingerprint}".encode()).digest()
    quality, size, fate = (int.from_bytes(digest[i : i + 4], "big") / 2**32 for i in (0, 4, 8))
    if fate < fail_rate:
        return TrialResult.failed(trial.id, "synthetic failure", kind="error")
    if is_warmup(trial):  # a zero-cost proxy: the quality, blurred by the size
        return TrialResult.complete(
            trial.id, {warmup_metric(trial.info["warmup"]): quality + 0.3 * size}
        )
    accuracy = 100.0 * quality * (1.0 - 0.5 / (1.0 + math.log1p(trial.budget)))
    params = 1e5 * (0.2 + quality * 0.5 + size * 0.3)
    return TrialResult.complete(trial.id, {"val_accuracy": accuracy, "params": params})


def morph_space() -> DagSpace:
    """A small DagSpace with room for every network morphism a child inherits weights
    across (a wider layer, a deeper network, a larger kernel): four nodes, three widths,
    three kernels."""
    return DagSpace(max_nodes=4, widths=(8, 16, 32), kernels=(1, 3, 5))


def conditional_space(s: Sampler) -> dict[str, Any]:
    """A define-by-run space with the shapes user spaces have, for contract tests.

    A depth of 1 to 4 layers and a width per layer (a variable-length list), an activation
    and a batch size (choices), a learning rate (a log-scale float), and a dropout rate
    that only exists when the ``dropout`` bool opens its branch::

        check_optimizer(lambda seed: MyOptimizer(FunctionSpace(conditional_space), ...))
    """
    depth = s.int("depth", 1, 4)
    return {
        "widths": [s.int(f"width_{i}", 16, 256, log=True) for i in range(depth)],
        "activation": s.choice("activation", ["relu", "gelu", "tanh"]),
        "lr": s.float("lr", 1e-4, 1e-1, log=True),
        "dropout": s.float("dropout_rate", 0.0, 0.5) if s.bool("dropout") else 0.0,
        "batch_size": s.choice("batch_size", [16, 32, 64]),
    }


def conditional_cell_space(s: Sampler) -> dict[str, Any]:
    """`conditional_space` with a NAS-Bench-201 cell decision, ``s.arch("cell", CellSpace())``."""
    return {**conditional_space(s), "cell": s.arch("cell", CellSpace())}


# Branin's global minimum, reached at three points of [-5, 10] x [0, 15].
BRANIN_MINIMUM = 5.0 / (4.0 * math.pi)  # 0.397887...
# Each option of the shift decision: how far it moves Branin along x1, and what it adds.
BRANIN_SHIFTS = {"none": (0.0, 0.0), "left": (-3.0, 1.0), "right": (3.0, 2.0)}


def branin_space(s: Sampler) -> dict[str, Any]:
    """A mixed space with a known optimum: Branin's two floats and a categorical shift.

    Only ``shift="none"`` reaches Branin's global minimum, `BRANIN_MINIMUM`; the other
    options move the function along ``x1`` and add 1 or 2. See `branin_result`.
    """
    return {
        "x1": s.float("x1", -5.0, 10.0),
        "x2": s.float("x2", 0.0, 15.0),
        "shift": s.choice("shift", list(BRANIN_SHIFTS)),
    }


def branin_result(trial: Trial) -> TrialResult:
    """The shifted Branin value of a `branin_space` config, as the metric ``branin``
    (minimize)."""
    if not isinstance(trial.arch, Config):
        raise TypeError(f"branin_result evaluates configs of branin_space, not {trial.arch!r}")
    config = trial.arch.value
    dx, offset = BRANIN_SHIFTS[config["shift"]]
    x1, x2 = config["x1"] + dx, config["x2"]
    b, c, r, t = 5.1 / (4.0 * math.pi**2), 5.0 / math.pi, 6.0, 1.0 / (8.0 * math.pi)
    value = (x2 - b * x1**2 + c * x1 - r) ** 2 + 10.0 * (1.0 - t) * math.cos(x1) + 10.0
    return TrialResult.complete(trial.id, {"branin": value + offset})


def run_optimizer(
    optimizer: BaseOptimizer,
    evaluate: Evaluator = synthetic_result,
    *,
    workers: int = 4,
    order_seed: int = 0,
    max_steps: int = 100_000,
    record: list[Trial] | None = None,
    pending: list[Trial] | None = None,
    stop_after: int | None = None,
) -> list[tuple[Trial, TrialResult]]:
    """Drive ``optimizer`` like an asynchronous cluster of ``workers`` slots.

    Each step fills free slots with `BaseOptimizer.ask`, then finishes one running trial
    chosen at random (so results arrive out of order) and tells its result. Returns the told
    (trial, result) pairs. ``record`` collects every asked trial, ``pending`` carries running
    trials across calls, ``stop_after`` stops after that many tells.

    Raises
    ------
    AssertionError
        When the optimizer stalls: nothing running, nothing to ask, and not finished.
    """
    order = np.random.default_rng(order_seed)
    running = pending if pending is not None else []
    told: list[tuple[Trial, TrialResult]] = []
    for _ in range(max_steps):
        if len(running) < workers:
            new = optimizer.ask(workers - len(running))
            running.extend(new)
            if record is not None:
                record.extend(new)
        if not running:
            assert optimizer.finished, f"{type(optimizer).__name__} stalled: nothing to ask"
            return told
        trial = running.pop(int(order.integers(len(running))))
        result = evaluate(trial)
        optimizer.tell(result)
        told.append((trial, result))
        if stop_after is not None and len(told) >= stop_after:
            return told
    raise AssertionError(f"{type(optimizer).__name__} did not finish in {max_steps} steps")


def _signature(trials: list[Trial]) -> list[tuple[Any, ...]]:
    return [(t.id, t.arch.fingerprint, t.arch, t.budget, t.rung, t.parent) for t in trials]


def check_same_seed_same_sequence(make: OptimizerFactory) -> None:
    """Same seed and same results give the same trials; another seed gives others."""
    runs = []
    for seed in (0, 0, 1):
        asked: list[Trial] = []
        run_optimizer(make(seed), record=asked)
        runs.append(_signature(asked))
    assert runs[0] == runs[1], "the same seed gave different trials"
    assert runs[0] != runs[2], "different seeds gave identical trials"


def check_state_dict_round_trip(make: OptimizerFactory) -> None:
    """A resumed optimizer (state through JSON) asks exactly what the original would."""
    for stop_after in (1, 7, 19):
        original = make(3)
        running: list[Trial] = []
        run_optimizer(original, pending=running, stop_after=stop_after)
        state = json.loads(json.dumps(original.state_dict()))
        resumed = make(99)  # the checkpoint, not the constructor, decides what follows
        resumed.load_state_dict(state)
        assert resumed.state_dict() == state
        assert [t.id for t in resumed.pending] == [t.id for t in original.pending]
        tails = []
        for opt in (original, resumed):
            asked: list[Trial] = []
            run_optimizer(opt, pending=list(running), record=asked, order_seed=5)
            tails.append(_signature(asked))
            assert opt.finished
        assert tails[0] == tails[1], f"resume after {stop_after} tells diverged"


def check_out_of_order_and_failures(make: OptimizerFactory) -> None:
    """Results in any order, a third of them failures, never break the search."""
    for workers, order_seed in ((1, 0), (3, 1), (16, 2)):
        optimizer = make(order_seed)
        told = run_optimizer(
            optimizer,
            lambda t: synthetic_result(t, fail_rate=0.34),
            workers=workers,
            order_seed=order_seed,
        )
        assert optimizer.finished
        assert optimizer.ask(4) == []
        assert any(not r.ok for _, r in told), "no failure was exercised"
        ids = [t.id for t, _ in told]
        assert len(ids) == len(set(ids)), "a trial was asked twice"
        best = optimizer.best_trial
        scores = {t.id: optimizer.objective.score(r) for t, r in told if r.ok}
        assert best is not None, "no best trial despite completed trials"
        assert scores[best.id] == max(scores.values()), "best_trial is not the best"


def check_repeated_and_unknown_tells(make: OptimizerFactory) -> None:
    """Telling a result twice is ignored; a result for an unknown id is an error."""
    optimizer = make(0)
    trials = optimizer.ask(2)
    assert trials, "the optimizer asked for nothing at the start"
    first = synthetic_result(trials[0])
    optimizer.tell(first)
    state = optimizer.state_dict()
    optimizer.tell(first)
    assert optimizer.state_dict() == state, "a repeated tell changed the optimizer"
    try:
        optimizer.tell(TrialResult.complete("not-a-trial", {"val_accuracy": 1.0}))
    except OptimizerError as error:
        message = str(error)
    else:
        raise AssertionError("a result for an unknown trial was accepted")
    assert "never asked for" in message


def check_optimizer(make: OptimizerFactory) -> None:
    """Run the whole optimizer contract."""
    check_same_seed_same_sequence(make)
    check_state_dict_round_trip(make)
    check_out_of_order_and_failures(make)
    check_repeated_and_unknown_tells(make)


StoreFactory = Callable[[], "BaseStore"]


def _finished_trials(count: int, seed: int = 0) -> list[tuple[Trial, TrialResult]]:
    from morphml_dask.space import CellSpace

    optimizer = RandomSearch(CellSpace(), seed=seed)
    trials = optimizer.ask(count)
    return [(t, synthetic_result(t, fail_rate=0.2)) for t in trials]


def check_store(make: StoreFactory) -> None:
    """The store contract: what goes in comes out once, whatever is appended twice.

    ``make()`` returns a store over a fresh, empty location.
    """
    store = make()
    assert len(store.trials()) == 0
    assert store.records() == []
    assert store.load_checkpoint() is None
    records = [TrialRecord(t, r, worker="w1", attempt=1) for t, r in _finished_trials(30)]
    _check_records_once(store, records)
    curves = _check_curves(store, records)
    _check_checkpoint(store, [record.trial for record in records[:2]])

    before = store.trials().sort_values("trial_id").reset_index(drop=True)
    store.compact()
    after = store.trials().sort_values("trial_id").reset_index(drop=True)
    assert before.equals(after), "compaction changed the trials table"
    assert store.records() == records, "compaction changed the records"
    assert sorted(map(str, store.curves()["trial"].values)) == sorted(curves)
    assert store.append_records(records) == 0, "compaction forgot which ids are stored"
    _check_repeats_and_non_finite_metrics(store, records[0].trial)
    _check_states(store)
    _check_weights(store)


def _check_records_once(store: BaseStore, records: list[TrialRecord]) -> None:
    """Appends are exactly once by id; the table and the records show what was written."""
    from morphml_dask.exceptions import StorageInputError

    assert store.append_records(records[:20]) == 20
    assert store.append_records(records[10:]) == 10, "ids already stored were appended again"
    assert store.append_records(records) == 0
    table = store.trials()
    assert sorted(table["trial_id"]) == sorted(r.trial_id for r in records)
    by_id = table.set_index("trial_id")
    for record in records:
        trial, result = record.trial, record.result
        assert by_id.loc[trial.id, "state"] == result.state.value
        assert by_id.loc[trial.id, "fingerprint"] == trial.arch.fingerprint
        if result.ok:
            assert by_id.loc[trial.id, "val_accuracy"] == result.metrics["val_accuracy"]
        else:
            assert by_id.loc[trial.id, "error"] == result.error
    assert store.records() == records, "records() differs from what was appended"
    assert store.record(records[7].trial_id) == records[7]
    try:
        store.record("not-a-stored-trial")
    except StorageInputError as error:
        message = str(error)
    else:
        raise AssertionError("record() of an unknown id did not raise StorageInputError")
    assert "not-a-stored-trial" in message


def _check_curves(
    store: BaseStore, records: list[TrialRecord]
) -> dict[str, list[dict[str, float]]]:
    curves = {
        r.trial_id: [{"epoch": e, "val_accuracy": float(e) + i} for e in range(1, 2 + i % 4)]
        for i, r in enumerate(records)
    }
    assert store.append_curves(dict(list(curves.items())[:12])) == 12
    assert store.append_curves(curves) == len(curves) - 12
    data = store.curves()
    assert sorted(map(str, data["trial"].values)) == sorted(curves)
    first = records[3].trial_id
    values = data["val_accuracy"].sel(trial=first).dropna("epoch")
    assert values.values.tolist() == [p["val_accuracy"] for p in curves[first]]
    return curves


def _check_checkpoint(store: BaseStore, in_flight: list[Trial]) -> None:
    from morphml_dask.storage import Checkpoint

    optimizer_state = {"format": "anything-json", "values": [1, 2.5, "x"], "nested": {"a": None}}
    store.save_checkpoint(Checkpoint(optimizer_state, {"seed": 3}, in_flight))
    loaded = store.load_checkpoint()
    assert loaded is not None
    assert loaded.optimizer == optimizer_state
    assert loaded.config == {"seed": 3}
    assert [t.id for t in loaded.in_flight] == [t.id for t in in_flight]


def _check_repeats_and_non_finite_metrics(store: BaseStore, template: Trial) -> None:
    """An id repeated within one call is stored once (the first); NaN and infinities come
    back as written."""
    trial = dataclasses.replace(template, id="repeated-in-one-call")
    metrics = {"val_accuracy": 1.5, "loss": math.nan, "gain": math.inf, "drop": -math.inf}
    first = TrialRecord(trial, TrialResult.complete(trial.id, metrics), worker="first")
    second = TrialRecord(trial, TrialResult.complete(trial.id, {}), worker="second")
    assert store.append_records([first, second]) == 1, "an id repeated in a call was stored twice"
    stored = store.record(trial.id)
    assert stored.worker == "first"
    assert stored.trial == trial
    back = dict(stored.result.metrics)
    assert math.isnan(back.pop("loss")), "NaN did not come back"
    assert back == {"val_accuracy": 1.5, "gain": math.inf, "drop": -math.inf}
    assert store.records()[-1].trial_id == trial.id


def _check_states(store: BaseStore) -> None:
    """A trial's saved state comes back as saved, tensors included; a new save replaces it
    whole; a trial that saved none has None; a state that would not load back as data is
    refused and leaves the last one in place."""
    import torch

    from morphml_dask.exceptions import StorageInputError

    assert store.saved_state("never-saved") is None
    assert store.load_state("never-saved") is None
    weights = {"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.zeros(2)}
    first = {"model": weights, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}
    store.save_state("with-state", first, step=2, reports=[{"epoch": 1, "loss": 0.5}])
    saved = store.saved_state("with-state")
    assert saved is not None
    assert (saved.trial_id, saved.step, saved.reports) == (
        "with-state",
        2,
        ({"epoch": 1, "loss": 0.5},),
    )
    assert torch.equal(saved.state["model"]["layer.weight"], weights["layer.weight"])
    assert saved.state["optimizer"] == first["optimizer"]
    store.save_state("with-state", {"epoch": 3}, step=3)
    assert store.load_state("with-state") == {"epoch": 3}, "a new save did not replace the state"
    try:
        store.save_state("with-state", {"model": torch.nn.Linear(2, 2)}, step=4)
    except StorageInputError as error:
        message = str(error)
    else:
        raise AssertionError("a state holding a whole module was stored")
    assert "cannot be stored as data" in message
    loaded = store.saved_state("with-state")
    assert loaded is not None and loaded.step == 3, "a refused state replaced the saved one"


def _check_weights(store: BaseStore) -> None:
    """Weights come back as saved, by trial and rung (the highest by default), with what
    rebuilds their model; a new save of a rung replaces it whole; a trial or rung without
    weights raises `StorageInputError`."""
    import torch

    from morphml_dask.exceptions import StorageInputError

    first = {"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.ones(2)}
    store.save_weights("with-weights", 0, first, num_classes=3, in_channels=1)
    store.save_weights("with-weights", 1, {"x": torch.zeros(1)}, num_classes=3, in_channels=1)
    saved = store.saved_weights("with-weights", 0)
    assert (saved.trial_id, saved.rung, saved.num_classes, saved.in_channels) == (
        "with-weights",
        0,
        3,
        1,
    )
    assert saved.state_dict.keys() == first.keys()
    assert all(torch.equal(saved.state_dict[k], v) for k, v in first.items())
    assert store.saved_weights("with-weights").rung == 1, "not the highest rung by default"
    replaced = {"layer.weight": torch.zeros(2, 3)}
    store.save_weights("with-weights", 0, replaced, num_classes=5, in_channels=2, reductions=1)
    again = store.saved_weights("with-weights", 0)
    assert again.state_dict.keys() == replaced.keys(), "a new save did not replace the rung"
    assert (again.num_classes, again.in_channels, again.reductions) == (5, 2, 1)
    for trial_id, rung in (("never-saved", None), ("with-weights", 7)):
        try:
            store.load_weights(trial_id, rung)
        except StorageInputError as error:
            message = str(error)
        else:
            raise AssertionError(f"weights of {trial_id} rung {rung} that were never saved")
        assert trial_id in message


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server a test starts."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_s3_server(timeout: float = 30.0) -> Iterator[str]:
    """Run moto's S3 server on 127.0.0.1 in a subprocess; yields its endpoint URL.

    Needs ``moto[server]``. The bytes cross a real HTTP socket, so s3fs is exercised as it is
    against a real object store.
    """
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextlib.contextmanager
def local_client(n_workers: int = 2, threads_per_worker: int = 2, **options: Any) -> Iterator[Any]:
    """A `distributed.Client` of a fresh `LocalCluster` of worker processes, its dashboard on
    a free port of 127.0.0.1, both closed at the end; ``options`` go to `LocalCluster`."""
    from distributed import Client, LocalCluster

    options = {"processes": True, "dashboard_address": "127.0.0.1:0", **options}
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=n_workers, threads_per_worker=threads_per_worker, **options
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client
