"""Shared fixtures: a real S3 server (moto, over HTTP on 127.0.0.1) for storage tests, a
local cluster that serves the morphml dashboard page, and the scripts of `benchmarks/`
loaded as modules or run as commands."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
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


BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture(scope="session")
def benchmark_module() -> Callable[[str], ModuleType]:
    """Load ``benchmarks/<name>.py`` as the module ``<name>`` (once per session)."""

    def load(name: str) -> ModuleType:
        if name in sys.modules:
            loaded: ModuleType = sys.modules[name]
            return loaded
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def run_benchmark() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``benchmarks/<name>.py ARGS...`` with this Python; its completed process."""

    def run(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        script = str(BENCHMARKS / f"{name}.py")
        return subprocess.run(
            [sys.executable, script, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


# -- on CI nothing skips -----------------------------------------------------------------------

# Doctest examples marked +SKIP (they need a cluster or a GPU) are the only skips CI accepts.
_DOCTEST_SKIP = "all tests skipped by +SKIP option"
_skipped: list[str] = []


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if _DOCTEST_SKIP not in reason:
            _skipped.append(f"{report.nodeid}: {reason}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On CI (``CI`` set), a skipped test fails the run: CI provides every real component
    (scripts/run-tests.sh), so a skip there means a test did not run that should have."""
    if _skipped and _on_ci():
        listed = "\n  ".join(_skipped)
        print(f"\nCI is set and {len(_skipped)} test(s) skipped; none may:\n  {listed}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
