"""`FunctionSpace` and `Config`: properties over random seeds (JSON round trips keep the
fingerprint, a mutation changes one decision or a branch it opens or closes, crossover
children belong to the space, fingerprints ignore decision order), the genome operations,
the encoding's fixed layout, import paths, and every bad input, pinned."""

from __future__ import annotations

import copy
import functools
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morphml_dask.exceptions import InvalidArchitectureError, SearchSpaceError
from morphml_dask.space import (
    ArchGraph,
    CellSpace,
    ChoiceDistribution,
    Config,
    Decision,
    FunctionSpace,
    IntDistribution,
    Sampler,
    candidate_from_dict,
    space_from_dict,
)
from morphml_dask.testing import conditional_cell_space, conditional_space

SPACES = {
    "conditional": FunctionSpace(conditional_space),
    "cell": FunctionSpace(conditional_cell_space),
}
# The decisions each decision's value opens or closes.
BRANCHES = {"depth": {f"width_{i}" for i in range(4)}, "dropout": {"dropout_rate"}}

seeds = st.integers(0, 2**32 - 1)
RNG = np.random.default_rng(0)
space_names = st.sampled_from(sorted(SPACES))


def ordered_ab(s: Sampler) -> dict[str, Any]:
    return {"a": s.int("a", 0, 9), "b": s.choice("b", ["x", "y", "z"])}


def ordered_ba(s: Sampler) -> dict[str, Any]:
    b = s.choice("b", ["x", "y", "z"])
    return {"a": s.int("a", 0, 9), "b": b}


def one_point(s: Sampler) -> dict[str, Any]:
    return {"act": s.choice("act", ["relu"]), "width": s.int("width", 64, 64)}


def raises(s: Sampler) -> float:
    return 1.0 / (s.int("n", 0, 0))


def returns_an_object(s: Sampler) -> dict[str, Any]:
    return {"lr": s.float("lr", 0.0, 1.0), "model": object()}


def two_parameters(s: Sampler, extra: int) -> int:
    return extra


not_a_function = 42


# -- properties --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(name=space_names, seed=seeds)
def test_a_sample_through_json_has_the_same_fingerprint(name: str, seed: int) -> None:
    space = SPACES[name]
    config = space.sample(np.random.default_rng(seed))
    back = candidate_from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config and back.fingerprint == config.fingerprint
    assert space.contains(back)
    assert pickle.loads(pickle.dumps(config)) == config


@settings(max_examples=80, deadline=None)
@given(name=space_names, seed=seeds)
def test_a_mutation_changes_one_decision_or_the_branch_it_opens_or_closes(
    name: str, seed: int
) -> None:
    space = SPACES[name]
    rng = np.random.default_rng(seed)
    parent = space.sample(rng)
    child = space.mutate(parent, rng)
    assert child.fingerprint != parent.fingerprint and space.contains(child)
    common = set(parent.names) & set(child.names)
    changed = {n for n in common if parent[n] != child[n]}
    assert len(changed) == 1, changed
    (moved,) = changed
    assert set(parent.names) ^ set(child.names) <= BRANCHES.get(moved, set())


@settings(max_examples=60, deadline=None)
@given(name=space_names, seed=seeds)
def test_crossover_children_belong_to_the_space_and_take_each_decision_from_a_parent(
    name: str, seed: int
) -> None:
    space = SPACES[name]
    rng = np.random.default_rng(seed)
    a, b = space.sample(rng), space.sample(rng)
    child = space.crossover(a, b, rng)
    assert space.contains(child)
    for decision in child.decisions:
        inherited = [p[decision.name] for p in (a, b) if decision.name in p]
        assert not inherited or decision.value in inherited


@settings(max_examples=40, deadline=None)
@given(a=st.integers(0, 9), b=st.sampled_from(["x", "y", "z"]))
def test_fingerprints_ignore_the_order_of_decisions(a: int, b: str) -> None:
    keep = {
        "a": Decision("a", IntDistribution(0, 9), a),
        "b": Decision("b", ChoiceDistribution(["x", "y", "z"]), b),
    }
    first = FunctionSpace(ordered_ab)._run(Sampler(np.random.default_rng(0), keep))
    second = FunctionSpace(ordered_ba)._run(Sampler(np.random.default_rng(0), keep))
    assert first.names == ("a", "b") and second.names == ("b", "a")
    assert first.value == second.value
    assert first.fingerprint == second.fingerprint


@settings(max_examples=30, deadline=None)
@given(seed=seeds)
def test_a_cell_decision_is_fingerprinted_up_to_isomorphism(seed: int) -> None:
    space = SPACES["cell"]
    config = space.sample(np.random.default_rng(seed))
    cell = config["cell"]
    order = np.random.default_rng(seed).permutation(len(cell.nodes)).tolist()
    permuted = ArchGraph(
        [cell.nodes[i] for i in order],
        [(order.index(s), order.index(d)) for s, d in cell.edges],
    )
    swapped = Config(
        [
            Decision(d.name, d.distribution, permuted if d.name == "cell" else d.value)
            for d in config.decisions
        ],
        {**config.value, "cell": permuted},
    )
    assert swapped != config
    assert swapped.fingerprint == config.fingerprint


# -- the genome --------------------------------------------------------------------------


def test_a_config_records_the_decisions_made_and_the_value_returned() -> None:
    config = SPACES["cell"].sample(np.random.default_rng(2))
    assert config.names[0] == "depth"
    assert [n for n in config.names if n.startswith("width_")] == [
        f"width_{i}" for i in range(config["depth"])
    ]
    assert ("dropout_rate" in config) is config["dropout"]
    assert isinstance(config["cell"], ArchGraph)
    assert config.value["cell"] is config["cell"]
    assert config.value["widths"] == [config[f"width_{i}"] for i in range(config["depth"])]
    with pytest.raises(KeyError, match=r"no decision 'epochs' in this config; it made \['depth'"):
        config["epochs"]


def test_a_config_is_immutable_and_its_value_a_copy() -> None:
    config = SPACES["conditional"].sample(np.random.default_rng(0))
    value = config.value
    value["widths"].append(1)
    assert config.value != value
    with pytest.raises(AttributeError, match="Config is immutable"):
        config._value = {}
    assert copy.deepcopy(config) is config and {config: 1}[Config.from_dict(config.to_dict())]


def test_the_value_is_normalized_to_json() -> None:
    def space(s: Sampler) -> Any:
        return {"shape": (s.int("h", 1, 4), np.int64(3)), "scale": np.float32(0.5)}

    config = FunctionSpace(space).sample(np.random.default_rng(0))
    assert config.value == {"shape": [config["h"], 3], "scale": 0.5}
    assert type(config.value["shape"][1]) is int


def test_contains_is_false_for_configs_the_function_would_not_make() -> None:
    space = SPACES["conditional"]
    config = space.sample(np.random.default_rng(1))
    document = config.to_dict()
    assert not space.contains(SPACES["cell"].sample(np.random.default_rng(1)))
    assert not space.contains(CellSpace().sample(np.random.default_rng(1)))
    fewer = {**document, "decisions": document["decisions"][1:]}
    assert not space.contains(Config.from_dict(fewer))
    extra = {"name": "epochs", "distribution": {"type": "bool"}, "value": True}
    more = {**document, "decisions": [*document["decisions"], extra]}
    assert not space.contains(Config.from_dict(more))
    lr = next(d for d in document["decisions"] if d["name"] == "lr")
    lr["distribution"] = {"type": "float", "low": 1e-5, "high": 1.0, "log": True}
    assert not space.contains(Config.from_dict(document))


def test_encodings_have_one_length_and_zeros_for_inactive_decisions() -> None:
    space = SPACES["cell"]
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(50)]
    vectors = np.stack([space.encode(c) for c in configs])
    # depth, 4 widths, activation, lr, dropout, dropout_rate, batch_size, cell: flag + value
    assert vectors.shape[1] == 2 + 4 * 2 + (1 + 3) + 2 + 2 + 2 + (1 + 3) + (1 + 30)
    shallow = next(c for c in configs if c["depth"] == 1)
    offset, _ = space._slots["width_3"]
    assert space.encode(shallow)[offset : offset + 2].tolist() == [0.0, 0.0]
    deep = next(c for c in configs if c["depth"] == 4)
    assert space.encode(deep)[offset] == 1.0


def test_mutation_of_a_single_point_space_is_a_clear_error() -> None:
    space = FunctionSpace(one_point)
    config = space.sample(np.random.default_rng(0))
    with pytest.raises(
        SearchSpaceError,
        match=r"(?s)no mutation of this config differs from it.*a decision of more than one "
        r"value.*Config\(act='relu', width=64\).*RandomSearch",
    ):
        space.mutate(config, np.random.default_rng(0))


def test_a_function_space_round_trips_by_its_import_path() -> None:
    space = FunctionSpace(conditional_space)
    assert space.to_dict() == {
        "name": "function",
        "function": "morphml_dask.testing:conditional_space",
    }
    again = space_from_dict(space.to_dict())
    assert isinstance(again, FunctionSpace) and again.fn is conditional_space
    by_path = FunctionSpace("morphml_dask.testing:conditional_space")
    assert by_path.fn is conditional_space and by_path.function == space.function
    assert pickle.loads(pickle.dumps(by_path)).fn is conditional_space


def test_a_scripts_function_is_named_after_its_file(tmp_path: Path) -> None:
    script = tmp_path / "mlp_wine.py"
    script.write_text(
        "from morphml_dask.space import FunctionSpace\n"
        "def space(s):\n    return {'lr': s.float('lr', 1e-4, 1e-1, log=True)}\n"
        "if __name__ == '__main__':\n    print(FunctionSpace(space).to_dict()['function'])\n",
        encoding="utf-8",
    )
    for command in ([str(script)], ["-m", "mlp_wine"]):
        out = subprocess.run(
            [sys.executable, *command], cwd=tmp_path, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "mlp_wine:space"


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (["-c", "{code}"], "it is defined in an interactive session"),
        (["my-script.py"], "the script's file name 'my-script' is no module name"),
    ],
)
def test_a_function_without_an_importable_module_has_no_path(
    tmp_path: Path, command: list[str], reason: str
) -> None:
    code = (
        "from morphml_dask.space import FunctionSpace\n"
        "def space(s):\n    return s.bool('b')\n"
        "try:\n    FunctionSpace(space).to_dict()\n"
        "except ValueError as error:\n    print(error)\n"
    )
    (tmp_path / "my-script.py").write_text(code, encoding="utf-8")
    argv = [part.format(code=code) for part in command]
    out = subprocess.run(
        [sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert "the space function has no import path" in out.stdout
    assert reason in out.stdout


def test_a_function_whose_name_leads_elsewhere_has_no_path() -> None:
    def impostor(s: Sampler) -> bool:
        return s.bool("b")

    impostor.__module__, impostor.__qualname__ = "morphml_dask.testing", "conditional_space"
    with pytest.raises(
        SearchSpaceError,
        match=r"(?s)has no import path.*morphml_dask.testing.conditional_space does not lead "
        r"back to it \(replaced or decorated\?\)",
    ):
        FunctionSpace(impostor).to_dict()


# -- bad input ---------------------------------------------------------------------------


def _nested_space() -> FunctionSpace:
    def space(s: Sampler) -> int:
        return s.int("x", 0, 3)

    return FunctionSpace(space)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: FunctionSpace(raises),
            r"(?s)the space function raised an exception.*raises\(s\) to return the trial's "
            r"configuration.*ZeroDivisionError: float division by zero.*fix: fix the function",
        ),
        (
            lambda: FunctionSpace(returns_an_object),
            r"(?s)the space function returned something that is not JSON.*text, finite "
            r"numbers.*received: value\['model'\] = <object object.*build objects",
        ),
        (
            lambda: FunctionSpace(lambda s: {"w": np.ones(3)}),
            r"(?s)not JSON.*value\['w'\] = array\(\[1., 1., 1.\]\) \(ndarray\)",
        ),
        (
            lambda: FunctionSpace(lambda s: {"lr": float("nan")}),
            r"(?s)not JSON.*value\['lr'\] = nan \(float\)",
        ),
        (
            lambda: FunctionSpace(lambda s: {"ops": {"relu", "gelu"}}),
            r"(?s)not JSON.*value\['ops'\] = \{.*\} \(set\)",
        ),
        (
            lambda: FunctionSpace(lambda s: {1: s.bool("b")}),
            r"(?s)returned a dict with a key that is not text.*key 1 \(int\) in value"
            r".*str\(key\)",
        ),
        (
            lambda: FunctionSpace(not_a_function),  # type: ignore[arg-type]
            r"(?s)the space function is not callable.*one parameter, the sampler"
            r".*42 \(int\).*def space\(s\)",
        ),
        (
            lambda: FunctionSpace(two_parameters),  # type: ignore[arg-type]
            r"(?s)the space function has the wrong signature.*one positional parameter"
            r".*received: two_parameters\(s: 'Sampler', extra: 'int'\) -> 'int'"
            r".*give any other parameter a default",
        ),
        (
            lambda: FunctionSpace(lambda: 1),  # type: ignore[arg-type, misc]
            r"(?s)wrong signature.*received: <lambda>.<locals>.<lambda>\(\)",
        ),
        (
            lambda: FunctionSpace("no_such_module:space"),
            r"(?s)the space function 'no_such_module:space' cannot be imported.*an importable "
            r"module.*ModuleNotFoundError: No module named 'no_such_module'",
        ),
        (
            lambda: FunctionSpace("morphml_dask.testing:no_such_space"),
            r"(?s)cannot be imported.*AttributeError.*no_such_space",
        ),
        (
            lambda: FunctionSpace("conditional_space"),
            r"(?s)cannot be imported.*'package.module:attribute'.*'conditional_space'",
        ),
        (
            lambda: FunctionSpace("math:pi"),
            r"(?s)the space function is not callable.*3.14159.* \(float\)",
        ),
        (
            lambda: _nested_space().to_dict(),
            r"(?s)the space function has no import path.*defined at module level.*"
            r"it is defined inside another function.*fix: define it with def at module level",
        ),
        (
            lambda: FunctionSpace(functools.partial(two_parameters, extra=1)).to_dict(),
            r"(?s)has no import path.*no module and name",
        ),
        (
            lambda: SPACES["conditional"].mutate(CellSpace().sample(RNG), RNG),
            r"(?s)not a config of a function space.*a Config made by FunctionSpace"
            r".*ArchGraph\(nodes=",
        ),
        (
            lambda: CellSpace().mutate(SPACES["conditional"].sample(RNG), RNG),
            r"(?s)the architecture is not a NAS-Bench-201 cell.*received: Config\(depth=",
        ),
    ],
)
def test_bad_space_functions_are_search_space_errors(make: Any, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message) as caught:
        make()
    if "raised an exception" in message:
        assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_construction_errors_are_about_the_function_setting() -> None:
    for fn in (raises, returns_an_object, two_parameters, "no_such_module:space"):
        with pytest.raises(SearchSpaceError) as caught:
            FunctionSpace(fn)  # type: ignore[arg-type]
        assert caught.value.key == "function"

    def reused(s: Sampler) -> list[float]:
        return [s.float("x", 0, 1), s.float("x", 0, 2)]

    with pytest.raises(SearchSpaceError, match="asked twice") as caught:
        FunctionSpace(reused)
    assert caught.value.key == "function"


def _config_document() -> dict[str, Any]:
    return SPACES["conditional"].sample(np.random.default_rng(0)).to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: {**d, "format": "morphml.arch"},
            r"(?s)not a config document.*\"format\": \"morphml.config\".*'morphml.arch'",
        ),
        (
            lambda d: {**d, "version": 2},
            r"(?s)unsupported config document version.*version 1.*received: 2.*upgrade",
        ),
        (lambda d: {**d, "version": True}, r"(?s)unsupported config document version.*True"),
        (
            lambda d: {**d, "decision": d["decisions"]},
            r"(?s)malformed config document.*exactly the keys \['format', 'version', "
            r"'decisions', 'value'\].*'decision'",
        ),
        (
            lambda d: {**d, "decisions": [{"name": "x", "value": 1}]},
            r"(?s)malformed decision.*the keys \['name', 'distribution', 'value'\]",
        ),
        (
            lambda d: {
                **d,
                "decisions": [
                    {
                        "name": "x",
                        "distribution": {
                            "type": "int",
                            "low": 1,
                            "high": 4,
                            "log": False,
                            "step": 1,
                        },
                        "value": 9,
                    }
                ],
            },
            r"(?s)the value of the decision 'x' is not in its distribution.*a value of "
            r"int\(low=1, high=4.*received: 9",
        ),
        (
            lambda d: {**d, "decisions": [d["decisions"][0], d["decisions"][0]]},
            r"(?s)not distinct Decision records.*each name once.*Decision\(name='depth'",
        ),
    ],
)
def test_malformed_config_documents(change: Any, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        Config.from_dict(change(_config_document()))


def test_a_candidate_document_of_another_format_is_refused() -> None:
    with pytest.raises(
        InvalidArchitectureError,
        match=r"(?s)not an architecture or config document.*\"morphml.arch\" or "
        r"\"morphml.config\".*received: 'morphml.trial'",
    ):
        candidate_from_dict({"format": "morphml.trial"})
