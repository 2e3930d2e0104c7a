"""The Kubernetes deployment rendered and checked offline, for the tests of ``tests/deploy``.

- `render_chart` renders ``clusters/kubernetes/helm/morphml`` with helm-python-sdk (Helm's own
  Go library: no ``helm`` binary, no cluster) into the objects ``helm install`` would create;
- `crd_validators` and `crd_errors` check DaskCluster and DaskAutoscaler objects against the
  ``openAPIV3Schema`` of the CRDs that the installed dask-kubernetes ships, strictly;
- `kubernetes_validate` and `as_core_objects` check core kinds, and the pods and service inside
  a DaskCluster, against Kubernetes' own OpenAPI schemas;
- `container` is the one container of a DaskCluster's scheduler or worker pod;
- `dask_cli` parses a container's ``dask scheduler|worker`` arguments with distributed's own
  command line.

Each skips the calling test, saying what to install, when its tool is missing.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "clusters" / "kubernetes" / "helm" / "morphml"
RELEASE = "morphml"
NAMESPACE = "default"
# The Kubernetes release whose schemas the core kinds are checked against (bundled by
# kubernetes-validate 1.35 and later).
KUBERNETES_VERSION = "1.35"


def helm() -> ModuleType:
    """helm-python-sdk's ``helm_python``, or a skip that says how to install it."""
    module: ModuleType = pytest.importorskip(
        "helm_python",
        reason="the Helm chart tests need helm-python-sdk: pip install helm-python-sdk",
    )
    return module


def render_chart(
    values: dict[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """The objects the morphml chart renders, as ``helm template`` would print them.

    Parameters
    ----------
    values
        Values over the chart's ``values.yaml``, as ``helm install -f`` takes them; ``None``
        for the defaults. They are checked against ``values.schema.json`` first.
    release, namespace
        The release's name and namespace.

    Returns
    -------
    list of dict
        The rendered objects, sorted by template file; ``NOTES.txt`` left out.

    Raises
    ------
    helm_python.HelmValuesError
        When the values break ``values.schema.json``.
    helm_python.HelmRenderError
        When a template stops on a check of its own (``fail``).
    """
    with helm().Chart.load(CHART) as chart:
        rendered = chart.render(values, name=release, namespace=namespace)
    objects: list[dict[str, Any]] = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc is not None)
    return objects


def strict(schema: Any) -> Any:
    """A CRD's structural schema with unknown fields as errors, as the API server reports them
    under strict field validation (``kubectl apply``'s default)."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


@functools.cache
def crd_validators() -> dict[str, Any]:
    """A jsonschema validator per kind, from the CRDs inside the installed dask-kubernetes."""
    dask_kubernetes = pytest.importorskip(
        "dask_kubernetes",
        reason="the CRD checks need dask-kubernetes: pip install 'morphml_dask[kubernetes]'",
    )
    jsonschema = pytest.importorskip(
        "jsonschema", reason="the CRD checks need jsonschema: pip install jsonschema"
    )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    validators = {}
    for path in Path(dask_kubernetes.__file__).parent.glob("**/crds/*.yaml"):
        crd = yaml.load(path.read_text(), Loader=loader)
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
        # The API server checks these itself, the rest is the CRD's.
        schema["properties"] |= {
            "apiVersion": {"const": f"{crd['spec']['group']}/v1"},
            "kind": {"const": crd["spec"]["names"]["kind"]},
            "metadata": {"type": "object"},
        }
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
        validators[crd["spec"]["names"]["kind"]] = jsonschema.Draft7Validator(strict(schema))
    assert {"DaskCluster", "DaskAutoscaler", "DaskWorkerGroup"} <= set(validators)
    return validators


def crd_errors(validators: dict[str, Any], document: dict[str, Any]) -> list[str]:
    """Every way ``document`` breaks its kind's CRD, as ``path: message``, sorted."""
    errors = validators[document["kind"]].iter_errors(document)
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def kubernetes_validate(document: dict[str, Any]) -> None:
    """Check a core object against Kubernetes' OpenAPI schemas, unknown fields included."""
    validate = pytest.importorskip(
        "kubernetes_validate",
        reason="core kinds are checked with kubernetes-validate: pip install kubernetes-validate",
    )
    validate.validate(document, KUBERNETES_VERSION, strict=True)


def as_core_objects(cluster: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The DaskCluster's pod and service specs as the Pods and Service the operator makes."""
    name = cluster["metadata"]["name"]
    spec = cluster["spec"]
    for part in ("scheduler", "worker"):
        yield {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-{part}"},
            "spec": spec[part]["spec"],
        }
    yield {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{name}-scheduler"},
        "spec": spec["scheduler"]["service"],
    }


def container(cluster: dict[str, Any], part: str) -> dict[str, Any]:
    """The one container of a DaskCluster's ``scheduler`` or ``worker`` pod."""
    (found,) = cluster["spec"][part]["spec"]["containers"]
    return dict(found)


def dask_cli(args: list[str]) -> dict[str, Any]:
    """``dask scheduler|worker ...`` parsed by distributed's own command line."""
    from distributed.cli import dask_scheduler, dask_worker

    assert args[0] == "dask", args
    command = {"scheduler": dask_scheduler.main, "worker": dask_worker.main}[args[1]]
    context = command.make_context(f"dask {args[1]}", list(args[2:]))
    return dict(context.params)
