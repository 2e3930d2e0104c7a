"""Shared fixtures: a real S3 server (moto, over HTTP on 127.0.0.1) for storage tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server started for this test session."""
    pytest.importorskip("moto", reason="the S3 tests need moto[server] (the test extra)")
    pytest.importorskip("s3fs", reason="the S3 tests need s3fs (the s3 extra)")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


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
