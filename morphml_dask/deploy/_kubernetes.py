"""Searches on Kubernetes: `kubernetes_spec`, a ``DaskCluster`` resource for the
dask-kubernetes operator with GPUs wired consistently, and `kubernetes_cluster`, which starts
one with `dask_kubernetes.operator.KubeCluster`.

The cluster has one scheduler pod (CPU only) and one worker group. With
``gpus_per_worker=n`` each worker container asks Kubernetes for ``n`` GPUs (limits
``nvidia.com/gpu: n``) and its worker offers Dask ``n`` abstract ``GPU`` resources
(``--resources GPU=n``), the resources trials ask for (``Search(gpus_per_trial=...)``), so the
two counts cannot disagree. S3 credentials reach the workers from a Secret (``secretKeyRef``),
never as values in the resource. ``clusters/kubernetes/`` holds the same cluster as YAML, with
the image, the Secret, an autoscaler and a Prometheus ``ServiceMonitor``.

dask-kubernetes is imported only when a function is called: ``pip install
'morphml_dask[kubernetes]'``. Nothing here talks to Kubernetes except `kubernetes_cluster`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from morphml_dask.config import config_value
from morphml_dask.deploy._docs import with_parameters
from morphml_dask.exceptions import ClusterError

__all__ = ["kubernetes_cluster", "kubernetes_spec"]

# dask_kubernetes.constants.VALID_CLUSTER_NAME: an RFC 1123 label short enough that
# "<name>-scheduler" is still one (63 characters).
_NAME = re.compile(r"^(?=.{1,53}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A Secret's name: an RFC 1123 subdomain.
_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_GPU_LIMIT = "nvidia.com/gpu"
# GPU node pools are often tainted so that only pods that need GPUs land on them.
_GPU_TOLERATION = {"key": _GPU_LIMIT, "operator": "Exists", "effect": "NoSchedule"}
# Keys of the Secret that `credentials_secret` names, each with whether it may be missing.
_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": False,
    "AWS_SECRET_ACCESS_KEY": False,
    "AWS_ENDPOINT_URL": True,
}
_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
# KubeCluster options that a custom_cluster_spec overrides or silently ignores.
_SPEC_KEYWORDS = frozenset({"custom_cluster_spec", "worker_command", "jupyter"})


_Resources = Mapping[str, Mapping[str, str | float]]
_Env = Mapping[str, str] | Sequence[Mapping[str, Any]]

_SPEC_PARAMETERS = """
name
    The DaskCluster's name: lowercase letters, digits and ``-``, at most 53 characters.
image
    The container image of the scheduler and workers, with morphml_dask installed
    (``clusters/kubernetes/Dockerfile``), e.g. ``"ghcr.io/morphml/morphml-dask:latest"``.
n_workers
    Worker pods to start (``spec.worker.replicas``); an autoscaler may change it.
gpus_per_worker
    GPUs each worker pod asks for (``nvidia.com/gpu`` limits) and its worker offers Dask
    as ``GPU`` resources; 0 makes CPU workers.
threads_per_worker
    ``dask worker --nthreads``: trials a worker runs at once. Default: one per GPU, or 1.
    Trials that share a GPU (``gpus_per_trial`` below 1) need one thread each: ``morphml
    run --cluster kubernetes`` passes ``gpus_per_worker * floor(1 / gpus_per_trial)``.
resources
    The worker container's ``{"requests": {...}, "limits": {...}}``, e.g.
    ``{"limits": {"memory": "16Gi"}}``; the GPU limit is added.
scheduler_resources
    The same for the scheduler container (no GPUs).
env
    Environment variables of the scheduler and workers: ``{"NAME": "value"}``, or
    Kubernetes ``EnvVar`` mappings (``{"name": ..., "valueFrom": ...}``).
credentials_secret
    The name of a Secret holding ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and,
    optionally, ``AWS_ENDPOINT_URL`` (``clusters/kubernetes/s3-credentials.yaml``); the
    workers get them as environment variables, which s3fs reads.
worker_args
    More ``dask worker`` arguments, e.g. ``["--memory-limit", "0"]``.
idle_timeout
    Seconds without activity after which the operator deletes the cluster; 0: never.
scheduler_service_type
    ``"ClusterIP"`` (reach it with ``kubectl port-forward``), ``"NodePort"`` or
    ``"LoadBalancer"``.
"""


@with_parameters(_SPEC_PARAMETERS)
def kubernetes_spec(
    name: str,
    *,
    image: str,
    n_workers: int,
    gpus_per_worker: int = 1,
    threads_per_worker: int | None = None,
    resources: _Resources | None = None,
    scheduler_resources: _Resources | None = None,
    env: _Env | None = None,
    credentials_secret: str | None = None,
    worker_args: Sequence[str] = (),
    idle_timeout: int = 0,
    scheduler_service_type: str = "ClusterIP",
) -> dict[str, Any]:
    """A ``DaskCluster`` resource (``kubernetes.dask.org/v1``) whose workers each own
    ``gpus_per_worker`` GPUs.

    Built with `dask_kubernetes.operator.make_cluster_spec`, then: the scheduler runs
    ``dask scheduler`` on the CPU; each worker runs ``dask worker --nthreads t --resources
    GPU=n``, asks for ``nvidia.com/gpu: n`` and tolerates GPU nodes' taint; no field is
    ``null``. Apply it with ``kubectl apply -f`` (as YAML) or pass it to `kubernetes_cluster`.

    Parameters
    ----------
    {parameters}

    Returns
    -------
    dict
        The DaskCluster resource, ready for ``yaml.safe_dump`` or `kubernetes_cluster`.

    Raises
    ------
    ClusterError
        When dask-kubernetes is missing or an argument is invalid.
    """
    _check_cluster(name, image, n_workers, gpus_per_worker, idle_timeout, scheduler_service_type)
    command = _worker_command(gpus_per_worker, threads_per_worker, worker_args)
    worker_resources = _with_gpus(_resources("resources", resources), gpus_per_worker)
    scheduler = _scheduler_resources(scheduler_resources)
    env_vars = _env(env)
    if credentials_secret is not None:
        _check_secret_name(credentials_secret)

    spec: dict[str, Any] = _operator().make_cluster_spec(
        name,
        image=image,
        n_workers=n_workers,
        env=env_vars or None,
        worker_command=command,
        scheduler_service_type=scheduler_service_type,
        idle_timeout=idle_timeout,
    )
    _set_scheduler(spec, env_vars + _dashboard_env(), scheduler)
    # Only the workers read and write the store: the scheduler never sees the credentials.
    secrets = [] if credentials_secret is None else _secret_env(credentials_secret)
    _set_workers(spec, env_vars + secrets, worker_resources, gpus_per_worker)
    return spec


def _check_cluster(
    name: Any, image: Any, n_workers: Any, gpus: Any, idle_timeout: Any, service_type: Any
) -> None:
    """The arguments of `kubernetes_spec` that are single values, checked."""
    _check_name(name)
    _check_text("image", image, "image='ghcr.io/morphml/morphml-dask:latest'")
    _check_count("n_workers", n_workers, 0, "n_workers=2")
    _check_count("gpus_per_worker", gpus, 0, "gpus_per_worker=1")
    _check_count("idle_timeout", idle_timeout, 0, "idle_timeout=0 (never)")
    _check_service_type(service_type)


def _set_scheduler(
    spec: dict[str, Any], env: list[dict[str, Any]], resources: dict[str, dict[str, str]]
) -> None:
    container = spec["spec"]["scheduler"]["spec"]["containers"][0]
    # distributed 2026 has no dask-scheduler / dask-worker scripts, only `dask <command>`.
    container["args"] = ["dask", "scheduler", "--host", "0.0.0.0"]
    _set_or_drop(container, "env", env)
    _set_or_drop(container, "resources", resources)


def _set_workers(
    spec: dict[str, Any],
    env: list[dict[str, Any]],
    resources: dict[str, dict[str, str]],
    gpus: int,
) -> None:
    pod = spec["spec"]["worker"]["spec"]
    _set_or_drop(pod["containers"][0], "env", env)
    _set_or_drop(pod["containers"][0], "resources", resources)
    if gpus:
        pod["tolerations"] = [dict(_GPU_TOLERATION)]


def _dashboard_env() -> list[dict[str, Any]]:
    """The scheduler's route modules with the morphml page (``morphml.dashboard``)."""
    if not config_value("dashboard"):
        return []
    from morphml_dask.dashboard import routes_with_morphml

    return [
        {
            "name": "DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES",
            "value": repr(routes_with_morphml()),
        }
    ]


@with_parameters(
    _SPEC_PARAMETERS,
    """
    namespace
        The namespace to create the DaskCluster in; default: the kubeconfig's.
    **kwargs
        Passed to `dask_kubernetes.operator.KubeCluster` (``shutdown_on_close``,
        ``resource_timeout``, ``port_forward_cluster_ip``, ``asynchronous``, ...). Arguments
        the spec decides (``custom_cluster_spec``, ``worker_command``, ``jupyter``) are errors.
    """,
)
def kubernetes_cluster(
    name: str,
    *,
    image: str,
    n_workers: int,
    gpus_per_worker: int = 1,
    namespace: str | None = None,
    threads_per_worker: int | None = None,
    resources: _Resources | None = None,
    scheduler_resources: _Resources | None = None,
    env: _Env | None = None,
    credentials_secret: str | None = None,
    worker_args: Sequence[str] = (),
    idle_timeout: int = 0,
    scheduler_service_type: str = "ClusterIP",
    **kwargs: Any,
) -> Any:
    """Start the cluster of `kubernetes_spec` through the dask-kubernetes operator, and
    return its `dask_kubernetes.operator.KubeCluster`.

    It needs a Kubernetes cluster with the operator installed (``clusters/kubernetes/README.md``)
    and a kubeconfig; it returns when the scheduler is up. Use it as ``Client(cluster)``;
    ``cluster.adapt(minimum=1, maximum=8)`` or ``cluster.scale(n)`` change the workers.

    Parameters
    ----------
    {parameters}

    Raises
    ------
    ClusterError
        As `kubernetes_spec` does, or when ``kwargs`` repeats what the spec decides.

    Examples
    --------
    >>> cluster = kubernetes_cluster("morphml", image="ghcr.io/me/morphml-dask:1",
    ...                              n_workers=2)  # doctest: +SKIP
    """
    _check_cluster_options(kwargs)
    spec = kubernetes_spec(
        name,
        image=image,
        n_workers=n_workers,
        gpus_per_worker=gpus_per_worker,
        threads_per_worker=threads_per_worker,
        resources=resources,
        scheduler_resources=scheduler_resources,
        env=env,
        credentials_secret=credentials_secret,
        worker_args=worker_args,
        idle_timeout=idle_timeout,
        scheduler_service_type=scheduler_service_type,
    )
    return _operator().KubeCluster(custom_cluster_spec=spec, namespace=namespace, **kwargs)


def _check_cluster_options(kwargs: Mapping[str, Any]) -> None:
    clashes = sorted(_SPEC_KEYWORDS.intersection(kwargs))
    if clashes:
        raise ClusterError(
            "KubeCluster arguments that the cluster spec decides",
            expected="only KubeCluster's own options in **kwargs (shutdown_on_close, "
            "resource_timeout, port_forward_cluster_ip, asynchronous, ...)",
            received=", ".join(clashes),
            fix="pass image, n_workers, resources and env as kubernetes_cluster's own arguments; "
            "for worker_command use worker_args, for a custom spec call KubeCluster yourself",
        )


def _operator() -> ModuleType:
    try:
        return importlib.import_module("dask_kubernetes.operator")
    except ImportError as error:
        raise ClusterError(
            "dask-kubernetes is not installed",
            expected="dask-kubernetes, whose operator runs Dask clusters on Kubernetes",
            received=f"ImportError: {error}",
            fix="pip install 'morphml_dask[kubernetes]'",
        ) from error


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ClusterError(
            "invalid name",
            expected="a DaskCluster name: lowercase letters, digits and '-', starting and "
            "ending with a letter or digit, at most 53 characters",
            received=repr(name),
            fix="pass e.g. name='morphml'",
        )


def _check_secret_name(secret: Any) -> None:
    if not isinstance(secret, str) or not _SUBDOMAIN.match(secret):
        raise ClusterError(
            "invalid credentials_secret",
            expected="the name of a Secret: lowercase letters, digits, '-' and '.', starting "
            "and ending with a letter or digit",
            received=repr(secret),
            fix="pass e.g. credentials_secret='morphml-s3-credentials' "
            "(clusters/kubernetes/s3-credentials.yaml)",
        )


def _check_service_type(service_type: Any) -> None:
    if service_type not in _SERVICE_TYPES:
        raise ClusterError(
            "invalid scheduler_service_type",
            expected=f"one of {', '.join(_SERVICE_TYPES)}",
            received=repr(service_type),
            fix="pass scheduler_service_type='ClusterIP' and reach the scheduler with "
            "kubectl port-forward",
        )


def _worker_command(gpus: int, threads: int | None, worker_args: Any) -> list[str]:
    """``dask worker --nthreads t [--resources GPU=n] ...``: one thread per GPU by default."""
    threads = max(1, gpus) if threads is None else threads
    _check_count("threads_per_worker", threads, 1, "threads_per_worker=1")
    command = ["dask", "worker", "--nthreads", str(threads)]
    if gpus:
        command += ["--resources", f"GPU={gpus}"]
    return command + _worker_args(worker_args)


def _check_text(what: str, value: Any, example: str) -> None:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise ClusterError(
            f"invalid {what}",
            expected="a non-empty string without surrounding spaces",
            received=repr(value),
            fix=f"pass e.g. {example}",
        )


def _check_count(what: str, value: Any, least: int, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ClusterError(
            f"invalid {what}",
            expected=f"a whole number, {least} or more",
            received=repr(value),
            fix=f"pass e.g. {example}",
        )


def _resources(what: str, resources: Any) -> dict[str, dict[str, str]]:
    """A copy of a container's resources, checked: only ``limits`` and ``requests``, and
    quantities as strings (the operator's CRDs accept no numbers there)."""
    if resources is None:
        return {}
    if (
        isinstance(resources, Mapping)
        and set(resources) <= {"limits", "requests"}
        and all(
            isinstance(part, Mapping)
            and all(
                isinstance(quantity, (str, int, float)) and not isinstance(quantity, bool)
                for quantity in part.values()
            )
            for part in resources.values()
        )
    ):
        return {
            key: {name: str(quantity) for name, quantity in part.items()}
            for key, part in resources.items()
        }
    raise ClusterError(
        f"invalid {what}",
        expected="a mapping with 'limits' and/or 'requests', each a mapping of resource "
        "names to quantities (strings or numbers)",
        received=repr(resources),
        fix=f"pass e.g. {what}={{'requests': {{'cpu': '4', 'memory': '16Gi'}}, "
        "'limits': {'memory': '16Gi'}}",
    )


def _scheduler_resources(resources: Any) -> dict[str, dict[str, str]]:
    checked = _resources("scheduler_resources", resources)
    if any(_GPU_LIMIT in part for part in checked.values()):
        raise ClusterError(
            "the scheduler asks for GPUs",
            expected="scheduler_resources without nvidia.com/gpu: the scheduler runs no trials",
            received=repr(resources),
            fix="remove nvidia.com/gpu from scheduler_resources; set gpus_per_worker instead",
        )
    return checked


def _with_gpus(resources: dict[str, dict[str, str]], gpus: int) -> dict[str, dict[str, str]]:
    """The worker's resources with ``nvidia.com/gpu: gpus`` in its limits (Kubernetes sets
    the request from the limit), or an error if they ask for other GPU counts."""
    for part, quantities in resources.items():
        if _GPU_LIMIT in quantities and quantities[_GPU_LIMIT] != str(gpus):
            raise ClusterError(
                "the workers' GPU resources disagree with gpus_per_worker",
                expected=f"{_GPU_LIMIT}: {gpus} (or none: it is added), for gpus_per_worker={gpus}",
                received=f"resources[{part!r}][{_GPU_LIMIT!r}] = {quantities[_GPU_LIMIT]!r}",
                fix=f"remove {_GPU_LIMIT} from resources and let gpus_per_worker set it",
            )
    if gpus:
        resources.setdefault("limits", {})[_GPU_LIMIT] = str(gpus)
    return resources


def _env(env: Any) -> list[dict[str, Any]]:
    if env is None:
        return []
    if isinstance(env, Mapping):
        if all(isinstance(k, str) and k and isinstance(v, str) for k, v in env.items()):
            return [{"name": key, "value": value} for key, value in env.items()]
    elif (
        isinstance(env, Sequence)
        and not isinstance(env, str)
        and all(isinstance(var, Mapping) and isinstance(var.get("name"), str) for var in env)
    ):
        return [dict(var) for var in env]
    raise ClusterError(
        "invalid env",
        expected="a mapping of variable names to string values, or a list of Kubernetes "
        "EnvVar mappings with a 'name'",
        received=repr(env),
        fix="pass e.g. env={'DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT': '60s'}; "
        "for S3 credentials use credentials_secret",
    )


def _secret_env(secret: str) -> list[dict[str, Any]]:
    env = []
    for key, optional in _CREDENTIALS.items():
        ref: dict[str, Any] = {"name": secret, "key": key}
        if optional:
            ref["optional"] = True
        env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env


def _worker_args(args: Any) -> list[str]:
    if isinstance(args, str) or not all(isinstance(arg, str) for arg in args):
        raise ClusterError(
            "invalid worker_args",
            expected="a list of strings, one per argument",
            received=repr(args),
            fix="pass e.g. worker_args=['--memory-limit', '0']",
        )
    taken = sorted(
        {
            flag
            for arg in args
            for flag in ("--nthreads", "--resources", "--name")
            if arg == flag or arg.startswith(flag + "=")
        }
    )
    if taken:
        raise ClusterError(
            "worker_args sets what the spec decides",
            expected="no --nthreads, --resources or --name in worker_args",
            received=", ".join(taken),
            fix="use threads_per_worker and gpus_per_worker instead; the operator names workers",
        )
    return list(args)


def _set_or_drop(container: dict[str, Any], key: str, value: Any) -> None:
    # The operator copies fields as they are, and `null` ones break it.
    if value:
        container[key] = value
    else:
        container.pop(key, None)
