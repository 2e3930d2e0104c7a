"""The shared small checks: what each accepts, what it returns, and every message it writes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from morphml_dask.exceptions import InputError, OptimizerError, SearchSpaceError
from morphml_dask.validation import (
    check_bool,
    check_choice,
    check_int,
    check_items,
    check_json,
    check_number,
    check_options,
    check_string,
    describe,
    invalid,
    is_int,
    is_number,
    key_of,
    short_repr,
)


@pytest.mark.parametrize(
    ("value", "integer", "number"),
    [
        (3, True, True),
        (np.int64(3), True, True),
        (True, False, False),
        (np.bool_(True), False, False),
        (3.0, False, True),
        (np.float32(0.5), False, True),
        (math.nan, False, False),
        (math.inf, False, False),
        (10**400, True, False),  # beyond the floats
        ("3", False, False),
        (None, False, False),
    ],
)
def test_what_counts_as_an_integer_and_a_number(value: Any, integer: bool, number: bool) -> None:
    assert is_int(value) is integer
    assert is_number(value) is number


def test_values_are_shown_with_their_type_and_never_fail_to_print() -> None:
    assert describe("8") == "'8' (str)"
    assert describe(10**5000) == "<int too long to print> (int)"
    assert short_repr("x" * 200) == "'" + "x" * 76 + "..."


def test_an_error_records_its_setting() -> None:
    error = invalid(OptimizerError, "eta", 1, expected="an integer >= 2")
    assert type(error) is OptimizerError
    assert str(error) == (
        "invalid eta\n  expected: an integer >= 2\n  received: 1 (int)\n"
        "  fix: set eta to an integer >= 2"
    )
    assert key_of(error) == "eta"
    assert key_of(ValueError("eta")) is None
    owned = invalid(SearchSpaceError, "ops", [], expected="ops", owner="DagSpace")
    assert owned.problem == "invalid DagSpace setting ops"
    named = invalid(InputError, "x", 1, expected="y", fix="do z", problem="x is wrong")
    assert (named.problem, named.fix, key_of(named)) == ("x is wrong", "do z", "x")


def test_check_int_returns_python_integers() -> None:
    assert check_int("n", np.int64(7), low=1) == 7
    assert type(check_int("n", np.int64(7))) is int
    assert check_int("n", -(2**63), low=-(2**63)) == -(2**63)


@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (True, {"low": 2}, r"invalid n\n  expected: an integer >= 2\n  received: True \(bool\)"),
        (8.0, {}, r"expected: an integer\n  received: 8\.0 \(float\)"),
        (0, {"low": 1, "high": 4}, r"expected: an integer from 1 to 4\n  received: 0 \(int\)"),
        (5, {"high": 4}, r"expected: an integer <= 4"),
        (2**64, {"low": 1}, r"expected: an integer >= 1, below 2\*\*64"),
        (
            "10",
            {"low": 1},
            r"'10' \(str\)\n  fix: set n to an integer >= 1; YAML reads numbers like 1e-3 as "
            r"text, write 1\.0e-3",
        ),
        (
            3,
            {"low": 4, "expected": "more than the rungs", "fix": "add rungs"},
            r"expected: more than the rungs\n  received: 3 \(int\)\n  fix: add rungs$",
        ),
    ],
)
def test_check_int_messages(value: Any, bounds: dict[str, Any], message: str) -> None:
    with pytest.raises(OptimizerError, match=message) as caught:
        check_int("n", value, error=OptimizerError, **bounds)
    assert key_of(caught.value) == "n"


def test_check_number_returns_floats() -> None:
    assert check_number("x", 1, low=0) == 1.0
    assert type(check_number("x", np.float32(0.5), low=0, high=1)) is float


@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (math.nan, {"low": 0}, r"expected: a number >= 0 \(finite\)\n  received: nan \(float\)"),
        (0, {"low": 0, "strict_low": True}, r"expected: a number > 0 \(finite\)"),
        (1.5, {"low": 0, "high": 1}, r"expected: a number from 0 to 1\n  received: 1\.5"),
        (math.inf, {}, r"expected: a number \(finite\)\n  received: inf \(float\)"),
        (10**400, {}, r"received: 10000000000\d*\.\.\. \(int\)"),
        ("1e-3", {"low": 0}, r"'1e-3' \(str\)\n  fix: .*write 1\.0e-3"),
        (False, {}, r"received: False \(bool\)"),
    ],
)
def test_check_number_messages(value: Any, bounds: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_number("x", value, **bounds)


def test_choices_strings_and_booleans() -> None:
    assert check_choice("d", "up", ("up", "down")) == "up"
    with pytest.raises(
        InputError,
        match=r"invalid d\n  expected: one of \['up', 'down'\]\n  received: \['up'\] \(list\)"
        r"\n  fix: set d to one of \['up', 'down'\]",
    ):
        check_choice("d", ["up"], ("up", "down"))
    assert check_string("s", "x") == "x"
    with pytest.raises(InputError, match=r"invalid s\n  expected: a non-empty string"):
        check_string("s", "")
    assert check_bool("b", False) is False
    with pytest.raises(InputError, match=r"expected: True or False\n  received: 1 \(int\)"):
        check_bool("b", 1)


def test_check_items_names_the_item_at_fault() -> None:
    def positive(key: str, item: object) -> int:
        return check_int(key, item, low=1, error=SearchSpaceError)

    assert check_items("w", [np.int64(2), 3], positive, what="widths") == (2, 3)
    with pytest.raises(SearchSpaceError, match=r"(?s)invalid w\[1\]\n.*received: '3' \(str\)") as e:
        check_items("w", [2, "3"], positive, what="widths", error=SearchSpaceError)
    assert key_of(e.value) == "w[1]"
    empties: list[object] = [[], (), "23", None]
    for empty in empties:
        with pytest.raises(SearchSpaceError, match=r"invalid w\n  expected: a non-empty list of"):
            check_items("w", empty, positive, what="widths", error=SearchSpaceError)


def test_check_json_copies_plain_data() -> None:
    data = {"a": (1, np.int64(2), np.float64(0.5)), "b": {"c": None, "d": [True, "x"]}}
    assert check_json("o", data) == {"a": [1, 2, 0.5], "b": {"c": None, "d": [True, "x"]}}


@pytest.mark.parametrize(
    ("value", "message", "key"),
    [
        (
            {"a": {1: True}},
            r"invalid o\.a\.1\n  expected: a string key\n  received: 1 \(int\)",
            "o.a.1",
        ),
        ({"a": [0, 2**64]}, r"invalid o\.a\[1\]\n  expected: an integer from", "o.a[1]"),
        ({"t": math.inf}, r"invalid o\.t\n  expected: a number \(finite\)", "o.t"),
        (
            {"s": {1, 2}},
            r"expected: text, a finite number, true/false, null, a list or a mapping",
            "o.s",
        ),
    ],
)
def test_check_json_names_the_value_at_fault(value: Any, message: str, key: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        check_json("o", value)
    assert key_of(caught.value) == key


def test_check_options_wants_a_mapping() -> None:
    assert check_options("storage_options", {"anon": True}) == {"anon": True}
    with pytest.raises(
        InputError,
        match=r"invalid storage_options\n  expected: a mapping of fsspec options, e\.g\. "
        r"\{anon: true\}\n  received: \['anon'\] \(list\)",
    ):
        check_options("storage_options", ["anon"])
