"""`connect`: the cluster a command runs on, and what it says when it cannot get one."""

from __future__ import annotations

from typing import Any

import dask.config
import pytest

from morphml_dask.deploy import connect
from morphml_dask.exceptions import ClusterError, SchedulerUnreachableError


def _refused(*args: Any, **kwargs: Any) -> Any:
    raise OSError("Timed out trying to connect to tcp://127.0.0.1:9 after 30 s")


@pytest.mark.parametrize(
    ("address", "fix"),
    [
        ("tcp://127.0.0.1:9", "a scheduler that requires TLS has a tls:// address and needs"),
        ("tls://127.0.0.1:9", r"a tls:// scheduler needs --tls-ca-file, --tls-cert and --tls-key"),
    ],
)
def test_an_unreachable_scheduler_is_an_outage_not_bad_input(
    monkeypatch: pytest.MonkeyPatch, address: str, fix: str
) -> None:
    import distributed

    monkeypatch.setattr(distributed, "Client", _refused)
    with (
        pytest.raises(
            SchedulerUnreachableError,
            match=rf"cannot connect to the Dask scheduler at {address}\n"
            r"  expected: a running scheduler that accepts this client\n"
            r"  received: OSError: Timed out trying to connect to tcp://127.0.0.1:9 after 30 s\n"
            rf"  fix: check the address and that the scheduler runs; {fix}",
        ) as raised,
        connect(address, None, name="search", gpus_per_trial=0),
    ):
        pass
    # `except ValueError` (bad input) in a user's code does not swallow an outage.
    assert isinstance(raised.value, OSError) and not isinstance(raised.value, ValueError)


def test_an_unknown_cluster_kind_is_refused() -> None:
    with (
        pytest.raises(
            ClusterError,
            match=r"unknown cluster kind 'slurn'\n  expected: one of local, slurm, kubernetes\n"
            r"  received: 'slurn'\n  fix: pass --cluster local, slurm or kubernetes \(or set "
            r"morphml.cluster.kind\)",
        ),
        connect(None, "slurn", name="search", gpus_per_trial=0),
    ):
        pass


def test_an_address_and_a_cluster_kind_together_are_refused() -> None:
    with (
        pytest.raises(
            ClusterError,
            match=r"both a scheduler address and a cluster kind\n"
            r"  expected: --scheduler ADDRESS or --cluster KIND\n"
            r"  received: --scheduler tcp://127.0.0.1:9 --cluster slurm\n"
            r"  fix: drop one of them: --scheduler connects to a running cluster, --cluster "
            r"starts one",
        ),
        connect("tcp://127.0.0.1:9", "slurm", name="search", gpus_per_trial=0),
    ):
        pass


def test_kubernetes_without_an_image_says_which_setting_to_set() -> None:
    with (
        dask.config.set({"morphml.cluster.image": None}),
        pytest.raises(
            ClusterError,
            match=r"no image for the Kubernetes workers\n"
            r"  expected: the image built from clusters/kubernetes/Dockerfile\n"
            r"  received: morphml.cluster.image is null\n"
            r"  fix: set DASK_MORPHML__CLUSTER__IMAGE=registry/morphml-dask:TAG",
        ),
        connect(None, "kubernetes", name="search", gpus_per_trial=1),
    ):
        pass


def test_the_local_kind_leaves_the_cluster_to_the_search() -> None:
    with connect(None, "local", name="search", gpus_per_trial=0) as client:
        assert client is None
