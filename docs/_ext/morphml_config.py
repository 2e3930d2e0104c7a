"""The configuration reference, generated from the files the package loads.

``morphml.yaml`` holds each default with a one-line comment, ``morphml-schema.yaml`` each
key's type and description. The ``morphml-config`` directive renders both at build time,
so the reference cannot drift from what `morphml_dask.config` registers with dask.config.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective

_PACKAGE = "morphml_dask"
DEFAULTS_FILE = "morphml.yaml"
SCHEMA_FILE = "morphml-schema.yaml"
ROOT = "morphml"


def package_file(name: str) -> Path:
    return Path(str(resources.files(_PACKAGE).joinpath(name)))


def key_comments(text: str) -> dict[str, str]:
    """The trailing comment of every key line of a block-style YAML file, by dotted path
    (``"morphml.cluster.kind"``); ``""`` for a key without one."""
    comments: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        key, colon, rest = stripped.partition(":")
        if not colon or not key or stripped.startswith("#") or not _is_plain_key(key):
            continue
        indent = len(line) - len(stripped)
        while parents and parents[-1][0] >= indent:
            parents.pop()
        parents.append((indent, key))
        comments[".".join(name for _, name in parents)] = _trailing_comment(rest)
    return comments


def _is_plain_key(key: str) -> bool:
    return all(char.isalnum() or char in "-_" for char in key)


def _trailing_comment(rest: str) -> str:
    # A "#" starts a comment only outside quotes and after whitespace (YAML's rule).
    quote = ""
    for index, char in enumerate(rest):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or rest[index - 1].isspace()):
            return rest[index + 1 :].strip()
    return ""


def walk(defaults: Mapping[str, Any], schema: Mapping[str, Any], prefix: str) -> Iterator[Entry]:
    """Every key below ``prefix`` in file order, groups before their keys."""
    described = schema.get("properties", {})
    for key, value in defaults.items():
        path = f"{prefix}.{key}"
        if key not in described:
            raise ExtensionError(f"{path} is in {DEFAULTS_FILE} but not in {SCHEMA_FILE}")
        yield Entry(path, value, described[key])
        if isinstance(value, Mapping):
            yield from walk(value, described[key], path)
    missing = sorted(set(described) - set(defaults))
    if missing:
        raise ExtensionError(
            f"{SCHEMA_FILE} describes {missing} below {prefix}, which {DEFAULTS_FILE} lacks"
        )


class Entry:
    """One configuration key: its dotted path, default and schema."""

    def __init__(self, path: str, default: Any, schema: Mapping[str, Any]) -> None:
        self.path = path
        self.default = default
        self.schema = schema

    @property
    def is_group(self) -> bool:
        return isinstance(self.default, Mapping)

    @property
    def environment_variable(self) -> str:
        # dask.config reads DASK_A__B__C as a.b.c, and treats "_" and "-" alike in keys.
        return "DASK_" + "__".join(part.upper().replace("-", "_") for part in self.path.split("."))

    @property
    def type_text(self) -> str:
        kinds = self.schema.get("type", "any")
        text = " or ".join(kinds) if isinstance(kinds, list) else str(kinds)
        limits = []
        if "enum" in self.schema:
            limits.append("one of " + ", ".join(str(v) for v in self.schema["enum"]))
        if "minimum" in self.schema:
            limits.append(f"at least {self.schema['minimum']}")
        if "exclusiveMinimum" in self.schema:
            limits.append(f"above {self.schema['exclusiveMinimum']}")
        if self.schema.get("minLength"):
            limits.append("not empty")
        return f"{text}, {', '.join(limits)}" if limits else text

    @property
    def default_text(self) -> str:
        dumped = yaml.safe_dump(self.default, default_flow_style=True, width=1000)
        return dumped.removesuffix("...\n").strip()


class ConfigReference(SphinxDirective):
    """``morphml-config``: a definition list of every key of the shipped configuration."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        defaults_path, schema_path = package_file(DEFAULTS_FILE), package_file(SCHEMA_FILE)
        for path in (defaults_path, schema_path):
            self.env.note_dependency(str(path))
        text = defaults_path.read_text(encoding="utf-8")
        defaults = yaml.safe_load(text)
        schema = yaml.safe_load(schema_path.read_text(encoding="utf-8"))
        comments = key_comments(text)
        entries = list(walk(defaults[ROOT], schema["properties"][ROOT], ROOT))
        expected = {ROOT, *(entry.path for entry in entries)}
        if set(comments) != expected:
            # The line reader sees the file differently from the YAML parser: a layout it
            # does not understand, which would put comments on the wrong keys.
            raise ExtensionError(
                f"cannot match the comments of {DEFAULTS_FILE} to its keys: the lines give "
                f"{sorted(set(comments) ^ expected)} that the YAML does not, or the reverse"
            )
        items = nodes.definition_list(classes=["morphml-config"])
        items += [self._item(entry, comments[entry.path]) for entry in entries]
        return [items]

    def _item(self, entry: Entry, comment: str) -> nodes.definition_list_item:
        term = nodes.term("", "", nodes.literal(text=entry.path))
        term["ids"].append(nodes.make_id(entry.path))
        term["names"].append(entry.path)
        self.state.document.note_explicit_target(term, term)
        definition = nodes.definition()
        if comment:
            definition += nodes.paragraph("", "", nodes.emphasis(text=comment))
        if "description" in entry.schema:
            definition += nodes.paragraph(text=entry.schema["description"])
        if entry.is_group:
            facts = nodes.paragraph(text="A mapping of the keys that follow.")
        else:
            facts = nodes.paragraph()
            facts += [
                nodes.Text("Default: "),
                nodes.literal(text=entry.default_text),
                nodes.Text(". Environment variable: "),
                nodes.literal(text=entry.environment_variable),
                nodes.Text("."),
            ]
        definition += facts
        item = nodes.definition_list_item(
            "", term, nodes.classifier(text=entry.type_text), definition
        )
        # Sphinx's transforms expect source lines on generated terms too.
        for node in (item, term):
            self.set_source_info(node)
        return item


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("morphml-config", ConfigReference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
