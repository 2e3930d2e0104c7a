"""The deploy helpers' shared parameter blocks: filled in place, and every parameter
documented."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from morphml_dask.deploy import kubernetes_cluster, kubernetes_spec, slurm_cluster
from morphml_dask.deploy._docs import with_parameters


def test_blocks_replace_the_marker_line_at_its_indentation() -> None:
    @with_parameters("\n    alpha\n        The first.\n", "beta\n    The second.")
    def documented(alpha: int, beta: int) -> None:
        """Summary.

        Parameters
        ----------
        {parameters}

        Returns
        -------
        None
        """

    assert inspect.cleandoc(documented.__doc__ or "").splitlines() == [
        "Summary.",
        "",
        "Parameters",
        "----------",
        "alpha",
        "    The first.",
        "beta",
        "    The second.",
        "",
        "Returns",
        "-------",
        "None",
    ]


def test_a_docstring_without_the_marker_is_refused() -> None:
    def undocumented() -> None:
        """Summary without parameters."""

    with pytest.raises(
        TypeError,
        match=r"the docstring of test_a_docstring_without_the_marker_is_refused.<locals>."
        r"undocumented has no \{parameters\} line: expected a line '\{parameters\}' under its "
        r"Parameters heading, received none; add it",
    ):
        with_parameters("alpha\n    The first.")(undocumented)


@pytest.mark.parametrize("function", [kubernetes_spec, kubernetes_cluster, slurm_cluster])
def test_every_parameter_is_documented(function: Callable[..., Any]) -> None:
    doc = inspect.cleandoc(function.__doc__ or "")
    section = doc.split("Parameters\n----------\n", 1)[1].split("\n\n", 1)[0]
    entries = {
        name.strip()
        for line in section.splitlines()
        if line and not line.startswith(" ")
        for name in line.split(",")
    }
    names = {
        f"**{name}" if parameter.kind is parameter.VAR_KEYWORD else name
        for name, parameter in inspect.signature(function).parameters.items()
    }
    assert entries == names
    assert "{parameters}" not in doc
