"""The bad-input census: every kind of input a user gives, each mistake with its message pinned.

One table per kind: experiment documents (YAML text, files, mappings), search spaces,
architecture JSON and NAS-Bench-201 cell strings, dataset arrays, cluster options, store URLs
and credentials, and your own code (space and train functions, import paths, the trial
context, uploads). Every case checks the exact `MorphMLError` subclass, a regular expression
naming the problem, and the three parts every message has (expected, received, fix).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import pytest
import yaml

from morphml_dask.config import config_value
from morphml_dask.exceptions import (
    ClusterError,
    DatasetError,
    ExperimentError,
    InputError,
    InvalidArchitectureError,
    MorphMLError,
    SearchSpaceError,
    StorageInputError,
    TaskError,
    UnschedulableError,
)
from morphml_dask.experiment import load_experiment
from morphml_dask.space import ArchGraph, CellSpace, DagSpace, space_from_dict
from morphml_dask.storage import open_store
from morphml_dask.tasks import (
    FunctionTask,
    ImageDataset,
    NB201TabularTask,
    TrainingTask,
    TrialContext,
    make_dataset,
    open_xarray_dataset,
)
from morphml_dask.trial import Trial

Call = Callable[[Path], object]


def _check(call: Call, error: type[MorphMLError], pattern: str, tmp_path: Path) -> str:
    with pytest.raises(MorphMLError) as caught:
        call(tmp_path)
    message = str(caught.value)
    assert type(caught.value) is error, f"{type(caught.value).__name__}: {message}"
    # Bad input is a ValueError; an outage or a dead cluster never is.
    assert isinstance(caught.value, ValueError) == issubclass(error, InputError), message
    assert re.search(pattern, message, re.DOTALL), message
    for part in ("\n  expected: ", "\n  received: ", "\n  fix: "):
        assert part in message, message
    return message


def case(call: Call, error: type[MorphMLError], pattern: str, id: str, *marks: Any) -> Any:
    return pytest.param(call, error, pattern, id=id, marks=marks)


# -- experiment documents: YAML text, files and mappings --------------------------------------


def nb201_doc(**changes: Any) -> dict[str, Any]:
    """A small valid document that builds in milliseconds (no dataset, no torch)."""
    doc: dict[str, Any] = {
        "name": "tiny",
        "space": {"name": "nb201-cell"},
        "task": {"name": "nb201-tabular", "dataset": "cifar10"},
        "optimizer": {"name": "regularized-evolution", "population_size": 4, "seed": 0},
        "max_trials": 10,
    }
    doc.update(changes)
    return doc


def train_doc(space: dict[str, Any] | None = None, **task: Any) -> dict[str, Any]:
    """A training document; the cases below fail before the digits are loaded."""
    return nb201_doc(
        space={"name": "dag-cnn", "max_nodes": 3, **(space or {})},
        task={"name": "train", "dataset": "digits", "epochs": 2, **task},
    )


def with_section(section: str, **changes: Any) -> dict[str, Any]:
    doc = nb201_doc()
    doc[section] = {**doc[section], **changes}
    return doc


def without(key: str) -> dict[str, Any]:
    doc = nb201_doc()
    del doc[key]
    return doc


def load(document: Any) -> Call:
    return lambda _: load_experiment(document)


def load_file(content: bytes, name: str = "experiment.yaml") -> Call:
    def call(tmp_path: Path) -> object:
        path = tmp_path / name
        path.write_bytes(content)
        return load_experiment(path)

    return call


EXPERIMENT_CASES = [
    case(
        lambda tmp: load_experiment(tmp / "nope.yaml"),
        ExperimentError,
        r"experiment file not found.*received: .*nope\.yaml.*fix: check the path",
        "file-missing",
    ),
    case(
        lambda tmp: load_experiment(tmp),
        ExperimentError,
        r"experiment path is not a file",
        "path-is-a-directory",
    ),
    case(
        load_file(b"name: caf\xe9\n"),
        ExperimentError,
        r"cannot read the experiment file.*a readable UTF-8 YAML file.*encoding",
        "file-not-utf8",
    ),
    case(
        load_file(b"name: x\nspace: {name: dag-cnn\ntask: [1, 2\n", "broken.yaml"),
        ExperimentError,
        r"invalid YAML in .*broken\.yaml at line \d+, column \d+.*fix: correct the YAML",
        "file-yaml-syntax",
    ),
    case(
        load_file(b""),
        ExperimentError,
        r"the experiment in .*experiment\.yaml is not a mapping.*received: None",
        "file-empty",
    ),
    case(
        load("name: x\n  - bad: [\n"),
        ExperimentError,
        r"invalid YAML in the YAML text at line 2, column",
        "text-yaml-syntax",
    ),
    case(
        load("- name\n- space\n"),
        ExperimentError,
        r"the experiment in the YAML text is not a mapping.*received: \['name', 'space'\]",
        "text-a-list",
    ),
    case(
        load("max_trials: 10\nmax_trials: 0\nname: x\n"),
        ExperimentError,
        r"missing required key space",
        "text-without-sections",
    ),
    case(
        load(
            "name: t\nspace: {name: dag-cnn}\n"
            "task: {name: train, dataset: digits, learning_rate: 1e-3}\n"
            "optimizer: {name: random-search}\n"
        ),
        ExperimentError,
        r"invalid value for task\.learning_rate.*a number > 0.*'1e-3' \(str\).*write 1\.0e-3",
        "text-yaml-reads-1e-3-as-text",
    ),
    case(
        load(42),
        ExperimentError,
        r"unsupported experiment source.*received: 42 \(int\)",
        "source-an-int",
    ),
    case(
        load(nb201_doc(max_trial=5)),
        ExperimentError,
        r"unknown key max_trial.*fix: rename max_trial to max_trials",
        "top-key-typo",
    ),
    case(
        load(nb201_doc(epochs=5)),
        ExperimentError,
        r"unknown key epochs.*fix: move epochs to the task section",
        "top-key-of-a-section",
    ),
    case(
        load({**nb201_doc(), 3: 1}),
        ExperimentError,
        r"unknown key 3.*received: 3",
        "top-key-not-a-string",
    ),
    case(
        load(without("optimizer")),
        ExperimentError,
        r"missing required key optimizer.*fix: add optimizer: ",
        "missing-optimizer",
    ),
    case(
        load(nb201_doc(version=2)),
        ExperimentError,
        r"invalid value for version.*1, the only format version.*received: 2",
        "version-2",
    ),
    case(
        load(nb201_doc(name="")),
        ExperimentError,
        r"invalid value for name.*a non-empty string.*received: ''",
        "name-empty",
    ),
    case(
        load(nb201_doc(max_trials=0)),
        ExperimentError,
        r"invalid value for max_trials.*an integer >= 1.*received: 0 \(int\)",
        "max-trials-zero",
    ),
    case(
        load(nb201_doc(max_trials=10**5000)),
        ExperimentError,
        r"invalid value for max_trials.*received: <int too long to print> \(int\)",
        "max-trials-too-long-to-print",
    ),
    case(
        load(nb201_doc(optimizer="random-search")),
        ExperimentError,
        r"invalid value for optimizer.*a mapping with a name.*'random-search' \(str\)",
        "section-not-a-mapping",
    ),
    case(
        load(nb201_doc(task={"dataset": "cifar10"})),
        ExperimentError,
        r"missing task\.name.*received: keys \['dataset'\].*add name: nb201-tabular",
        "section-without-name",
    ),
    case(
        load(nb201_doc(optimizer={"name": "regularised-evolution"})),
        ExperimentError,
        r"unknown optimizer\.name.*'regularised-evolution'.*set optimizer\.name to "
        r"regularized-evolution",
        "optimizer-name-typo",
    ),
    case(
        load(with_section("optimizer", populaton_size=8)),
        ExperimentError,
        r"unknown key optimizer\.populaton_size.*rename optimizer\.populaton_size to "
        r"optimizer\.population_size",
        "optimizer-key-typo",
    ),
    case(
        load(with_section("optimizer", population_size=True)),
        ExperimentError,
        r"invalid value for optimizer\.population_size.*an integer >= 2.*True \(bool\)",
        "integer-given-a-bool",
    ),
    case(
        load(with_section("optimizer", direction="up")),
        ExperimentError,
        r"invalid value for optimizer\.direction.*\['maximize', 'minimize'\].*'up'",
        "direction-not-a-choice",
    ),
    case(
        load(with_section("optimizer", objectives=[["params"]])),
        ExperimentError,
        r"invalid value for optimizer\.objectives\[0\].*a \[metric, direction\] pair",
        "objective-not-a-pair",
    ),
    case(
        load(with_section("optimizer", constraints={"params": "big"})),
        ExperimentError,
        r"invalid value for optimizer\.constraints\.params.*a number",
        "constraint-not-a-number",
    ),
    case(
        load(with_section("optimizer", sample_size=5)),
        ExperimentError,
        r"invalid value for optimizer\.sample_size.*from 1 to population_size \(4\)"
        r".*received: 5 \(int\).*fix: set optimizer\.sample_size to e\.g\. 3",
        "sample-larger-than-population",
    ),
    case(
        load(nb201_doc(optimizer={"name": "genetic-algorithm", "objectives": [["params", "min"]]})),
        ExperimentError,
        r"invalid value for optimizer\.objectives\[0\]\[1\].*\['maximize', 'minimize'\]"
        r".*received: 'min' \(str\)",
        "objective-direction-not-a-choice",
    ),
    case(
        load(
            nb201_doc(
                optimizer={"name": "genetic-algorithm", "objectives": [["params", "minimize"]]}
            )
        ),
        ExperimentError,
        r"invalid optimizer section: objective is not one of the objectives"
        r".*\[\['params', 'minimize'\]\].*fix: in optimizer: pass objective='params'",
        "objective-outside-the-objectives",
    ),
    case(
        load(nb201_doc(optimizer={"name": "asha", "budgets": [200, 12]})),
        ExperimentError,
        r"invalid value for optimizer\.budgets.*strictly increasing.*received: \[200, 12\] \(list\)",
        "asha-budgets-decreasing",
    ),
    case(
        load(train_doc(epochs=4, max_epochs=2)),
        ExperimentError,
        r"invalid value for task\.max_epochs.*at least the largest budget.*, 4.*"
        r"received: 2.*set task\.max_epochs to 4 or more",
        "max-epochs-below-the-budget",
    ),
    case(
        load(nb201_doc(space={"name": "dag-cnn"})),
        ExperimentError,
        r"the nb201-tabular task needs the nb201-cell space.*received: 'dag-cnn'",
        "tabular-task-on-a-dag-space",
    ),
    case(
        load(with_section("task", time_scale=float("nan"))),
        ExperimentError,
        r"invalid value for task\.time_scale.*a number >= 0.*nan \(float\)",
        "time-scale-nan",
    ),
    case(
        load(with_section("task", dataset="mnist")),
        ExperimentError,
        r"invalid value for task\.dataset: unknown NAS-Bench-201 dataset.*'mnist' \(str\).*cifar10",
        "tabular-dataset-unknown",
    ),
    case(
        load(train_doc(dataset="mnist")),
        ExperimentError,
        r"invalid value for task\.dataset.*'digits' or a Zarr store URL.*'mnist' \(str\)",
        "training-dataset-not-a-store",
    ),
    case(
        load(train_doc(storage_options={"anon": True})),
        ExperimentError,
        r"invalid value for task\.storage_options.*digits ships with scikit-learn",
        "digits-with-storage-options",
    ),
    case(
        load(nb201_doc(pruner={"name": "medain"})),
        ExperimentError,
        r"unknown pruner\.name.*one of \['hyperband', 'median', 'successive-halving'\]"
        r".*fix: set pruner\.name to median",
        "pruner-name-unknown",
    ),
    case(
        load(nb201_doc(pruner={"name": "successive-halving", "eta": 1})),
        ExperimentError,
        r"invalid value for pruner\.eta.*an integer >= 2.*received: 1 \(int\)",
        "pruner-eta-below-2",
    ),
    case(
        load(nb201_doc(pruner={"name": "median", "min_budget": 1})),
        ExperimentError,
        r"unknown key pruner\.min_budget.*keys among \['min_trials', 'warmup_steps'\]",
        "pruner-key-of-another-pruner",
    ),
    case(
        load(nb201_doc(pruner="median")),
        ExperimentError,
        r"invalid value for pruner.*a mapping with a name, e\.g\. pruner: \{name: "
        r"successive-halving",
        "pruner-not-a-mapping",
    ),
]


@pytest.mark.parametrize(("call", "error", "pattern"), EXPERIMENT_CASES)
def test_experiment_documents(
    call: Call, error: type[MorphMLError], pattern: str, tmp_path: Path
) -> None:
    _check(call, error, pattern, tmp_path)


# -- search spaces: constructor arguments, to_dict forms, spaces named in documents ----------


def pooling_arch() -> ArchGraph:
    return ArchGraph.from_dict(arch([{"op": "max_pool", "kernel": 3}], [[0, 1], [1, 2]]))


SPACE_CASES = [
    case(
        lambda _: DagSpace(min_nodes=5, max_nodes=4),
        SearchSpaceError,
        r"invalid DagSpace setting max_nodes/min_nodes.*1 <= min_nodes <= max_nodes <= 32"
        r".*min_nodes=5, max_nodes=4",
        "dag-min-above-max",
    ),
    case(
        lambda _: DagSpace(max_nodes=33),
        SearchSpaceError,
        r"invalid DagSpace setting max_nodes\n.*an integer from 1 to 32.*received: 33 \(int\)",
        "dag-too-many-nodes",
    ),
    case(
        lambda _: DagSpace(max_nodes=True),
        SearchSpaceError,
        r"invalid DagSpace setting max_nodes\n.*received: True \(bool\)",
        "dag-nodes-a-bool",
    ),
    case(
        lambda _: DagSpace(ops=["conv", "lstm"]),
        SearchSpaceError,
        r"invalid DagSpace setting ops\[1\].*one of \['conv', 'sep_conv'.*received: 'lstm' \(str\)",
        "dag-unknown-op",
    ),
    case(
        lambda _: DagSpace(ops=[]),
        SearchSpaceError,
        r"invalid DagSpace setting ops.*a non-empty list.*received: \[\]",
        "dag-no-ops",
    ),
    case(
        lambda _: DagSpace(ops="conv"),  # type: ignore[arg-type]
        SearchSpaceError,
        r"invalid DagSpace setting ops.*a non-empty list.*received: 'conv'",
        "dag-ops-a-string",
    ),
    case(
        lambda _: DagSpace(kernels=[2]),
        SearchSpaceError,
        r"invalid DagSpace setting kernels\[0\].*\[1, 3, 5, 7\].*received: 2 \(int\)",
        "dag-even-kernel",
    ),
    case(
        lambda _: DagSpace(kernels=3),  # type: ignore[arg-type]
        SearchSpaceError,
        r"invalid DagSpace setting kernels.*a non-empty list.*received: 3",
        "dag-kernels-a-scalar",
    ),
    case(
        lambda _: DagSpace(widths=[16.0]),  # type: ignore[list-item]
        SearchSpaceError,
        r"invalid DagSpace setting widths\[0\].*a channel count, an integer.*received: 16\.0 \(float\)",
        "dag-width-a-float",
    ),
    case(
        lambda _: DagSpace(widths=[8192]),
        SearchSpaceError,
        r"invalid DagSpace setting widths\[0\].*from 1 to 4096.*received: 8192 \(int\)",
        "dag-width-too-wide",
    ),
    case(
        lambda _: DagSpace(skip_prob=1.5),
        SearchSpaceError,
        r"invalid DagSpace setting skip_prob.*a probability from 0 to 1.*received: 1\.5 \(float\)",
        "dag-skip-prob-above-1",
    ),
    case(
        lambda _: DagSpace(skip_prob="high"),  # type: ignore[arg-type]
        SearchSpaceError,
        r"invalid DagSpace setting skip_prob.*received: 'high'",
        "dag-skip-prob-text",
    ),
    case(
        lambda _: space_from_dict({"name": "nas-bench-101"}),
        SearchSpaceError,
        r"unknown search space.*\['nb201-cell', 'dag-cnn', 'function'\].*received: 'nas-bench-101'",
        "space-dict-unknown-name",
    ),
    case(
        lambda _: space_from_dict({"name": "dag-cnn", "max_node": 3}),
        SearchSpaceError,
        r"unknown settings of the dag-cnn space.*'max_nodes'.*received: keys \['max_node'\]",
        "space-dict-setting-typo",
    ),
    case(
        lambda _: space_from_dict(["dag-cnn"]),  # type: ignore[arg-type]
        SearchSpaceError,
        r"unknown search space.*received: None.*to_dict\(\) output",
        "space-dict-not-a-dict",
    ),
    case(
        lambda _: CellSpace().from_index(15_625),
        SearchSpaceError,
        r"NAS-Bench-201 index out of range.*from 0 to 15624.*received: 15625",
        "cell-index-out-of-range",
    ),
    case(
        lambda _: CellSpace().from_ops(["conv"] * 6),
        SearchSpaceError,
        r"not a NAS-Bench-201 op list.*6 ops, each one of.*\['conv', 'conv'",
        "cell-ops-not-nb201",
    ),
    case(
        lambda _: CellSpace().from_ops(None),  # type: ignore[arg-type]
        SearchSpaceError,
        r"not a NAS-Bench-201 op list.*received: None",
        "cell-ops-not-a-list",
    ),
    case(
        lambda _: DagSpace(ops=["conv"]).mutate(pooling_arch(), np.random.default_rng(0)),
        SearchSpaceError,
        r"the architecture is not in this DAG space.*from \['conv'\].*max_pool",
        "arch-outside-the-dag-space",
    ),
    case(
        lambda _: CellSpace().to_arch_str(pooling_arch()),
        SearchSpaceError,
        r"the architecture is not a NAS-Bench-201 cell.*CellSpace\(\)\.from_arch_str",
        "arch-not-a-cell",
    ),
    case(
        load(train_doc(space={"ops": ["conv", "lstm"]})),
        ExperimentError,
        r"invalid value for space\.ops\[1\].*one of \['conv'.*received: 'lstm' \(str\)"
        r".*fix: set space\.ops\[1\] to one of",
        "document-space-unknown-op",
    ),
    case(
        load(train_doc(space={"min_nodes": 4})),
        ExperimentError,
        r"invalid space section: invalid DagSpace setting max_nodes/min_nodes"
        r".*received: min_nodes=4, max_nodes=3.*fix: in space: ",
        "document-space-min-above-max",
    ),
    case(
        load(with_section("space", max_nodes=4)),
        ExperimentError,
        r"unknown key space\.max_nodes.*keys among \[\].*fix: remove space\.max_nodes",
        "document-cell-space-setting",
    ),
    case(
        load(train_doc(space={"widths": [16, "32"]})),
        ExperimentError,
        r"invalid value for space\.widths\[1\].*an integer from 1 to 4096.*'32' \(str\)",
        "document-space-width-text",
    ),
    case(
        load(train_doc(space={"skip_prob": 2})),
        ExperimentError,
        r"invalid value for space\.skip_prob.*a probability from 0 to 1.*received: 2 \(int\)",
        "document-space-skip-prob",
    ),
    case(
        load(nb201_doc(space={"name": "dag"})),
        ExperimentError,
        r"unknown space\.name.*\['dag-cnn', 'function', 'nb201-cell'\].*set space\.name to dag-cnn",
        "document-space-name-typo",
    ),
]


@pytest.mark.parametrize(("call", "error", "pattern"), SPACE_CASES)
def test_search_spaces(call: Call, error: type[MorphMLError], pattern: str, tmp_path: Path) -> None:
    _check(call, error, pattern, tmp_path)


# -- architecture JSON and NAS-Bench-201 cell strings -----------------------------------------

CONV = {"op": "conv", "kernel": 3, "channels": 16}


def arch(middle: list[Any], edges: Any, **changes: Any) -> dict[str, Any]:
    """An architecture document: input, the ``middle`` nodes, output."""
    nodes = [{"op": "input"}, *middle, {"op": "output"}]
    return {"format": "morphml.arch", "version": 1, "nodes": nodes, "edges": edges, **changes}


def parse(data: Any) -> Call:
    return lambda _: ArchGraph.from_dict(data)


def parse_cell(arch_str: Any) -> Call:
    return lambda _: CellSpace().from_arch_str(arch_str)


CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"

ARCH_CASES = [
    case(
        parse([{"op": "input"}]),
        InvalidArchitectureError,
        r"not an architecture document.*\"format\": \"morphml\.arch\".*received: 'list'",
        "not-a-mapping",
    ),
    case(
        parse(arch([], [[0, 1]], format="nasbench")),
        InvalidArchitectureError,
        r"not an architecture document.*received: 'nasbench'.*ArchGraph\.to_dict\(\)",
        "wrong-format",
    ),
    case(
        parse(arch([], [[0, 1]], version=99)),
        InvalidArchitectureError,
        r"unsupported architecture document version.*version 1.*received: 99.*upgrade",
        "version-from-the-future",
    ),
    case(
        parse(arch([], [[0, 1]], version=True)),
        InvalidArchitectureError,
        r"unsupported architecture document version.*received: True",
        "version-a-bool",
    ),
    case(
        parse({**arch([], []), "edge": [[0, 1]]}),
        InvalidArchitectureError,
        r"unknown keys in the architecture document.*'edges'.*received: keys \['edge'\]",
        "key-typo",
    ),
    case(
        parse(arch([], [[0, 1]], nodes={"op": "input"})),
        InvalidArchitectureError,
        r"malformed node list.*a list of objects like.*received: \{'op': 'input'\}",
        "nodes-not-a-list",
    ),
    case(
        parse(arch([{"kernel": 3}], [[0, 1], [1, 2]])),
        InvalidArchitectureError,
        r"malformed node list.*give every node an \"op\" key",
        "node-without-op",
    ),
    case(
        parse(arch([{"op": "conv", "kernel": 3, 16: "channels"}], [[0, 1], [1, 2]])),
        InvalidArchitectureError,
        r"malformed node list.*with string keys.*16: 'channels'",
        "node-key-not-a-string",
    ),
    case(
        parse(arch([{"op": "conv3x3"}], [[0, 1], [1, 2]])),
        InvalidArchitectureError,
        r"unknown op 'conv3x3'.*one of \[.*'conv'.*spelling and case matter",
        "unknown-op",
    ),
    case(
        parse(arch([{"op": 3}], [[0, 1], [1, 2]])),
        InvalidArchitectureError,
        r"a node's op must be a string.*received: int 3",
        "op-not-a-string",
    ),
    case(
        parse(arch([{"op": "conv", "kernel": 3}], [[0, 1], [1, 2]])),
        InvalidArchitectureError,
        r"op 'conv' has the wrong hyper-parameters.*exactly \['channels', 'kernel'\]"
        r".*received: \['kernel'\]",
        "op-missing-a-parameter",
    ),
    case(
        parse(arch([{"op": "max_pool", "kernel": 3, "channels": 16}], [[0, 1], [1, 2]])),
        InvalidArchitectureError,
        r"op 'max_pool' has the wrong hyper-parameters.*exactly \['kernel'\]",
        "op-extra-parameter",
    ),
    case(
        parse(arch([{**CONV, "kernel": 4}], [[0, 1], [1, 2]])),
        InvalidArchitectureError,
        r"op 'conv' has an invalid 'kernel'.*\(1, 3, 5, 7\).*received: 4",
        "kernel-not-allowed",
    ),
    case(
        parse(arch([{**CONV, "kernel": 3.0}], [[0, 1], [1, 2]])),
        InvalidArchitectureError,
        r"op 'conv' has an invalid 'kernel'.*received: 3\.0",
        "kernel-a-float",
    ),
    case(
        parse(arch([{**CONV, "channels": 0}], [[0, 1], [1, 2]])),
        InvalidArchitectureError,
        r"op 'conv' has an invalid 'channels'.*an integer in 1\.\.4096.*received: 0",
        "channels-zero",
    ),
    case(
        parse(arch([], 5)),
        InvalidArchitectureError,
        r"malformed edge list.*a list of \[source, target\] pairs.*received: int 5",
        "edges-not-a-list",
    ),
    case(
        parse(arch([], [[0, 1, 2]])),
        InvalidArchitectureError,
        r"malformed edge.*a pair of node indices.*received: \[0, 1, 2\]",
        "edge-not-a-pair",
    ),
    case(
        parse(arch([], [[0.0, 1]])),
        InvalidArchitectureError,
        r"malformed edge.*received: \[0\.0, 1\]",
        "edge-index-a-float",
    ),
    case(
        parse(arch([], [[0, 5]])),
        InvalidArchitectureError,
        r"edge refers to a node that does not exist.*between 0 and 1.*edge \(0, 5\)",
        "edge-index-out-of-range",
    ),
    case(
        parse(arch([CONV], [[0, 1], [1, 1], [1, 2]])),
        InvalidArchitectureError,
        r"the graph has a self-loop.*edge \(1, 1\)",
        "self-loop",
    ),
    case(
        parse(arch([CONV], [[0, 1], [0, 1], [1, 2]])),
        InvalidArchitectureError,
        r"edge listed twice.*edge \(0, 1\) repeated",
        "edge-twice",
    ),
    case(
        parse(arch([CONV, CONV], [[0, 1], [1, 2], [2, 1], [2, 3]])),
        InvalidArchitectureError,
        r"the graph has a cycle.*a directed acyclic graph.*\[2, 1\]",
        "cycle",
    ),
    case(
        parse(arch([CONV], [[0, 1]])),
        InvalidArchitectureError,
        r"the output node is not connected to the input node.*add edges",
        "output-unreachable",
    ),
    case(
        parse(arch([{"op": "input"}], [[0, 2], [1, 2]])),
        InvalidArchitectureError,
        r"the graph needs exactly one input node.*received: 2",
        "two-inputs",
    ),
    case(
        parse({**arch([], []), "nodes": [{"op": "input"}, CONV], "edges": [[0, 1]]}),
        InvalidArchitectureError,
        r"the graph needs exactly one output node.*received: 0",
        "no-output",
    ),
    case(
        parse(arch([CONV], [[0, 1], [1, 0], [1, 2]])),
        InvalidArchitectureError,
        r"the input node has incoming edges.*edges from nodes \[1\]",
        "edge-into-the-input",
    ),
    case(
        parse(arch([CONV, CONV], [[0, 1], [1, 3], [3, 2]])),
        InvalidArchitectureError,
        r"the output node has outgoing edges.*edges to nodes \[2\]",
        "edge-out-of-the-output",
    ),
    case(
        parse(arch([CONV] * 70, [[i, i + 1] for i in range(71)])),
        InvalidArchitectureError,
        r"the graph has the wrong number of nodes.*between 2 and 64.*received: 72 nodes",
        "too-many-nodes",
    ),
    case(
        parse({**arch([], []), "nodes": [{"op": "input"}]}),
        InvalidArchitectureError,
        r"the graph has the wrong number of nodes.*received: 1 nodes",
        "a-single-node",
    ),
    case(
        parse_cell(CELL.rsplit("+", 1)[0]),
        SearchSpaceError,
        r"malformed NAS-Bench-201 arch_str.*three '\+'-joined groups.*received: '\|nor_conv_3x3~0",
        "cell-two-groups",
    ),
    case(
        parse_cell(CELL.replace("avg_pool_3x3", "max_pool_3x3")),
        SearchSpaceError,
        r"malformed NAS-Bench-201 arch_str.*ops from \['none'.*max_pool_3x3~2",
        "cell-unknown-op",
    ),
    case(
        parse_cell(CELL.replace("skip_connect~1", "skip_connect~0")),
        SearchSpaceError,
        r"malformed NAS-Bench-201 arch_str.*skip_connect~0\|\+",
        "cell-wrong-source-node",
    ),
    case(
        parse_cell(CELL.strip("|")),
        SearchSpaceError,
        r"malformed NAS-Bench-201 arch_str.*CellSpace\.to_arch_str",
        "cell-outer-pipes-missing",
    ),
    case(
        parse_cell(1234),
        SearchSpaceError,
        r"malformed NAS-Bench-201 arch_str.*received: 1234",
        "cell-not-a-string",
    ),
]


@pytest.mark.parametrize(("call", "error", "pattern"), ARCH_CASES)
def test_architecture_documents(
    call: Call, error: type[MorphMLError], pattern: str, tmp_path: Path
) -> None:
    _check(call, error, pattern, tmp_path)


# -- dataset arrays and stores ----------------------------------------------------------------

X = np.zeros((12, 1, 4, 4), dtype=np.float32)
Y = np.arange(12) % 3


def arrays(images: Any = X, labels: Any = Y, **kwargs: Any) -> Call:
    return lambda _: make_dataset(images, labels, name="mine", **kwargs)


def with_pixel(value: float) -> np.ndarray[Any, Any]:
    images = X.astype(np.float64)
    images[3, 0, 1, 1] = value
    return images


def direct(**changes: Any) -> Call:
    """An `ImageDataset` built by hand, as users may, bypassing make_dataset."""
    fields: dict[str, Any] = {
        "x_train": X[:6],
        "y_train": Y[:6],
        "x_val": X[6:9],
        "y_val": Y[6:9],
        "x_test": X[9:],
        "y_test": Y[9:],
        "num_classes": 3,
    }
    return lambda _: ImageDataset("mine", **{**fields, **changes})


def zarr_store(tmp_path: Path) -> str:
    xr = pytest.importorskip("xarray")
    url = str(tmp_path / "data.zarr")
    variables = {"pixels": (("sample", "y", "x"), X[:, 0]), "labels": (("sample",), Y)}
    xr.Dataset(variables).to_zarr(url, mode="w", zarr_format=2)
    return url


DATASET_CASES = [
    case(
        arrays(np.zeros((12, 16))),
        DatasetError,
        r"dataset 'mine' has images of the wrong shape.*\(N, H, W\) or \(N, C, H, W\)"
        r".*shape \(12, 16\)",
        "images-2d",
    ),
    case(
        arrays(np.zeros((12, 1, 1, 4, 4))),
        DatasetError,
        r"images of the wrong shape.*shape \(12, 1, 1, 4, 4\)",
        "images-5d",
    ),
    case(
        arrays(np.zeros((0, 1, 4, 4)), Y[:0]),
        DatasetError,
        r"images of the wrong shape.*a non-empty array.*shape \(0, 1, 4, 4\)",
        "images-no-samples",
    ),
    case(
        arrays(np.zeros((12, 1, 0, 4))),
        DatasetError,
        r"images of the wrong shape.*shape \(12, 1, 0, 4\)",
        "images-zero-height",
    ),
    case(
        arrays(X.astype(str)),
        DatasetError,
        r"images of the wrong dtype.*real numbers.*dtype <U32.*astype\('float32'\)",
        "images-strings",
    ),
    case(
        arrays(X.astype(np.complex64)),
        DatasetError,
        r"images of the wrong dtype.*dtype complex64",
        "images-complex",
    ),
    case(
        arrays(X > 0),
        DatasetError,
        r"images of the wrong dtype.*dtype bool",
        "images-bool",
    ),
    case(
        arrays(X.astype("timedelta64[s]")),
        DatasetError,
        r"images of the wrong dtype.*dtype timedelta64\[s\]",
        "images-timedelta",
    ),
    case(
        arrays([[[0.0, 1.0]], [[0.0]]], [0, 1]),
        DatasetError,
        r"images that are not an array.*of one shape.*inhomogeneous.*numpy\.stack",
        "images-ragged",
    ),
    case(
        arrays(with_pixel(np.nan)),
        DatasetError,
        r"NaN or infinite pixels.*finite values.*received: 1 non-finite values",
        "images-nan",
    ),
    case(
        arrays(with_pixel(-np.inf)),
        DatasetError,
        r"NaN or infinite pixels.*received: 1 non-finite values",
        "images-inf",
    ),
    case(
        arrays(with_pixel(1e300)),
        DatasetError,
        r"NaN or infinite pixels.*within float32's range.*1 non-finite values as float32"
        r".*scale them",
        "images-beyond-float32",
    ),
    case(
        arrays(labels=Y[:5]),
        DatasetError,
        r"labels of the wrong shape.*shape \(12,\).*received: shape \(5,\)",
        "labels-fewer-than-images",
    ),
    case(
        arrays(labels=np.eye(3, dtype=int)[Y]),
        DatasetError,
        r"labels of the wrong shape.*received: shape \(12, 3\).*1-D array of class ids",
        "labels-one-hot",
    ),
    case(
        arrays(labels=Y.astype(float)),
        DatasetError,
        r"invalid labels.*non-negative integer class ids.*dtype float64.*return_inverse",
        "labels-float",
    ),
    case(
        arrays(labels=np.array(list("abcabcabcabc"))),
        DatasetError,
        r"invalid labels.*dtype <U1",
        "labels-strings",
    ),
    case(
        arrays(labels=np.array(["a", 1] * 6, dtype=object)),
        DatasetError,
        r"invalid labels.*dtype object",
        "labels-mixed-objects",
    ),
    case(
        arrays(labels=Y - 1),
        DatasetError,
        r"labels out of range.*non-negative.*labels from -1 to 1",
        "labels-negative",
    ),
    case(
        arrays(labels=np.array([2**63, 0, 1] * 4, dtype=np.uint64)),
        DatasetError,
        r"labels out of range.*labels from 0 to 9223372036854775808",
        "labels-beyond-int64",
    ),
    case(
        arrays(labels=Y * 0),
        DatasetError,
        r"a single class.*at least two classes.*only class 0",
        "labels-one-class",
    ),
    case(
        arrays(split=["train"] * 11 + ["holdout"]),
        DatasetError,
        r"malformed split.*one of \['train', 'val', 'test'\] per sample.*'holdout'",
        "split-unknown-name",
    ),
    case(
        arrays(split=["train", "val", "test"]),
        DatasetError,
        r"malformed split.*\(12 values\).*shape \(3,\)",
        "split-too-short",
    ),
    case(
        arrays(split=["train"] * 6 + ["val"] * 6),
        DatasetError,
        r"empty test split.*at least one sample.*split sizes \[6, 6, 0\]",
        "split-without-test",
    ),
    case(
        arrays(X[:3], Y[:3]),
        DatasetError,
        r"empty test split.*3 samples with split sizes \[2, 1, 0\]",
        "too-few-samples",
    ),
    case(
        arrays(fractions=(0.7, 0.2, 0.2)),
        DatasetError,
        r"invalid split fractions.*summing to 1.*received: \(0\.7, 0\.2, 0\.2\)",
        "fractions-not-summing-to-1",
    ),
    case(
        arrays(fractions=(0.5, 0.5)),
        DatasetError,
        r"invalid split fractions.*three fractions.*received: \(0\.5, 0\.5\)",
        "fractions-two-values",
    ),
    case(
        arrays(seed=-1),
        DatasetError,
        r"invalid seed.*a non-negative integer.*received: -1",
        "seed-negative",
    ),
    case(
        direct(y_train=np.array([0, 1, 5, 0, 1, 2])),
        DatasetError,
        r"train labels out of range.*from 0 to num_classes - 1 = 2.*labels from 0 to 5",
        "labels-beyond-num-classes",
    ),
    case(
        direct(num_classes=1),
        DatasetError,
        r"invalid num_classes.*an integer >= 2.*received: 1",
        "num-classes-one",
    ),
    case(
        direct(x_val=np.zeros((3, 1, 5, 5), dtype=np.float32)),
        DatasetError,
        r"malformed val arrays.*\(C, H, W\) = \(1, 4, 4\).*images float32 \(3, 1, 5, 5\)",
        "splits-of-different-image-shapes",
    ),
    case(
        direct(x_test=X[9:].astype(np.float64)),
        DatasetError,
        r"malformed test arrays.*float32 images.*images float64",
        "split-not-float32",
    ),
    case(
        lambda tmp: open_xarray_dataset(str(tmp / "missing.zarr")),
        DatasetError,
        r"cannot open the Zarr dataset at '.*missing\.zarr'.*FileNotFoundError",
        "zarr-missing",
    ),
    case(
        lambda tmp: open_xarray_dataset(zarr_store(tmp)),
        DatasetError,
        r"the Zarr store at '.*data\.zarr' lacks variables \['images'\].*'pixels'"
        r".*pass images=\.\.\.",
        "zarr-without-images",
    ),
    case(
        lambda tmp: open_xarray_dataset(zarr_store(tmp), storage_options="anon=true"),  # type: ignore[arg-type]
        DatasetError,
        r"invalid storage_options for the Zarr dataset.*a mapping.*received: a str",
        "zarr-options-not-a-mapping",
    ),
    case(
        lambda _: TrainingTask(X),  # type: ignore[arg-type]
        TaskError,
        r"unknown dataset.*an ImageDataset.*received: array\(.*make_dataset\(images, labels\)",
        "training-task-given-arrays",
    ),
    case(
        lambda _: TrainingTask("mnist"),
        TaskError,
        r"unknown dataset.*'digits' or an ImageDataset.*received: 'mnist'",
        "training-task-unknown-name",
    ),
    case(
        lambda _: NB201TabularTask("cifar-10"),
        TaskError,
        r"unknown NAS-Bench-201 dataset.*\['cifar10', 'cifar100', 'imagenet'\].*'cifar-10'",
        "tabular-task-unknown-name",
    ),
]


@pytest.mark.parametrize(("call", "error", "pattern"), DATASET_CASES)
def test_datasets(call: Call, error: type[MorphMLError], pattern: str, tmp_path: Path) -> None:
    _check(call, error, pattern, tmp_path)


# -- cluster options: gpus_per_trial, the dask config, the workers ----------------------------


def with_config(settings: dict[str, Any], call: Call) -> Call:
    def configured(tmp_path: Path) -> object:
        with dask.config.set(settings):
            return call(tmp_path)

    return configured


def slots(workers: int, resources: dict[str, float], gpus_per_trial: int) -> Call:
    """`slots_of` on a real (in-process) cluster of ``workers`` workers with ``resources``."""

    def call(_: Path) -> object:
        from distributed import Client, LocalCluster

        from morphml_dask.driver._cluster import slots_of

        with (
            LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers,
                threads_per_worker=1,
                processes=False,
                resources=resources,
                dashboard_address=None,
                worker_dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,  # type: ignore[no-untyped-call]
        ):
            return slots_of(client, gpus_per_trial, wait=0)

    return call


CLUSTER_CASES = [
    case(
        load(nb201_doc(gpus_per_trial=-1)),
        ExperimentError,
        r"invalid value for gpus_per_trial.*a number >= 0.*-1 \(int\)",
        "gpus-per-trial-negative",
    ),
    case(
        load(nb201_doc(gpus_per_trial="1")),
        ExperimentError,
        r"invalid value for gpus_per_trial.*'1' \(str\).*YAML reads numbers like 1e-3 as text",
        "gpus-per-trial-text",
    ),
    case(
        load(nb201_doc(gpus_per_trial=float("inf"))),
        ExperimentError,
        r"invalid value for gpus_per_trial.*inf \(float\)",
        "gpus-per-trial-infinite",
    ),
    case(
        load(nb201_doc(cluster={"n-workers": 4})),
        ExperimentError,
        r"unknown key cluster.*received: 'cluster'.*fix: remove cluster",
        "cluster-section-in-a-document",
    ),
    case(
        with_config({"morphml.max-trials": "many"}, load(without("max_trials"))),
        ExperimentError,
        r"invalid value for max_trials \(default from the dask config morphml\.max-trials\)"
        r".*'many' \(str\)",
        "config-max-trials-text",
    ),
    case(
        with_config({"morphml.gpus-per-trial": -0.5}, load(nb201_doc())),
        ExperimentError,
        r"invalid value for gpus_per_trial \(default from the dask config "
        r"morphml\.gpus-per-trial\).*a number >= 0",
        "config-gpus-per-trial-negative",
    ),
    case(
        with_config({"morphml.store": ""}, load(nb201_doc())),
        ExperimentError,
        r"invalid value for store \(default from the dask config morphml\.store\)"
        r".*a non-empty string",
        "config-store-empty",
    ),
    case(
        with_config({"morphml.time-scale": -1}, load(nb201_doc())),
        ExperimentError,
        r"invalid value for task\.time_scale \(default from the dask config "
        r"morphml\.time-scale\)",
        "config-time-scale-negative",
    ),
    case(
        lambda _: config_value("cluster.n-wrokers"),
        InputError,
        r"unknown configuration key morphml\.cluster\.n-wrokers.*"
        r"use morphml\.cluster\.n-workers",
        "config-cluster-key-typo",
    ),
    case(
        slots(1, {}, 1),
        UnschedulableError,
        r"no worker can run the trials.*1 GPU resource\(s\).*1 worker\(s\) with resources "
        r"\[\{\}\].*gpus_per_trial=0",
        "gpus-wanted-on-a-cpu-cluster",
    ),
    case(
        slots(1, {"GPU": 1}, 2),
        UnschedulableError,
        r"no worker can run the trials.*2 GPU resource\(s\).*\[\{'GPU': 1\}\]",
        "more-gpus-per-trial-than-a-worker-has",
    ),
    case(
        slots(0, {}, 0),
        UnschedulableError,
        r"no worker can run the trials.*a thread.*0 worker\(s\)",
        "a-cluster-without-workers",
    ),
]


@pytest.mark.parametrize(("call", "error", "pattern"), CLUSTER_CASES)
def test_cluster_options(
    call: Call, error: type[MorphMLError], pattern: str, tmp_path: Path
) -> None:
    _check(call, error, pattern, tmp_path)


# -- store URLs and credentials ---------------------------------------------------------------

needs_s3fs = pytest.mark.skipif(
    importlib.util.find_spec("s3fs") is None, reason="S3 options are checked with s3fs"
)
SECRET = "wJalrXUtnFEMI-do-not-print"


def store(url: Any, options: Any = None) -> Call:
    return lambda _: open_store(url, options)


STORE_CASES = [
    case(
        store(""),
        StorageInputError,
        r"invalid store URL.*a path or fsspec URL.*received: ''",
        "url-empty",
    ),
    case(
        store(Path("runs")),
        StorageInputError,
        r"invalid store URL.*received: PosixPath\('runs'\).*as a string",
        "url-a-path-object",
    ),
    case(
        store(" s3://bucket/runs"),
        StorageInputError,
        r"invalid store URL.*without surrounding spaces.*received: ' s3://bucket/runs'",
        "url-with-spaces",
    ),
    case(
        store("nosuchproto://bucket/runs"),
        StorageInputError,
        r"cannot open the store at 'nosuchproto://bucket/runs'.*whose protocol is installed"
        r".*Protocol not known: nosuchproto",
        "url-unknown-protocol",
    ),
    case(
        store("s3://"),
        StorageInputError,
        r"the store URL 's3://' names no bucket.*s3://bucket/prefix",
        "url-s3-without-bucket",
        needs_s3fs,
    ),
    case(
        load(nb201_doc(store="")),
        ExperimentError,
        r"invalid value for store.*a non-empty string.*'' \(str\)",
        "document-store-empty",
    ),
    case(
        store("memory://runs", f"key=AKIA&secret={SECRET}"),
        StorageInputError,
        r"invalid storage_options.*a mapping of fsspec options.*received: a value of type str",
        "credentials-a-string",
    ),
    case(
        store("memory://runs", [("key", "AKIA"), ("secret", SECRET)]),
        StorageInputError,
        r"invalid storage_options.*received: a value of type list",
        "credentials-a-list-of-pairs",
    ),
    case(
        store("memory://runs", {1: SECRET}),
        StorageInputError,
        r"storage_options has names that are not strings.*received: names \['1'\]",
        "credentials-name-not-a-string",
    ),
    case(
        store("s3://bucket/runs", {"key": 12345, "secret": SECRET}),
        StorageInputError,
        r"invalid S3 storage option key.*a string.*received: a value of type int",
        "s3-key-a-number",
        needs_s3fs,
    ),
    case(
        store("s3://bucket/runs", {"anon": "yes"}),
        StorageInputError,
        r"invalid S3 storage option anon.*true or false.*a value of type str",
        "s3-anon-text",
        needs_s3fs,
    ),
    case(
        store("s3://bucket/runs", {"client_kwargs": "region_name=eu-west-1"}),
        StorageInputError,
        r"invalid S3 storage option client_kwargs.*a mapping.*a value of type str",
        "s3-client-kwargs-text",
        needs_s3fs,
    ),
    case(
        store("s3://bucket/runs", {"endpoint": "http://127.0.0.1:9000"}),
        StorageInputError,
        r"unknown S3 storage option.*received: \['endpoint'\].*rename endpoint to endpoint_url",
        "s3-endpoint-typo",
        needs_s3fs,
    ),
    case(
        store("s3://bucket/runs", {"key": "AKIA"}),
        StorageInputError,
        r"incomplete S3 credentials.*both key and secret.*a key without a secret"
        r".*AWS_SECRET_ACCESS_KEY",
        "s3-key-without-secret",
        needs_s3fs,
    ),
    case(
        load(nb201_doc(storage_options=["anon"])),
        ExperimentError,
        r"invalid value for storage_options.*a mapping of fsspec options.*\['anon'\] \(list\)",
        "document-credentials-a-list",
    ),
    case(
        load(nb201_doc(storage_options={"anon": {1: True}})),
        ExperimentError,
        r"invalid value for storage_options\.anon\.1.*a string key",
        "document-credentials-name-not-a-string",
    ),
    case(
        load(nb201_doc(storage_options={"timeout": float("inf")})),
        ExperimentError,
        r"invalid value for storage_options\.timeout.*expected: a number.*inf \(float\)",
        "document-credentials-not-json",
    ),
]


@pytest.mark.parametrize(("call", "error", "pattern"), STORE_CASES)
def test_store_urls_and_credentials(
    call: Call, error: type[MorphMLError], pattern: str, tmp_path: Path
) -> None:
    message = _check(call, error, pattern, tmp_path)
    assert SECRET not in message  # credentials never reach logs through an error


# -- your own code: space and train functions, import paths, the trial context ---------------

USER_MODULE = "census_user_code"
USER_CODE = """
NUMBER = 3


def space(s):
    return {"width": s.int("width", 1, 4)}


def space_without_sampler():
    return {}


def space_that_raises(s):
    raise RuntimeError("no data for the space")


def space_not_json(s):
    return {"width": s.int("width", 1, 4), "layer": object()}


def space_reusing_a_name(s):
    s.int("width", 1, 4)
    return {"width": s.float("width", 0.1, 1.0)}


def fit(config, ctx):
    ctx.report(1, val_loss=0.5)


def fit_without_ctx(config):
    return {}


def fit_reporting_nothing(config, ctx):
    return None


def fit_returning_a_number(config, ctx):
    return 0.5


def fit_returning_text(config, ctx):
    return {"val_loss": "low"}


class NotASpace:
    pass
"""


def user_code(tmp: Path, name: str | None = None) -> Any:
    """Write the user's module into ``tmp``, importable from there; ``name`` from it."""
    (tmp / f"{USER_MODULE}.py").write_text(USER_CODE)
    if str(tmp) not in sys.path:
        sys.path.insert(0, str(tmp))
    importlib.invalidate_caches()
    return None if name is None else getattr(importlib.import_module(USER_MODULE), name)


def load_user(
    space: dict[str, Any] | None = None, task: dict[str, Any] | None = None, **top: Any
) -> Call:
    """Load an experiment file next to the user's module (its folder goes on the path)."""

    def call(tmp: Path) -> object:
        (tmp / f"{USER_MODULE}.py").write_text(USER_CODE)
        document = {
            "name": "user-code",
            "space": space or {"function": f"{USER_MODULE}:space"},
            "task": task
            or {"function": f"{USER_MODULE}:fit", "objective": "val_loss", "direction": "minimize"},
            "optimizer": {"name": "random-search", "seed": 0},
            "max_trials": 4,
            **top,
        }
        path = tmp / "experiment.yaml"
        path.write_text(yaml.safe_dump(document))
        return load_experiment(path)

    return call


def train(name: str, objective: str = "val_loss", **settings: Any) -> Call:
    return lambda tmp: FunctionTask(user_code(tmp, name), objective, **settings)


def run_train(name: str) -> Call:
    """Run a train function once outside a search, as a trial would."""
    return lambda tmp: FunctionTask(user_code(tmp, name), "val_loss").evaluate({}, budget=1)


TRIAL = Trial("t000001", CellSpace().from_index(0), 3)


def reports(*calls: tuple[Any, dict[str, Any]]) -> Call:
    """``ctx.report(step, **metrics)`` for each (step, metrics), in order."""

    def call(_: Path) -> object:
        ctx = TrialContext(TRIAL)
        for step, metrics in calls:
            ctx.report(step, **metrics)
        return ctx

    return call


def upload(name: str, make: Callable[[Path], object] | None = None) -> Call:
    """``morphml run --upload FILE``'s check of FILE, before any cluster starts."""
    from morphml_dask import cli

    def call(tmp: Path) -> object:
        if make is not None:
            make(tmp / name)
        return cli._uploads([tmp / name])

    return call


def _unpicklable_state(tmp: Path) -> object:
    import torch

    open_store(str(tmp / "store")).save_state("t000001", {"model": torch.nn.Linear(2, 2)})
    return None


def _broken_module(tmp: Path) -> object:
    """A module next to the experiment that fails as it is imported."""
    (tmp / "census_broken_code.py").write_text("def space(s)\n    return {}\n")
    return load_user(space={"function": "census_broken_code:space"})(tmp)


USER_CODE_CASES = [
    case(
        _broken_module,
        ExperimentError,
        r"space\.function: the space function 'census_broken_code:space' cannot be imported.*"
        r"received: SyntaxError",
        "space-module-fails-to-import",
    ),
    case(
        load_user(space={"function": USER_MODULE}),
        ExperimentError,
        r"invalid value for space\.function: the space function 'census_user_code' cannot be "
        r"imported.*'package\.module:attribute'",
        "space-path-without-colon",
    ),
    case(
        load_user(space={"function": "no_such_census_module:space"}),
        ExperimentError,
        r"space\.function: .*received: ModuleNotFoundError: No module named "
        r"'no_such_census_module'",
        "space-path-module-missing",
    ),
    case(
        load_user(space={"function": f"{USER_MODULE}:spaces"}),
        ExperimentError,
        r"space\.function: .*received: AttributeError: .*no attribute 'spaces'",
        "space-path-attribute-missing",
    ),
    case(
        load_user(space={"function": f"{USER_MODULE}:NUMBER"}),
        ExperimentError,
        r"space\.function: the space function is not callable.*received: 3 \(int\)",
        "space-path-not-callable",
    ),
    case(
        load_user(space={"function": f"{USER_MODULE}:space_without_sampler"}),
        ExperimentError,
        r"space\.function: the space function has the wrong signature.*space_without_sampler\(\)",
        "space-function-wrong-signature",
    ),
    case(
        load_user(space={"function": f"{USER_MODULE}:space_that_raises"}),
        ExperimentError,
        r"space\.function: the space function raised.*RuntimeError: no data for the space",
        "space-function-raises",
    ),
    case(
        load_user(space={"function": f"{USER_MODULE}:space_not_json"}),
        ExperimentError,
        r"space\.function: the space function returned something that is not JSON.*"
        r"value\['layer'\]",
        "space-function-not-json",
    ),
    case(
        load_user(space={"function": f"{USER_MODULE}:space_reusing_a_name"}),
        ExperimentError,
        r"space\.function: the decision 'width' was asked twice with different distributions.*"
        r"int\(low=1, high=4.*then float",
        "space-function-name-reused",
    ),
    case(
        load_user(task={"function": "no_such_census_module:fit", "objective": "val_loss"}),
        ExperimentError,
        r"invalid value for task\.function: the train function 'no_such_census_module:fit' "
        r"cannot be imported.*ModuleNotFoundError",
        "task-path-module-missing",
    ),
    case(
        load_user(task={"function": f"{USER_MODULE}:fits", "objective": "val_loss"}),
        ExperimentError,
        r"task\.function: the train function '[a-z_]+:fits' cannot be imported.*no attribute 'fits'",
        "task-path-attribute-missing",
    ),
    case(
        load_user(task={"function": f"{USER_MODULE}:NUMBER", "objective": "val_loss"}),
        ExperimentError,
        r"task\.function: the train function is not callable.*fn\(config, ctx\)",
        "task-path-not-callable",
    ),
    case(
        load_user(task={"function": f"{USER_MODULE}:fit_without_ctx", "objective": "val_loss"}),
        ExperimentError,
        r"task\.function: the train function does not take \(config, ctx\).*"
        r"received: fit_without_ctx\(config\)",
        "task-function-wrong-signature",
    ),
    case(
        load_user(task={"function": 3, "objective": "val_loss"}),
        ExperimentError,
        r"invalid value for task\.function\n.*an import path.*received: 3 \(int\)",
        "task-function-not-a-path",
    ),
    case(
        load_user(task={"function": f"{USER_MODULE}:fit"}),
        ExperimentError,
        r"missing task\.objective.*received: keys \['function'\].*add objective:",
        "task-objective-missing",
    ),
    case(
        load_user(task={"function": f"{USER_MODULE}:fit", "objective": "val/loss"}),
        ExperimentError,
        r"invalid value for task\.objective.*without '/'.*received: 'val/loss'",
        "task-objective-not-a-metric-name",
    ),
    case(
        load_user(
            task={"function": f"{USER_MODULE}:fit", "objective": "val_loss", "direction": "down"}
        ),
        ExperimentError,
        r"invalid value for task\.direction.*\['maximize', 'minimize'\].*received: 'down'",
        "task-direction-unknown",
    ),
    case(
        load_user(space={"name": f"{USER_MODULE}:NotASpace"}),
        ExperimentError,
        r"invalid value for space\.name: 'census_user_code:NotASpace' is not a BaseSearchSpace "
        r"subclass",
        "space-name-path-not-a-space-class",
    ),
    case(
        load_user(task={"name": f"{USER_MODULE}:fit"}),
        ExperimentError,
        r"invalid value for task\.name: '[a-z_]+:fit' is not a BaseTask subclass.*\(function\)",
        "task-name-path-a-function",
    ),
    case(
        load_user(task={"name": "no_such_census_module:MyTask"}),
        ExperimentError,
        r"invalid value for task\.name: cannot import.*a registered task name, or the import "
        r"path of a BaseTask subclass",
        "task-name-path-does-not-import",
    ),
    case(
        load_user(python_path="src"),
        ExperimentError,
        r"invalid value for python_path.*a list of folders.*received: 'src' \(str\)",
        "python-path-not-a-list",
    ),
    case(
        lambda tmp: FunctionTask("census_user_code", "val_loss"),
        TaskError,
        r"the train function 'census_user_code' cannot be imported.*received: 'census_user_code'",
        "python-task-path-without-colon",
    ),
    case(
        train("fit_without_ctx"),
        TaskError,
        r"the train function does not take \(config, ctx\).*two positional parameters",
        "python-task-wrong-signature",
    ),
    case(
        train("fit", objective=""),
        TaskError,
        r"invalid objective.*a non-empty string.*received: '' \(str\)",
        "python-task-objective-empty",
    ),
    case(
        train("fit", direction="max"),
        TaskError,
        r"invalid direction.*received: 'max' \(str\)",
        "python-task-direction-unknown",
    ),
    case(
        lambda tmp: FunctionTask(lambda config, ctx: None, "val_loss").to_dict(),
        TaskError,
        r"the train function has no import path.*a lambda has no name.*define it with def at "
        r"module level",
        "python-task-lambda-to-dict",
    ),
    case(
        run_train("fit_reporting_nothing"),
        TaskError,
        r"neither reported nor returned the objective 'val_loss'.*received: reported metrics "
        r"\[\], returned None.*call ctx\.report\(epoch, val_loss=\.\.\.\)",
        "train-function-reports-nothing",
    ),
    case(
        run_train("fit_returning_a_number"),
        TaskError,
        r"returned neither a dict of metrics nor None.*received: 0\.5 \(float\)",
        "train-function-returns-a-number",
    ),
    case(
        run_train("fit_returning_text"),
        TaskError,
        r"returned 'val_loss', which is not a numeric metric.*'low' \(str\)",
        "train-function-returns-text",
    ),
    case(
        reports((3, {"loss": 0.5}), (2, {"loss": 0.4})),
        TaskError,
        r"ctx\.report: step 2 goes backwards.*a step >= 3.*received: step 2 after step 3",
        "report-step-backwards",
    ),
    case(
        reports((1.5, {"loss": 0.5})),
        TaskError,
        r"ctx\.report: step is not an integer >= 0.*received: 1\.5 \(float\)",
        "report-step-not-an-integer",
    ),
    case(
        reports((1, {"loss": "0.5"})),
        TaskError,
        r"ctx\.report: metric 'loss' is not a number.*received: '0\.5' \(str\).*loss\.item\(\)",
        "report-metric-not-a-number",
    ),
    case(
        reports((1, {})),
        TaskError,
        r"ctx\.report was given no metric.*received: only a step",
        "report-without-metrics",
    ),
    case(
        reports((1, {"epoch": 2})),
        TaskError,
        r"ctx\.report: invalid metric name 'epoch'",
        "report-metric-named-epoch",
    ),
    case(
        lambda _: TrialContext(TRIAL).save([1, 2]),  # type: ignore[arg-type]
        TaskError,
        r"ctx\.save takes a dict.*received: \[1, 2\] \(list\)",
        "save-not-a-dict",
    ),
    case(
        _unpicklable_state,
        StorageInputError,
        r"the state of trial 't000001' cannot be stored as data.*save state dicts rather than "
        r"modules",
        "save-a-whole-module",
    ),
    case(
        upload("missing.py"),
        ClusterError,
        r"--upload .*missing\.py does not exist.*received: .*missing\.py: no such file",
        "upload-missing-file",
    ),
    case(
        upload("folder", lambda path: path.mkdir()),
        ClusterError,
        r"--upload .*folder is not a file.*a folder",
        "upload-a-folder",
    ),
    case(
        upload("notes.txt", lambda path: path.write_text("x")),
        ClusterError,
        r"--upload .*notes\.txt is not a module.*\.py, \.zip, \.egg.*a \.txt file",
        "upload-not-a-module",
    ),
]


@pytest.mark.parametrize(("call", "error", "pattern"), USER_CODE_CASES)
def test_your_own_code(
    call: Call,
    error: type[MorphMLError],
    pattern: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the experiment's folder is put there
    _check(call, error, pattern, tmp_path)


# -- the census itself ------------------------------------------------------------------------

KINDS = {
    "experiment documents": EXPERIMENT_CASES,
    "search spaces": SPACE_CASES,
    "architecture documents": ARCH_CASES,
    "datasets": DATASET_CASES,
    "cluster options": CLUSTER_CASES,
    "store URLs and credentials": STORE_CASES,
    "your own code": USER_CODE_CASES,
}


def test_the_census_counts_at_least_80_distinct_bad_inputs_across_every_kind() -> None:
    ids = [param.id for cases in KINDS.values() for param in cases]
    assert len(ids) == len(set(ids)), "every case has its own id"
    patterns = [param.values[2] for cases in KINDS.values() for param in cases]
    assert len(patterns) == len(set(patterns)), "every case pins its own message"
    assert all(len(cases) >= 10 for cases in KINDS.values())
    assert len(USER_CODE_CASES) >= 20
    assert len(ids) >= 80


def test_infrastructure_errors_are_not_value_errors() -> None:
    """`except ValueError` in a user's code must not swallow a store outage or a dead
    cluster; bad input stays catchable as `ValueError`."""
    from morphml_dask import exceptions

    infrastructure = (
        exceptions.StorageError,
        exceptions.SchedulerUnreachableError,
        exceptions.UnschedulableError,
        exceptions.SearchStalledError,
    )
    for cls in infrastructure:
        error = cls("x", expected="e", received="r", fix="f")
        assert isinstance(error, MorphMLError) and not isinstance(error, ValueError)
    assert issubclass(exceptions.StorageError, OSError)
    assert issubclass(exceptions.SchedulerUnreachableError, OSError)
    assert issubclass(exceptions.UnschedulableError, RuntimeError)
    assert issubclass(exceptions.SearchStalledError, RuntimeError)
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        if issubclass(cls, InputError):
            assert issubclass(cls, ValueError), name
    assert issubclass(exceptions.StorageInputError, exceptions.StorageError)
    assert not issubclass(MorphMLError, ValueError)
    # The key survives the trip to a worker and back.
    import pickle

    keyed = ExperimentError("p", expected="e", received="r", fix="f", key="population_size")
    assert pickle.loads(pickle.dumps(keyed)).key == "population_size"
