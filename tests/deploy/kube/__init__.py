"""An emulated Kubernetes for the tests: the real dask-kubernetes operator (kopf) against
kmock's in-memory Kubernetes API, with a small kubelet that runs pods as local processes.

This exercises dask-kubernetes and its operator, and our manifests and
`morphml_dask.deploy.kubernetes_cluster` through them; it is not Kubernetes: no scheduling,
images, resource limits, GPUs or network policy.

- `kube.apiserver.KubernetesApi`: kmock's emulator fixed for real clients;
- `kube.kubelet.Kubelet`: Deployments to pods to processes, Services, garbage collection;
- `kube.cluster_dns`: Service names resolving to 127.0.0.1 in the operator's process;
- `kube.cluster.EmulatedKubernetes`: all of it started together, with a kubeconfig.

To run any DaskCluster manifest (a dict, e.g. a Helm-rendered one) and get its scheduler::

    with EmulatedKubernetes(tmp_path) as kube:
        address = kube.run_daskcluster(manifest)  # "tcp://127.0.0.1:<port>"
        with Client(address) as client: ...

``run_daskcluster(manifest, namespace="default", timeout=90)`` returns once the operator
marks the cluster Running and its scheduler pod is ready; images are ignored, the container
``args`` run with this environment's ``dask``. The ``emulated_kubernetes`` fixture of
``tests/deploy/test_operator.py`` holds one for a whole module. Importing this package skips
the tests (``pip install kmock pytest-asyncio``) when kmock is missing.
"""

from __future__ import annotations

from kube.cluster import EmulatedKubernetes

__all__ = ["EmulatedKubernetes"]
