"""Shared fixtures: a real S3 server (moto, over HTTP on 127.0.0.1) for storage tests, and a
local cluster that serves the morphml dashboard page."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from distributed import Client


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server started for this test session."""
    pytest.importorskip("moto", reason="the S3 tests need moto[server] (the test extra)")
    pytest.importorskip("s3fs", reason="the S3 tests need s3fs (the s3 extra)")
    from morphml_dask.testing import moto_s3_server

    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_options(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """storage_options for s3fs against the session's server."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return {"key": "testing", "secret": "testing", "endpoint_url": s3_endpoint}


@pytest.fixture
def s3_url(s3_options: dict[str, Any]) -> str:
    """A fresh, empty bucket and prefix on the S3 server, as an s3:// URL."""
    import s3fs

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**s3_options).mkdir(bucket)
    return f"s3://{bucket}/experiment"


@pytest.fixture(autouse=True)
def _no_aws_metadata_lookups() -> None:
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def dashboard_client() -> Iterator[Client]:
    """A client of a LocalCluster (2 worker processes x 2 threads) whose scheduler serves
    the morphml dashboard page."""
    from morphml_dask.dashboard import enable
    from morphml_dask.testing import local_client

    with enable(), local_client(n_workers=2, threads_per_worker=2) as client:
        yield client
