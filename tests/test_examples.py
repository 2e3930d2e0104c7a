"""The examples of ``examples/`` run as a user runs them, on clusters of worker processes.

Each of the three (an MLP on wine, a ResNet-style CNN on digits, a character-level
transformer on the standard library's source) runs from Python (`Search` with
`FunctionSpace` and `FunctionTask`, on one shared `LocalCluster`) and from ``morphml run
examples/<name>.yaml`` (a subprocess with its own local cluster), at small budgets. The MLP
is also stopped with Ctrl-C and resumed, searched with ASHA (promotions continue from the
state their parent saved) and on a space of four points (a configuration seen before is
reused, not trained again). The README shows the MLP's listing and the docs page the line
counts of the three listings of the side-by-side; both are checked against the files.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from morphml_dask import open_store
from morphml_dask.driver import Search
from morphml_dask.optim import ASHA, RandomSearch, RegularizedEvolution
from morphml_dask.space import Config, FunctionSpace, Sampler
from morphml_dask.storage import ExperimentStore
from morphml_dask.tasks import FunctionTask
from morphml_dask.testing import local_client

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MORPHML = [sys.executable, "-m", "morphml_dask.cli"]


@pytest.fixture(scope="module")
def examples() -> Iterator[dict[str, ModuleType]]:
    """The example modules, imported by the names the workers import them by."""
    with pytest.MonkeyPatch.context() as patch:
        # Before the cluster starts: its worker processes inherit this path.
        patch.syspath_prepend(str(EXAMPLES))
        names = ("mlp_wine", "resnet_digits", "char_transformer")
        yield {name: importlib.import_module(name) for name in names}


@pytest.fixture(scope="module")
def client(examples: dict[str, ModuleType]) -> Iterator[Any]:
    with local_client(n_workers=2, threads_per_worker=1) as client:
        yield client


def _peers_mlp() -> ModuleType:
    """benchmarks/peers_mlp.py, which holds the listing markers and the line counter."""
    spec = importlib.util.spec_from_file_location("peers_mlp", ROOT / "benchmarks" / "peers_mlp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_search(
    store: ExperimentStore, trials: int, epochs: list[int], metric: str
) -> pd.DataFrame:
    """Every trial complete, once, with a finite objective and its config stored; each one
    trained (not reused from an earlier trial of the same config) reported at ``epochs``."""
    table = store.trials()
    assert len(table) == trials and table["trial_id"].is_unique
    assert (table["state"] == "complete").all(), table[["trial_id", "state", "error"]]
    assert np.isfinite(table[metric]).all()
    curves = store.curves()
    for row in table.itertuples():
        config = Config.from_dict(json.loads(str(row.arch)))
        assert config.fingerprint == row.fingerprint
        if not row.reused:
            reported = curves[metric].sel(trial=row.trial_id).dropna("epoch")["epoch"].values
            assert reported.tolist() == epochs, row.trial_id
    return table


# -- each example from Python ------------------------------------------------------------------


def test_mlp_wine_from_python(examples: dict[str, ModuleType], client: Any, tmp_path: Path) -> None:
    mlp_wine = examples["mlp_wine"]
    optimizer = RegularizedEvolution(
        FunctionSpace(mlp_wine.space), population_size=4, budget=3, max_trials=8, seed=0
    )
    task = FunctionTask(mlp_wine.fit, objective="val_accuracy", direction="maximize")
    store = open_store(str(tmp_path / "store"))
    Search(optimizer, task, store=store, client=client).run()
    table = _check_search(store, 8, [1, 2, 3], "val_accuracy")
    assert table["val_accuracy"].between(0, 100).all()
    assert (table["val_loss"] > 0).all()
    # The configuration the fit function trained is the one the space function returned.
    config = Config.from_dict(json.loads(table["arch"].iloc[0]))
    assert len(config.value["widths"]) == config["depth"]
    assert config.value["dropout"] == (config["dropout_rate"] if config["dropout"] else 0.0)


def test_resnet_digits_from_python(
    examples: dict[str, ModuleType], client: Any, tmp_path: Path
) -> None:
    resnet_digits = examples["resnet_digits"]
    optimizer = RegularizedEvolution(
        FunctionSpace(resnet_digits.space),
        population_size=2,
        sample_size=2,
        budget=2,
        max_trials=4,
        seed=1,
    )
    task = FunctionTask(resnet_digits.fit, objective="val_accuracy")
    store = open_store(str(tmp_path / "store"))
    Search(optimizer, task, store=store, client=client).run()
    table = _check_search(store, 4, [1, 2], "val_accuracy")
    assert (table["params"] > 0).all()  # returned by fit, beside the last report
    # Each trial saved its state at its last epoch.
    for trial_id in table["trial_id"]:
        saved = store.saved_state(trial_id)
        assert saved is not None and saved.step == 2


def test_char_transformer_from_python(
    examples: dict[str, ModuleType], client: Any, tmp_path: Path
) -> None:
    char_transformer = examples["char_transformer"]
    optimizer = RegularizedEvolution(
        FunctionSpace(char_transformer.space),
        population_size=2,
        sample_size=2,
        budget=1,
        max_trials=4,
        objective="val_loss",
        direction="minimize",
        seed=2,
    )
    task = FunctionTask(char_transformer.fit, objective="val_loss", direction="minimize")
    store = open_store(str(tmp_path / "store"))
    Search(optimizer, task, store=store, client=client).run()
    table = _check_search(store, 4, [1], "val_loss")
    # Better than a model that learnt nothing: ln of the vocabulary size, in nats.
    vocabulary = len(char_transformer.corpus().vocabulary)
    assert (table["val_loss"] < np.log(vocabulary)).all()
    assert np.allclose(table["val_bits"], table["val_loss"] / np.log(2))


# -- ASHA and deduplication ----------------------------------------------------------------------


def test_asha_promotions_continue_from_the_parents_last_epoch(
    examples: dict[str, ModuleType], client: Any, tmp_path: Path
) -> None:
    mlp_wine = examples["mlp_wine"]
    optimizer = ASHA(FunctionSpace(mlp_wine.space), budgets=[2, 5], eta=2, max_trials=14, seed=0)
    task = FunctionTask(mlp_wine.fit, objective="val_accuracy")
    store = open_store(str(tmp_path / "store"))
    Search(optimizer, task, store=store, client=client, lookahead=0).run()
    table = store.trials().set_index("trial_id")
    promoted = table[table["parent_id"].notna()]
    assert len(promoted) >= 2
    curves = store.curves()["val_loss"]
    for trial_id, row in promoted.iterrows():
        parent = table.loc[row["parent_id"]]
        assert row["fingerprint"] == parent["fingerprint"]
        steps = curves.sel(trial=trial_id).dropna("epoch")["epoch"].values.tolist()
        parent_steps = curves.sel(trial=row["parent_id"]).dropna("epoch")["epoch"].values.tolist()
        assert parent_steps == [1, 2]
        assert steps == [3, 4, 5], f"{trial_id} did not continue from epoch 2 of its parent"


# Four configurations of the wine MLP: one width, two activations, two batch sizes.
def four_point_space(s: Sampler) -> dict[str, Any]:
    return {
        "widths": [32],
        "activation": s.choice("activation", ["relu", "tanh"]),
        "dropout": 0.0,
        "lr": 0.01,
        "weight_decay": 1e-4,
        "batch_size": s.choice("batch_size", [16, 32]),
    }


def test_a_configuration_seen_before_is_reused_not_trained_again(
    examples: dict[str, ModuleType], client: Any, tmp_path: Path
) -> None:
    optimizer = RandomSearch(FunctionSpace(four_point_space), budget=2, max_trials=12, seed=0)
    task = FunctionTask(examples["mlp_wine"].fit, objective="val_accuracy")
    store = open_store(str(tmp_path / "store"))
    # One trial per task and none queued: at most two run at once, so most of the twelve
    # are asked for after their configuration has a result.
    search = Search(optimizer, task, store=store, client=client, max_pack=1, lookahead=0)
    table = search.run()
    assert len(table) == 12 and table["trial_id"].is_unique
    trained, reused = table[~table["reused"]], table[table["reused"]]
    assert len(reused) > 0 and search.status().reused == len(reused)
    assert set(trained["fingerprint"]) == set(table["fingerprint"])
    for row in reused.itertuples():
        # The result of a trial of the same configuration, not a training of its own.
        same = trained[trained["fingerprint"] == row.fingerprint]
        assert row.val_accuracy in same["val_accuracy"].tolist()
        assert store.saved_state(str(row.trial_id)) is None, f"{row.trial_id} was trained"
    assert set(store.curves()["trial"].values) == set(trained["trial_id"])


# -- from the shell ------------------------------------------------------------------------------


def _morphml(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MORPHML, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("name", "trials", "metric", "epochs"),
    [
        ("mlp_wine", 40, "val_accuracy", list(range(1, 11))),
        ("resnet_digits", 12, "val_accuracy", [1, 2, 3]),
        ("char_transformer", 12, "val_loss", None),  # ASHA: rungs of 1 and 3 epochs
    ],
)
def test_morphml_run_of_the_example_yaml(
    name: str, trials: int, metric: str, epochs: list[int] | None, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    done = _morphml("run", str(EXAMPLES / f"{name}.yaml"), "--store", str(store))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{trials} trials" in done.stdout
    if epochs is not None:
        _check_search(open_store(str(store)), trials, epochs, metric)
        return
    table = open_store(str(store)).trials()
    assert len(table) == trials and (table["state"] == "complete").all()
    curves = open_store(str(store)).curves()[metric]
    trained = table[~table["reused"]]
    for trial_id, parent, budget in zip(
        trained["trial_id"], trained["parent_id"], trained["budget"], strict=True
    ):
        first = 2 if isinstance(parent, str) else 1  # a promotion continues at epoch 2
        steps = curves.sel(trial=trial_id).dropna("epoch")["epoch"].values.tolist()
        assert steps == list(range(first, budget + 1))


def test_lamarckian_evolution_from_the_shell(tmp_path: Path) -> None:
    """examples/lamarckian_digits.yaml: 8 architectures trained 4 epochs from scratch, then
    children that start from their parents' weights and train 1 epoch on top."""
    store_url = str(tmp_path / "store")
    done = _morphml("run", str(EXAMPLES / "lamarckian_digits.yaml"), "--store", store_url)
    assert done.returncode == 0, done.stdout + done.stderr
    store = open_store(store_url)
    table = store.trials().set_index("trial_id", drop=False)
    assert len(table) == 32 and (table["state"] == "complete").all()
    children = table[table["parent_id"].notna()]
    roots = table[table["parent_id"].isna()]
    assert len(roots) >= 8 and len(children) >= 16
    assert roots["mutation"].isna().all() and (roots["epochs_trained"] == 4).all()
    assert (children["epochs_trained"] == 1).all() and children["mutation"].notna().all()
    trained = children[~children["reused"]]
    assert trained["inherited_fraction"].between(0.5, 1.0).all(), trained["inherited_fraction"]
    for parent_id in set(children["parent_id"]):
        assert store.load_weights(parent_id), f"the weights of parent {parent_id} are gone"
    # What a child inherited is kept: one epoch on top of its parent's weights scores about
    # what the parent did, where one epoch from scratch scores far less.
    parents = table.loc[trained["parent_id"], "val_accuracy"].to_numpy()
    assert trained["val_accuracy"].mean() > parents.mean() - 3
    best = str(table["val_accuracy"].idxmax())  # the index is the trial id
    chain = store.lineage(best)
    assert chain.iloc[-1]["parent_id"] is None or pd.isna(chain.iloc[-1]["parent_id"])
    assert list(chain["trial_id"][1:]) == [p for p in chain["parent_id"][:-1]]


def test_mlp_wine_stopped_with_ctrl_c_then_resumed(tmp_path: Path) -> None:
    # The example's search at 50 epochs a trial, so that Ctrl-C comes well before its end;
    # the experiment sits in another folder and names the example's on its python_path.
    document = (EXAMPLES / "mlp_wine.yaml").read_text(encoding="utf-8")
    assert "  budget: 10 " in document
    experiment = tmp_path / "mlp_wine.yaml"
    experiment.write_text(
        document.replace("  budget: 10 ", "  budget: 50 ") + f"python_path: [{EXAMPLES}]\n"
    )
    store = tmp_path / "store"
    run = subprocess.Popen(
        [*MORPHML, "run", str(experiment), "--store", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until some results are stored
        if (store / "trials").exists() and len(open_store(str(store)).trials()) >= 3:
            break
        time.sleep(0.1)
    run.send_signal(signal.SIGINT)
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 130, output
    assert f"morphml resume {store}" in output
    stopped = open_store(str(store)).trials()
    assert 3 <= len(stopped) < 40

    # From another folder: the checkpoint holds the import paths and the example's folder.
    resumed = subprocess.run(
        [*MORPHML, "resume", str(store)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    table = open_store(str(store)).trials()
    assert len(table) == 40 and table["trial_id"].is_unique
    assert sorted(table["trial_id"]) == [f"t{i:06d}" for i in range(1, 41)]
    kept = table.set_index("trial_id").loc[stopped["trial_id"], "metrics"]
    assert kept.tolist() == stopped["metrics"].tolist()


# -- the README and the side-by-side -------------------------------------------------------------


def test_the_readme_shows_the_mlp_listing_as_it_is_in_the_module() -> None:
    peers = _peers_mlp()
    listing = peers.listing(EXAMPLES / "mlp_wine.py")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"```python\n{listing}```" in readme, "README.md's listing differs from mlp_wine.py"
    lines = peers.listing_lines(EXAMPLES / "mlp_wine.py")
    assert lines < 30 and f"in these {lines} lines" in readme


def test_the_docs_give_each_listings_line_count() -> None:
    peers = _peers_mlp()
    page = (ROOT / "docs" / "howto" / "own-model.md").read_text(encoding="utf-8")
    counts = {system: peers.listing_lines(path) for system, path in peers.LISTINGS.items()}
    for system, count in counts.items():
        assert f"| {system} | {count} |" in page, f"own-model.md lacks {system}'s {count} lines"
    # As short as Optuna's, which stops losing trials the same way (two lines in the loop);
    # Ray Tune's report ends a stopped trial itself, one line less.
    assert counts["morphml_dask"] <= counts["Optuna"]
    assert counts["morphml_dask"] <= counts["Ray Tune"] + 1
