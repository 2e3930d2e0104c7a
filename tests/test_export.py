"""`morphml export`: a stored trial's model, loaded where morphml_dask cannot be imported.

Two real searches run once for the module (`morphml run`, a local cluster of one worker
process): a DagSpace network trained on digits, and your own train function with its export
hook. Exports run through the command line; the exported files are loaded in a Python
process whose import system refuses morphml_dask.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

torch = pytest.importorskip("torch", reason="exporting a model needs torch (pip install torch)")

from morphml_dask.exceptions import InputError, ModelBuildError, StorageInputError  # noqa: E402
from morphml_dask.export import EXPORT_FILES, export_trial  # noqa: E402
from morphml_dask.space import Config  # noqa: E402
from morphml_dask.storage import open_store  # noqa: E402

pytestmark = pytest.mark.slow

MORPHML = [sys.executable, "-m", "morphml_dask.cli"]

# Run with `python -I` (no working directory, no PYTHONPATH on the path): morphml_dask is
# refused before anything is imported, and torch alone loads the exported files.
_WITHOUT_MORPHML = """
import sys

class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "morphml_dask":
            raise ImportError("morphml_dask is not installed here")
        return None

sys.meta_path.insert(0, _Refuse())
try:
    import morphml_dask
except ImportError:
    pass
else:
    raise SystemExit("morphml_dask was imported")
import torch

folder, inputs, outputs = sys.argv[1:]
model = torch.export.load(f"{folder}/model.pt2").module()
weights = torch.load(f"{folder}/state_dict.pt", weights_only=True)
with torch.no_grad():
    predicted = model(torch.load(inputs, weights_only=True))
assert not any(name.startswith("morphml_dask") for name in sys.modules)
torch.save({"predicted": predicted, "weights": weights}, outputs)
"""

_USER_MODULE = """
import torch
from torch import nn

_GENERATOR = torch.Generator().manual_seed(0)
FEATURES = torch.randn(96, 6, generator=_GENERATOR)
LABELS = (FEATURES[:, 0] + FEATURES[:, 1] > 0).long()


def space(s):
    return {"width": s.choice("width", [4, 8, 16]), "lr": s.float("lr", 0.01, 0.3, log=True)}


def one_config(s):
    return {"width": s.choice("width", [8]), "lr": s.choice("lr", [0.1])}


def build(config):
    return nn.Sequential(nn.Linear(6, config["width"]), nn.ReLU(), nn.Linear(config["width"], 2))


def fit(config, ctx):
    torch.manual_seed(ctx.seed)
    model = build(config)
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"])
    for epoch in range(ctx.trained_epochs + 1, ctx.budget + 1):
        loss = nn.functional.cross_entropy(model(FEATURES[:64]), LABELS[:64])
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            correct = (model(FEATURES[64:]).argmax(1) == LABELS[64:]).float().mean()
        ctx.report(epoch, val_accuracy=100 * float(correct))
    ctx.save({"model": model.state_dict()})


def export_model(config, state):
    model = build(config)
    model.load_state_dict(state["model"])
    return model, torch.zeros(2, 6)


fit.export = export_model
"""


def _search(folder: Path, document: dict[str, Any]) -> Path:
    """Run ``document`` with ``morphml run`` on one worker process; its store's path."""
    folder.mkdir(parents=True, exist_ok=True)
    experiment = folder / "experiment.yaml"
    store = folder / "store"
    experiment.write_text(yaml.safe_dump({**document, "store": str(store)}), encoding="utf-8")
    env = {**os.environ, "DASK_MORPHML__CLUSTER__N_WORKERS": "1"}
    done = subprocess.run(
        [*MORPHML, "run", str(experiment), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return store


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three DagSpace networks trained one epoch each on digits."""
    document = {
        "name": "tiny-digits",
        "space": {"name": "dag-cnn", "max_nodes": 3, "widths": [8]},
        "task": {"name": "train", "dataset": "digits", "epochs": 1, "seed": 0},
        "optimizer": {"name": "random-search", "seed": 0},
        "max_trials": 3,
    }
    return _search(tmp_path_factory.mktemp("digits"), document)


def _function_search(folder: Path, name: str, space: str, budget: int) -> Path:
    """Three trials of ``exported_mlp:fit``, whose module declares its export hook, over
    the space ``exported_mlp:<space>``; the store's path."""
    (folder / "exported_mlp.py").write_text(_USER_MODULE, encoding="utf-8")
    document = {
        "name": name,
        "space": {"function": f"exported_mlp:{space}"},
        "task": {"function": "exported_mlp:fit", "objective": "val_accuracy"},
        "optimizer": {"name": "random-search", "budget": budget, "seed": 0},
        "max_trials": 3,
    }
    return _search(folder, document)


@pytest.fixture(scope="module")
def function_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three trials of a train function of ours whose module declares its export hook."""
    return _function_search(tmp_path_factory.mktemp("function"), "tiny-mlp", "space", budget=3)


@pytest.fixture(scope="module")
def repeated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three trials of a space of one configuration: the first trains it, the other two
    wait for it and reuse its result, training nothing."""
    folder = tmp_path_factory.mktemp("repeated")
    return _function_search(folder, "one-mlp", "one_config", budget=2)


def _export(store: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MORPHML, "export", str(store), "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _load_without_morphml(folder: Path, inputs: Any) -> dict[str, Any]:
    """What the exported model predicts for ``inputs``, and its weights, as computed by a
    process that cannot import morphml_dask."""
    given, outputs = folder.parent / "inputs.pt", folder.parent / "outputs.pt"
    torch.save(inputs, given)
    command = [sys.executable, "-I", "-c", _WITHOUT_MORPHML, str(folder), str(given), str(outputs)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = torch.load(outputs, weights_only=True)
    return loaded


def test_the_best_trial_loads_without_morphml_and_predicts_as_the_stored_model(
    digits_store: Path, tmp_path: Path
) -> None:
    from morphml_dask.models import load_model
    from morphml_dask.space import ArchGraph

    store = open_store(str(digits_store))
    best = str(store.best(1, "val_accuracy")["trial_id"].iloc[0])
    out = tmp_path / "best"
    done = _export(digits_store, out, "--trial", "best")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith(f"trial {best}: val_accuracy=")
    assert sorted(p.name for p in out.iterdir()) == sorted(EXPORT_FILES)

    inputs = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    loaded = _load_without_morphml(out, inputs)
    model = load_model(store, best)
    with torch.no_grad():
        expected = model(inputs)
    torch.testing.assert_close(loaded["predicted"], expected, atol=1e-5, rtol=0)
    assert loaded["weights"].keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded["weights"][name], tensor), name

    summary = json.loads((out / "config.json").read_text())
    record = store.record(best)
    assert ArchGraph.from_dict(summary["candidate"]) == record.trial.arch
    assert summary["objective"] == {
        "metric": "val_accuracy",
        "direction": "maximize",
        "value": record.result.metrics["val_accuracy"],
    }
    assert summary["inputs"] == [{"shape": [-1, 1, 8, 8], "dtype": "torch.float32"}]
    readme = (out / "README.md").read_text()
    assert f"# Trial {best} of the search tiny-digits" in readme
    assert f"| parameters | {record.result.metrics['params']:.6g} |" in readme
    assert 'torch.export.load("model.pt2").module()' in readme


def test_a_trial_of_your_train_function_exports_through_its_hook(
    function_store: Path, tmp_path: Path
) -> None:
    import importlib

    store = open_store(str(function_store))
    best = str(store.best(1, "val_accuracy")["trial_id"].iloc[0])
    declared = tmp_path / "declared"
    done = _export(function_store, declared)  # fit.export, found by the stored experiment
    assert done.returncode == 0, done.stderr
    inputs = torch.randn(7, 6, generator=torch.Generator().manual_seed(2))
    loaded = _load_without_morphml(declared, inputs)

    # By import path: found in the experiment's folder, which loading it puts on sys.path.
    other = next(t for t in store.trials()["trial_id"] if t != best)
    hook = "exported_mlp:export_model"
    given = export_trial(str(function_store), tmp_path / "given", other, model=hook)
    user = importlib.import_module("exported_mlp")
    config = store.record(best).trial.arch
    assert isinstance(config, Config)
    model, _ = user.export_model(config.value, store.load_state(best))
    with torch.no_grad():
        expected = model(inputs)
    torch.testing.assert_close(loaded["predicted"], expected, atol=1e-5, rtol=0)
    summary = json.loads((given / "config.json").read_text())
    assert summary["trial_id"] == other
    assert summary["candidate"] == store.record(other).trial.arch.to_dict()
    assert summary["inputs"] == [{"shape": [-1, 6], "dtype": "torch.float32"}]
    assert "| parameters | - |" in (given / "README.md").read_text()


def test_a_reused_trial_exports_the_weights_of_the_trial_that_trained_it(
    repeated_store: Path, tmp_path: Path
) -> None:
    store = open_store(str(repeated_store))
    table = store.trials()
    assert table["reused"].tolist() == [False, True, True]
    trained, reused = (str(t) for t in table["trial_id"].iloc[:2])
    out = tmp_path / "reused"
    done = _export(repeated_store, out, "--trial", reused)
    assert done.returncode == 0, done.stderr

    summary = json.loads((out / "config.json").read_text())
    assert (summary["trial_id"], summary["weights_of"]) == (reused, trained)
    assert summary["metrics"] == store.record(reused).result.metrics
    weights = torch.load(out / "state_dict.pt", weights_only=True)
    state = store.load_state(trained)
    assert state is not None
    stored = state["model"]
    assert weights.keys() == stored.keys()
    assert all(torch.equal(weights[name], stored[name]) for name in stored)
    readme = (out / "README.md").read_text()
    assert f"| weights of | {trained} (this trial reused its result) |" in readme


def test_a_trial_without_stored_weights_says_so(digits_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "store"
    shutil.copytree(digits_store, copy)
    shutil.rmtree(copy / "artifacts" / "t000001")
    with pytest.raises(
        StorageInputError,
        match=r"trial 't000001' has no saved weights in the store\n"
        r"  expected: a completed trial with saved weights\n"
        r"  received: trial 't000001', state 'complete', without saved weights\n"
        r"  fix: export another trial: --trial best",
    ):
        export_trial(str(copy), tmp_path / "out", "t000001")
    assert not (tmp_path / "out").exists()


def test_an_unknown_trial_and_a_missing_store_are_named(digits_store: Path, tmp_path: Path) -> None:
    with pytest.raises(StorageInputError, match=r"no trial 't999999' in this store"):
        export_trial(str(digits_store), tmp_path / "out", "t999999")
    with pytest.raises(
        StorageInputError,
        match=r"no search stored at .*nowhere\n  expected: the store of a search \(morphml "
        r"run\), holding its checkpoint.json\n  received: 0 trials and no checkpoint",
    ):
        export_trial(str(tmp_path / "nowhere"), tmp_path / "out")


def test_an_output_folder_with_files_is_refused_by_the_command(
    digits_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match=r"the output folder .*out is not empty\n"):
        export_trial(str(digits_store), out)
    done = _export(digits_store, out)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "morphml: error: the output folder" in done.stderr
    assert "fix: pass another --out, or remove that folder first" in done.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_hook_that_is_not_a_function_or_returns_no_model_is_named(
    function_store: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        ModelBuildError,
        match=r"no export hook for the trials of your train function\n"
        r"  expected: a function export\(config, state\) -> \(model, example_input\)\n"
        r"  received: 42\n  fix: set fit.export = your_export_function",
    ):
        export_trial(str(function_store), tmp_path / "a", model=42)  # type: ignore[arg-type]
    with pytest.raises(
        ModelBuildError,
        match=r"the export hook returned something else than a model and an example input",
    ):
        export_trial(str(function_store), tmp_path / "b", model=_returns_the_state)


def _returns_the_state(config: Any, state: dict[str, Any]) -> Any:
    return state
