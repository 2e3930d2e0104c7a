"""Clusters on the machines people already have: SLURM through dask-jobqueue and Kubernetes
through the dask-kubernetes operator, with GPU resources wired the same way on both.

``clusters/`` in the repository holds the matching configuration and manifests.
"""

from __future__ import annotations

from morphml_dask.deploy._connect import CLUSTER_KINDS, connect
from morphml_dask.deploy._kubernetes import kubernetes_cluster, kubernetes_spec
from morphml_dask.deploy._slurm import slurm_cluster, worker_job_id

__all__ = [
    "CLUSTER_KINDS",
    "connect",
    "kubernetes_cluster",
    "kubernetes_spec",
    "slurm_cluster",
    "worker_job_id",
]
