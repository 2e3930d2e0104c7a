"""`export_trial`: a stored trial's model as files that load with plain PyTorch.

The folder it writes needs neither morphml_dask nor the code that trained the model:
``model.pt2`` (a `torch.export` program, its batch dimension left dynamic),
``state_dict.pt`` (the weights, a dict of tensors for ``torch.load(..., weights_only=True)``),
``config.json`` (the architecture or configuration, the task and the metrics) and
``README.md`` (the metrics and how to load the model). A trial of a built-in space trained
by the built-in task is rebuilt from its architecture and saved weights; a trial of your
own train function is rebuilt by its export hook (`ExportHook`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from morphml_dask.exceptions import InputError, ModelBuildError, StorageInputError
from morphml_dask.registry import resolve
from morphml_dask.space import ArchGraph
from morphml_dask.storage import ExperimentStore, open_store

if TYPE_CHECKING:
    import torch
    from torch import nn

    from morphml_dask.experiment import Experiment
    from morphml_dask.trial import TrialRecord

__all__ = ["EXPORT_FILES", "ExportHook", "export_trial"]

ExportHook = Callable[[Any, dict[str, Any]], "tuple[nn.Module, Any]"]
"""An export hook, ``hook(config, state)``, rebuilds the trained model of a trial of your
train function from its configuration (what the train function was given) and the state
it saved with ``ctx.save``; it returns ``(model, example_input)``, the input to export the
model with being a tensor or a tuple of tensors, their first dimension the batch."""

EXPORT_FORMAT = "morphml.export"
EXPORT_VERSION = 1
EXPORT_FILES = ("model.pt2", "state_dict.pt", "config.json", "README.md")
"""The files `export_trial` writes, in its output folder."""
_TOLERANCE = 1e-5


def export_trial(
    url: str,
    out: str | Path,
    trial: str = "best",
    *,
    storage_options: dict[str, Any] | None = None,
    model: ExportHook | str | None = None,
) -> Path:
    """Write a stored trial's trained model as files that load without morphml_dask.

    Parameters
    ----------
    url
        The search's store, a folder or an fsspec URL (``s3://...``).
    out
        The folder to write `EXPORT_FILES` into; it must not exist or be empty.
    trial
        A trial id, or ``"best"``: the best completed trial by the search's objective (as
        ``morphml report`` ranks them).
    storage_options
        fsspec options of the store.
    model
        For a trial of your own train function (`FunctionTask`): the `ExportHook`, or its
        import path ``"module:name"``. By default, the train function's ``export``
        attribute (``fit.export = export_model``).

    Returns
    -------
    Path
        The output folder.

    Raises
    ------
    StorageInputError
        No search at ``url``, no trial ``trial``, or no weights (saved state) of it.
    ModelBuildError
        No export hook, a hook that returns no model and input, or a model that
        `torch.export` refuses.
    InputError
        When ``out`` exists and is not an empty folder.

    Examples
    --------
    >>> export_trial("./runs/digits", "./best-model")  # doctest: +SKIP
    """
    folder = _empty_folder(Path(out))
    store = open_store(url, storage_options)
    document = _stored_document(store)
    metric, direction, record = _chosen(store, trial)
    trained = _trained(store, record)
    net, example = _rebuilt(store, trained, document, model)
    folder.mkdir(parents=True, exist_ok=True)
    _write_model(folder, net, example)
    summary = _summary(store, (record, trained), document, metric, direction, example)
    (folder / "config.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(_readme(summary), encoding="utf-8")
    return folder


def _empty_folder(out: Path) -> Path:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(
            f"the output folder {out} is not empty",
            expected="a folder that does not exist yet, or an empty one",
            received=f"{out}: " + ("a file" if not out.is_dir() else "a folder with files"),
            fix="pass another --out, or remove that folder first",
        )
    return out


def _stored_document(store: ExperimentStore) -> dict[str, Any]:
    """The experiment document the search stored with its checkpoint."""
    checkpoint = store.load_checkpoint()
    if checkpoint is None or not checkpoint.config:
        raise StorageInputError(
            f"no search stored at {store.url}",
            expected="the store of a search (morphml run), holding its checkpoint.json",
            received=f"{len(store.trials())} trials and no checkpoint",
            fix="check the URL (and --storage-options), or run `morphml run` first",
        )
    return checkpoint.config


def _chosen(store: ExperimentStore, trial: str) -> tuple[str, str, TrialRecord]:
    """The search's objective, its direction, and the trial asked for."""
    from morphml_dask.report import ranking_objective

    metric, direction = ranking_objective(store, store.trials(), None)
    if trial != "best":
        return metric, direction, store.record(trial)
    best = store.best(1, metric, direction)
    if best.empty:
        raise StorageInputError(
            f"no completed trial reported {metric!r} at {store.url}",
            expected="a search with at least one completed trial",
            received=f"trial states {sorted(set(store.trials()['state']))}",
            fix="export a trial by id (--trial ID), or let the search complete a trial",
        )
    return metric, direction, store.record(str(best["trial_id"].iloc[0]))


def _trained(store: ExperimentStore, record: TrialRecord) -> TrialRecord:
    """The trial whose training ``record`` stands for: itself, or for a reused trial (its
    architecture and budget were trained before), the first completed trial that trained
    them, as the search continued from it."""
    if not record.reused:
        return record
    table = store.trials()
    same = table[
        (table["fingerprint"] == record.trial.arch.fingerprint)
        & (table["budget"] == record.trial.budget)
        & ~table["reused"].astype(bool)
        & (table["state"] == "complete")
    ]
    return record if same.empty else store.record(str(same["trial_id"].iloc[0]))


def _rebuilt(
    store: ExperimentStore, record: TrialRecord, document: dict[str, Any], model: object
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The trial's trained model and an example input to export it with."""
    from morphml_dask.experiment import load_experiment

    experiment = load_experiment(document)  # puts the experiment's python_path on sys.path
    if "function" in document["task"]:
        return _from_hook(store, record, experiment, model)
    return _built_in(store, record, experiment)


def _no_weights(record: TrialRecord, what: str, fix: str) -> StorageInputError:
    state, trial_id = record.result.state.value, record.trial.id
    reused = " (a reused trial: it trained nothing)" if record.reused else ""
    return StorageInputError(
        f"trial {trial_id!r} has no {what} in the store",
        expected=f"a completed trial with {what}",
        received=f"trial {trial_id!r}, state {state!r}{reused}, without {what}",
        fix=fix,
    )


def _built_in(
    store: ExperimentStore, record: TrialRecord, experiment: Experiment
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A built-in space's model with its saved weights, and a batch of the task's images."""
    import torch

    from morphml_dask.models import build_model

    arch, dataset = record.trial.arch, getattr(experiment.task, "dataset", None)
    if not isinstance(arch, ArchGraph) or dataset is None:
        raise ModelBuildError(
            f"trial {record.trial.id!r} has no model to export",
            expected="a trial trained by the built-in task (task: {name: train}) or by your "
            "train function with an export hook",
            received=f"a {type(arch).__name__} evaluated by {experiment.task!r}"[:300],
            fix="export a search that trains models; tabular and proxy tasks train none",
        )
    try:
        saved = store.saved_weights(record.trial.id)
    except StorageInputError as error:
        fix = "export another trial: --trial best, or an id from store.best(5)"
        raise _no_weights(record, "saved weights", fix) from error
    net = build_model(
        arch, saved.num_classes, in_channels=saved.in_channels, reductions=saved.reductions
    )
    net.load_state_dict(saved.state_dict)
    # Two images: a batch of one would fix the batch dimension to 1.
    generator = torch.Generator().manual_seed(0)
    return net, (torch.randn(2, *dataset.input_shape, generator=generator),)


def _from_hook(
    store: ExperimentStore, record: TrialRecord, experiment: Experiment, model: object
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The model your export hook rebuilds from the trial's configuration and saved state."""
    hook = _hook(experiment, model)
    state = store.load_state(record.trial.id)
    if state is None:
        fix = "save the model in the train function: ctx.save({'model': model.state_dict()})"
        raise _no_weights(record, "saved state (ctx.save)", fix)
    arch = record.trial.arch
    returned = hook(arch if isinstance(arch, ArchGraph) else arch.value, state)
    return _checked_hook_result(returned)


def _hook(experiment: Experiment, model: object) -> Callable[..., Any]:
    if model is None:
        model = getattr(getattr(experiment.task, "fn", None), "export", None)
    if isinstance(model, str):
        model = resolve(model)
    if not callable(model):
        function = experiment.document["task"]["function"]
        raise ModelBuildError(
            "no export hook for the trials of your train function",
            expected="a function export(config, state) -> (model, example_input)",
            received=f"{function}, without an export attribute, and no --model"
            if model is None
            else repr(model)[:200],
            fix=f"set {function.split(':')[-1]}.export = your_export_function in its module, "
            "or pass --model module:your_export_function (docs: Bring your own model)",
        )
    return model


def _checked_hook_result(returned: object) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    import torch
    from torch import nn

    if isinstance(returned, tuple) and len(returned) == 2:
        net, example = returned
        example = example if isinstance(example, tuple) else (example,)
        if isinstance(net, nn.Module) and all(isinstance(t, torch.Tensor) for t in example):
            return net, example
    raise ModelBuildError(
        "the export hook returned something else than a model and an example input",
        expected="(model, example_input): a torch.nn.Module with its weights loaded, and a "
        "tensor (or a tuple of tensors) whose first dimension is the batch",
        received=repr(returned)[:200],
        fix="return model, torch.zeros(2, *input_shape) from the hook",
    )


def _write_model(folder: Path, net: nn.Module, example: tuple[torch.Tensor, ...]) -> None:
    """``model.pt2`` and ``state_dict.pt``; the exported program must compute what ``net``
    does on ``example``."""
    import torch

    net = net.cpu().eval()
    dynamic = tuple({0: torch.export.Dim.AUTO} if t.dim() else None for t in example)
    try:
        with torch.no_grad():
            program = torch.export.export(net, example, dynamic_shapes=dynamic)
            expected, got = net(*example), program.module()(*example)
    except Exception as error:  # whatever torch.export refuses in a model of yours
        raise ModelBuildError(
            "torch.export cannot export the trial's model",
            expected="a model torch.export.export(model, example_input) accepts",
            received=f"{type(error).__name__}: {error}"[:300],
            fix="make the model's forward exportable (see the torch.export documentation), "
            "and check the example input's shape and dtype",
        ) from error
    if not torch.allclose(expected, got, atol=_TOLERANCE, rtol=0):
        raise ModelBuildError(
            "the exported model computes something else than the trial's model",
            expected=f"the same outputs on the example input, to {_TOLERANCE}",
            received=f"a largest difference of {(expected - got).abs().max().item():.3g}",
            fix="avoid data-dependent Python control flow in forward, then export again",
        )
    torch.export.save(program, folder / "model.pt2")
    weights = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    torch.save(weights, folder / "state_dict.pt")


def _summary(
    store: ExperimentStore,
    records: tuple[TrialRecord, TrialRecord],
    document: Mapping[str, Any],
    metric: str,
    direction: str,
    example: tuple[torch.Tensor, ...],
) -> dict[str, Any]:
    """What ``config.json`` holds: plain JSON, non-finite metrics left out. ``records``:
    the trial exported and the trial whose weights it has (the same one, or the trial that
    trained what a reused trial stands for)."""
    record, trained = records
    metrics = {k: v for k, v in record.result.metrics.items() if math.isfinite(v)}
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "search": document.get("name"),
        "store": store.url,
        "trial_id": record.trial.id,
        "weights_of": trained.trial.id,
        "fingerprint": record.trial.arch.fingerprint,
        "candidate": record.trial.arch.to_dict(),
        "task": document["task"],
        "objective": {"metric": metric, "direction": direction, "value": metrics.get(metric)},
        "metrics": metrics,
        "inputs": [{"shape": [-1, *t.shape[1:]], "dtype": str(t.dtype)} for t in example],
        "files": list(EXPORT_FILES),
    }


def _readme(summary: Mapping[str, Any]) -> str:
    metrics, objective = summary["metrics"], summary["objective"]
    shown = {
        f"objective ({objective['metric']}, {objective['direction']})": objective["value"],
        "validation accuracy (%)": metrics.get("val_accuracy"),
        "parameters": metrics.get("params"),
        "epochs trained": metrics.get("epochs"),
    }
    trial_rows = f"| trial | {summary['trial_id']} |"
    if summary["weights_of"] != summary["trial_id"]:
        trial_rows += f"\n| weights of | {summary['weights_of']} (this trial reused its result) |"
    rows = "\n".join(f"| {k} | {'-' if v is None else f'{v:.6g}'} |" for k, v in shown.items())
    shapes = ", ".join(f"{tuple(i['shape'][1:])} {i['dtype']}" for i in summary["inputs"])
    first = summary["inputs"][0]
    arguments = ["1", *map(str, first["shape"][1:])]
    if first["dtype"] != "torch.float32":
        arguments.append(f"dtype={first['dtype']}")
    example = f"torch.zeros({', '.join(arguments)})"
    return f"""# Trial {summary["trial_id"]} of the search {summary["search"]}

Exported from `{summary["store"]}`; `config.json` holds its architecture or configuration
(`candidate`), its task and every metric it reported.

| metric | value |
|---|---|
{trial_rows}
{rows}

Loads with PyTorch alone; inputs per example: {shapes}, batch first.

```python
import torch
model = torch.export.load("model.pt2").module()
outputs = model({example})
```

The weights alone: `torch.load("state_dict.pt", weights_only=True)`, the model's
`state_dict()`.
"""
