"""The Kubernetes deployment, checked offline: clusters/kubernetes/*.yaml and `kubernetes_spec`.

No Kubernetes API server runs here. What is checked instead:

- core kinds (the Secret; the pod and service specs inside the DaskCluster, wrapped as a Pod
  and a Service) against Kubernetes' own OpenAPI schemas with kubernetes-validate, strict
  (unknown fields are errors, as with ``kubectl apply``'s default field validation);
- DaskCluster and DaskAutoscaler against the ``openAPIV3Schema`` of the CRDs that the installed
  dask-kubernetes ships, with unknown fields made errors the same way;
- the ServiceMonitor against the prometheus-operator CRD models of cloudcoil (when installed),
  and always against the structure it needs, written out here;
- that the pieces agree: the Secret's keys and the env that reads them, GPU limits and
  ``--resources GPU=``, the autoscaler's and ServiceMonitor's targets, the worker and scheduler
  arguments (parsed by distributed's own command line), the manifest and `kubernetes_spec`.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Callable
from typing import Any

import _helm
import pytest
import yaml
from _helm import as_core_objects as _as_core_objects
from _helm import container as _container
from _helm import crd_errors as _crd_errors
from _helm import dask_cli as _dask_cli
from _helm import kubernetes_validate as _kubernetes_validate

from morphml_dask.deploy._kubernetes import kubernetes_cluster, kubernetes_spec
from morphml_dask.exceptions import ClusterError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

pytestmark = pytest.mark.kubernetes

dask_kubernetes = pytest.importorskip(
    "dask_kubernetes", reason="the Kubernetes tests need dask-kubernetes (the kubernetes extra)"
)

ROOT = _helm.ROOT
MANIFESTS = ROOT / "clusters" / "kubernetes"
KUBERNETES_VERSION = _helm.KUBERNETES_VERSION
IMAGE = "ghcr.io/morphml/morphml-dask:latest"
SECRET = "morphml-s3-credentials"
# A Kubernetes object name (RFC 1123 label), as dask-kubernetes checks cluster names.
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Prometheus durations, as the ServiceMonitor CRD writes them.
DURATION = re.compile(r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$")


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                found.append((path.name, document))
    return found


DOCUMENTS = _documents()


def _of_kind(kind: str) -> dict[str, Any]:
    (document,) = [doc for _, doc in DOCUMENTS if doc["kind"] == kind]
    return document


def _ids(documents: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [f"{name}:{doc['kind']}" for name, doc in documents]


@pytest.fixture(scope="module")
def crd_validators() -> dict[str, Any]:
    """A jsonschema validator per kind, from the CRDs inside the installed dask-kubernetes."""
    return _helm.crd_validators()


def _spec(name: str = "morphml", **options: Any) -> dict[str, Any]:
    return kubernetes_spec(name, **{"image": IMAGE, "n_workers": 2, **options})


# --- the manifests ------------------------------------------------------------------------


def test_every_manifest_is_one_of_the_checked_kinds() -> None:
    kinds = sorted(doc["kind"] for _, doc in DOCUMENTS)
    assert kinds == ["DaskAutoscaler", "DaskCluster", "Secret", "ServiceMonitor"]
    for _, document in DOCUMENTS:
        assert NAME.match(document["metadata"]["name"]), document["metadata"]


CORE = [(name, doc) for name, doc in DOCUMENTS if "/" not in doc["apiVersion"]]


@pytest.mark.parametrize(("file", "document"), CORE, ids=_ids(CORE))
def test_core_manifests_validate_against_kubernetes(file: str, document: dict[str, Any]) -> None:
    _kubernetes_validate(document)


DASK = [(name, doc) for name, doc in DOCUMENTS if doc["apiVersion"] == "kubernetes.dask.org/v1"]


@pytest.mark.parametrize(("file", "document"), DASK, ids=_ids(DASK))
def test_dask_manifests_validate_against_the_operator_crds(
    crd_validators: dict[str, Any], file: str, document: dict[str, Any]
) -> None:
    assert _crd_errors(crd_validators, document) == []


def test_daskcluster_pods_and_service_validate_against_kubernetes() -> None:
    for core_object in _as_core_objects(_of_kind("DaskCluster")):
        _kubernetes_validate(core_object)


def test_the_validators_reject_what_kubernetes_rejects(crd_validators: dict[str, Any]) -> None:
    cluster = copy.deepcopy(_of_kind("DaskCluster"))
    cluster["spec"]["worker"]["replica"] = 2  # a typo: pruned silently without strictness
    cluster["spec"]["worker"]["spec"]["containers"][0]["resources"]["limit"] = {}
    cluster["spec"]["worker"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = 4
    assert _crd_errors(crd_validators, cluster) == [
        # kubernetes-validate takes numbers there; the DaskCluster CRD does not.
        "spec.worker.spec.containers.0.resources.requests.cpu: 4 is not of type 'string'",
        "spec.worker.spec.containers.0.resources: Additional properties are not allowed "
        "('limit' was unexpected)",
        "spec.worker: Additional properties are not allowed ('replica' was unexpected)",
    ]
    autoscaler = {**_of_kind("DaskAutoscaler"), "spec": {"cluster": "morphml", "minimum": "1"}}
    assert _crd_errors(crd_validators, autoscaler) == [
        "spec.minimum: '1' is not of type 'integer'",
        "spec: 'maximum' is a required property",
    ]
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    secret = {**_of_kind("Secret"), "stringdata": {"A": "b"}}
    with pytest.raises(kubernetes_validate.ValidationError, match="stringdata"):
        kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)


def test_servicemonitor_has_the_structure_prometheus_operator_needs() -> None:
    # Written out because the CRD is not always installed offline; see the next test.
    monitor = _of_kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels"}
    labels = spec["selector"]["matchLabels"]
    assert labels and all(isinstance(v, str) for v in labels.values())
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert isinstance(endpoint["port"], str)  # the Service port's name
        assert endpoint["path"].startswith("/")
        assert DURATION.match(endpoint["interval"])
    assert all(isinstance(label, str) for label in spec.get("targetLabels", []))


def test_servicemonitor_validates_against_the_prometheus_operator_crd() -> None:
    models = pytest.importorskip(
        "cloudcoil.models.prometheus_operator.v1",
        reason="the ServiceMonitor schema comes from cloudcoil-models-prometheus-operator",
    )
    monitor = _of_kind("ServiceMonitor")
    parsed = models.ServiceMonitor.model_validate(monitor)
    # The models ignore unknown fields: the round trip shows any that were dropped.
    assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == monitor


def test_the_secret_holds_exactly_the_keys_the_workers_read() -> None:
    secret = _of_kind("Secret")
    assert secret["type"] == "Opaque"
    keys = set(secret["stringData"])
    refs = [
        var["valueFrom"]["secretKeyRef"]
        for part in ("scheduler", "worker")
        for var in _container(_of_kind("DaskCluster"), part).get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {})
    ]
    assert {ref["name"] for ref in refs} == {secret["metadata"]["name"]}
    required = {ref["key"] for ref in refs if not ref.get("optional", False)}
    optional = {ref["key"] for ref in refs if ref.get("optional", False)}
    assert required == keys == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert optional == {"AWS_ENDPOINT_URL"}  # commented out in the Secret
    assert "AWS_ENDPOINT_URL" in (MANIFESTS / "s3-credentials.yaml").read_text()
    scheduler_env = _container(_of_kind("DaskCluster"), "scheduler")["env"]
    assert not any("valueFrom" in var for var in scheduler_env), "credentials on the scheduler"


def test_the_manifest_wires_one_gpu_per_worker_consistently() -> None:
    cluster = _of_kind("DaskCluster")
    worker = _container(cluster, "worker")
    params = _dask_cli(worker["args"])
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"  # the CRD wants strings
    assert params["resources"] == "GPU=1"
    assert params["nthreads"] == 1
    assert "nvidia.com/gpu" not in str(_container(cluster, "scheduler").get("resources"))


def test_the_scheduler_serves_what_the_autoscaler_and_servicemonitor_expect() -> None:
    cluster = _of_kind("DaskCluster")
    name = cluster["metadata"]["name"]
    assert _of_kind("DaskAutoscaler")["spec"]["cluster"] == name
    bounds = _of_kind("DaskAutoscaler")["spec"]
    assert 1 <= bounds["minimum"] <= bounds["maximum"]
    # The operator labels the scheduler Service with these (controller.py).
    service_labels = {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
    monitor = _of_kind("ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service_labels.items()
    service = cluster["spec"]["scheduler"]["service"]
    assert service["selector"] == service_labels
    ports = {port["name"]: port for port in service["ports"]}
    (endpoint,) = monitor["endpoints"]
    assert ports[endpoint["port"]]["port"] == 8787 and endpoint["path"] == "/metrics"
    params = _dask_cli(_container(cluster, "scheduler")["args"])
    assert params["dashboard"] and params["dashboard_address"] == ":8787"


def test_the_manifest_is_what_kubernetes_spec_builds() -> None:
    cluster = _of_kind("DaskCluster")
    worker = _container(cluster, "worker")
    built = _spec(credentials_secret=SECRET, resources=worker["resources"])
    built_worker = _container(built, "worker")
    assert built["metadata"]["name"] == cluster["metadata"]["name"]
    assert _dask_cli(built_worker["args"]) == _dask_cli(worker["args"])
    assert built_worker["env"] == worker["env"]
    assert built_worker["resources"] == worker["resources"]
    assert (
        built["spec"]["worker"]["spec"]["tolerations"]
        == cluster["spec"]["worker"]["spec"]["tolerations"]
    )
    assert _dask_cli(_container(built, "scheduler")["args"]) == _dask_cli(
        _container(cluster, "scheduler")["args"]
    )
    # The same scheduler pages: Dask's and morphml's (/morphml, its metrics on /metrics).
    assert _container(built, "scheduler")["env"] == _container(cluster, "scheduler")["env"]
    assert built["spec"]["scheduler"]["service"] == cluster["spec"]["scheduler"]["service"]


def test_the_dockerfile_installs_what_the_manifests_need() -> None:
    dockerfile = (MANIFESTS / "Dockerfile").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    (install,) = re.findall(r'pip install "\.\[([\w,]+)\]"', dockerfile)
    assert set(install.split(",")) <= set(extras)
    assert "s3" in install  # s3fs reads the Secret's variables
    assert "prometheus-client" in dockerfile  # Dask serves /metrics only with it
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
    ignore = (MANIFESTS / "Dockerfile.dockerignore").read_text().splitlines()
    assert {"!pyproject.toml", "!README.md", "!LICENSE", "!morphml_dask/"} <= set(ignore)
    for _, document in DOCUMENTS:
        if document["kind"] == "DaskCluster":
            for part in ("scheduler", "worker"):
                assert _container(document, part)["image"] == IMAGE


# --- kubernetes_spec ----------------------------------------------------------------------


SPEC_OPTIONS: list[dict[str, Any]] = [
    {},
    {"gpus_per_worker": 0},
    {"gpus_per_worker": 2, "credentials_secret": SECRET},
    {
        "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "16Gi"}},
        "scheduler_resources": {"requests": {"cpu": 1}},
        "env": {"DASK_LOGGING__DISTRIBUTED": "info"},
        "worker_args": ["--memory-limit", "0"],
        "idle_timeout": 600,
        "scheduler_service_type": "LoadBalancer",
    },
]
SPEC_IDS = ["defaults", "cpu", "two-gpus-secret", "everything"]


@pytest.mark.parametrize("options", SPEC_OPTIONS, ids=SPEC_IDS)
def test_spec_validates_against_the_crd(
    crd_validators: dict[str, Any], options: dict[str, Any]
) -> None:
    spec = _spec(**options)
    assert _crd_errors(crd_validators, spec) == []
    assert "None" not in repr(spec)  # the operator copies null fields and breaks on them
    for part in ("scheduler", "worker"):
        _dask_cli(_container(spec, part)["args"])


@pytest.mark.parametrize("options", SPEC_OPTIONS, ids=SPEC_IDS)
def test_spec_pods_and_service_validate_against_kubernetes(options: dict[str, Any]) -> None:
    for core_object in _as_core_objects(_spec(**options)):
        _kubernetes_validate(core_object)


@pytest.mark.parametrize("gpus", [1, 2])
def test_spec_wires_gpus_consistently(gpus: int) -> None:
    spec = _spec(gpus_per_worker=gpus, resources={"limits": {"memory": "8Gi"}})
    worker = _container(spec, "worker")
    params = _dask_cli(worker["args"])
    assert worker["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": str(gpus)}
    assert params["resources"] == f"GPU={gpus}"
    assert params["nthreads"] == gpus  # one trial per GPU at a time
    assert params["name"] == "$(DASK_WORKER_NAME)"
    assert spec["spec"]["worker"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "resources" not in _container(spec, "scheduler")
    assert spec["spec"]["worker"]["replicas"] == 2


def test_spec_of_cpu_workers_asks_for_no_gpus() -> None:
    spec = _spec(gpus_per_worker=0, threads_per_worker=4)
    worker = _container(spec, "worker")
    params = _dask_cli(worker["args"])
    assert params["resources"] is None and params["nthreads"] == 4
    assert "resources" not in worker
    assert "tolerations" not in spec["spec"]["worker"]["spec"]


def test_spec_gives_the_credentials_to_the_workers_only() -> None:
    spec = _spec(credentials_secret=SECRET, env={"A": "1"})
    worker_env = _container(spec, "worker")["env"]
    assert worker_env[0] == {"name": "A", "value": "1"}
    assert [var["name"] for var in worker_env[1:]] == [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
    ]
    scheduler_env = _container(spec, "scheduler")["env"]
    assert [var["name"] for var in scheduler_env] == [
        "A",
        "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES",
    ]


def test_spec_starts_the_scheduler_with_the_morphml_dashboard_page() -> None:
    import dask.config

    (routes,) = [
        var["value"]
        for var in _container(_spec(), "scheduler")["env"]
        if var["name"] == "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"
    ]
    # Read the way `dask scheduler` reads its environment.
    read = dask.config.collect_env({"DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES": routes})
    modules = read["distributed"]["scheduler"]["http"]["routes"]
    assert modules[-1] == "morphml_dask.dashboard.routes"
    assert "distributed.http.scheduler.prometheus" in modules  # the built-in pages stay
    with dask.config.set({"morphml.dashboard": False}):
        assert "env" not in _container(_spec(), "scheduler")


def test_spec_accepts_gpu_limits_that_agree() -> None:
    spec = _spec(gpus_per_worker=2, resources={"limits": {"nvidia.com/gpu": 2, "cpu": 0.5}})
    assert _container(spec, "worker")["resources"]["limits"] == {
        "nvidia.com/gpu": "2",
        "cpu": "0.5",
    }


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"gpus_per_worker": -1}, r"invalid gpus_per_worker\n.*0 or more\n  received: -1\n"),
        ({"gpus_per_worker": True}, r"invalid gpus_per_worker\n.*\n  received: True\n"),
        ({"n_workers": "two"}, r"invalid n_workers\n.*\n  received: 'two'\n.*n_workers=2"),
        ({"threads_per_worker": 0}, r"invalid threads_per_worker\n.*1 or more"),
        ({"name": "Morph_ML"}, r"invalid name\n.*lowercase.*\n  received: 'Morph_ML'"),
        ({"name": "m" * 54}, r"invalid name\n.*at most 53 characters"),
        ({"image": ""}, r"invalid image\n.*non-empty string.*\n.*\n  fix: pass e.g. image="),
        ({"idle_timeout": -5}, r"invalid idle_timeout\n.*0 or more"),
        ({"resources": {"limit": {"memory": "1Gi"}}}, r"invalid resources\n.*'limits'"),
        ({"resources": {"limits": "1Gi"}}, r"invalid resources\n"),
        ({"resources": {"limits": {"cpu": None}}}, r"invalid resources\n"),
        (
            {"gpus_per_worker": 1, "resources": {"limits": {"nvidia.com/gpu": 2}}},
            r"GPU resources disagree with gpus_per_worker\n  expected: nvidia.com/gpu: 1 .*\n"
            r"  received: resources\['limits'\]\['nvidia.com/gpu'\] = '2'\n  fix: remove",
        ),
        (
            {"scheduler_resources": {"limits": {"nvidia.com/gpu": 1}}},
            r"the scheduler asks for GPUs\n.*\n.*\n  fix: remove nvidia.com/gpu",
        ),
        ({"env": {"A": 1}}, r"invalid env\n.*\n  received: \{'A': 1\}\n.*credentials_secret"),
        ({"env": "A=1"}, r"invalid env\n"),
        ({"worker_args": "--lifetime 1h"}, r"invalid worker_args\n.*list of strings"),
        (
            {"worker_args": ["--nthreads=2", "--resources", "GPU=3"]},
            r"worker_args sets what the spec decides\n.*\n  received: --nthreads, --resources\n"
            r"  fix: use threads_per_worker and gpus_per_worker",
        ),
        ({"scheduler_service_type": "Ingress"}, r"invalid scheduler_service_type\n.*ClusterIP"),
        ({"credentials_secret": "S3"}, r"invalid credentials_secret\n.*\n  received: 'S3'"),
    ],
)
def test_spec_rejects_bad_arguments(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ClusterError, match=match):
        _spec(**options)


def test_missing_dask_kubernetes_is_a_cluster_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", None)
    with pytest.raises(
        ClusterError,
        match=r"dask-kubernetes is not installed\n.*\n  received: ImportError: .*\n"
        r"  fix: pip install 'morphml_dask\[kubernetes\]'",
    ):
        _spec()


# --- kubernetes_cluster (no Kubernetes here: KubeCluster is replaced) ----------------------


@pytest.fixture
def kube_cluster_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Calls of dask-kubernetes' KubeCluster, which records its arguments instead of
    creating a DaskCluster."""
    operator = pytest.importorskip("dask_kubernetes.operator")
    calls: list[dict[str, Any]] = []

    def record(**kwargs: Any) -> str:
        calls.append(kwargs)
        return "cluster"

    fake: Callable[..., str] = record
    monkeypatch.setattr(operator, "KubeCluster", fake)
    return calls


def test_kubernetes_cluster_starts_kubecluster_with_the_spec(
    kube_cluster_calls: list[dict[str, Any]],
) -> None:
    cluster = kubernetes_cluster(
        "morphml",
        image=IMAGE,
        n_workers=3,
        gpus_per_worker=2,
        namespace="search",
        credentials_secret=SECRET,
        shutdown_on_close=False,
    )
    assert cluster == "cluster"
    (call,) = kube_cluster_calls
    assert call == {
        "custom_cluster_spec": _spec(n_workers=3, gpus_per_worker=2, credentials_secret=SECRET),
        "namespace": "search",
        "shutdown_on_close": False,
    }


@pytest.mark.parametrize("keyword", ["worker_command", "custom_cluster_spec", "jupyter"])
def test_kubernetes_cluster_rejects_what_the_spec_decides(
    kube_cluster_calls: list[dict[str, Any]], keyword: str
) -> None:
    extra: dict[str, Any] = {keyword: "x"}
    with pytest.raises(
        ClusterError,
        match=rf"KubeCluster arguments that the cluster spec decides\n.*\n  received: {keyword}\n",
    ):
        kubernetes_cluster("morphml", image=IMAGE, n_workers=1, **extra)
    assert kube_cluster_calls == []
