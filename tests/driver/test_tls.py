"""TLS end to end: a scheduler and workers started by ``dask`` with certificates made here,
a search through ``morphml run --scheduler tls://... --tls-*``, and clients that lack the
certificate turned away."""

from __future__ import annotations

import datetime
import gc
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from distributed import Client
from distributed.comm.core import CommClosedError
from distributed.security import Security

from morphml_dask.cli import main
from morphml_dask.storage import open_store

BIN = Path(sys.executable).parent


def _authority(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA named ``name`` and one certificate for 127.0.0.1 it signed: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / f"{name}-ca.pem", folder / f"{name}-cert.pem", folder / f"{name}-key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _tls_flags(ca: Path, cert: Path, key: Path) -> list[str]:
    return ["--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``dask scheduler`` and ``dask worker`` (2 processes) speaking only TLS."""
    folder = tmp_path_factory.mktemp("tls")
    files = _authority(folder, "ours")
    flags = _tls_flags(*files)
    scheduler_file = folder / "scheduler.json"
    environment = {**os.environ, "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}
    scheduler = subprocess.Popen(
        [
            *(BIN / "dask", "scheduler", "--protocol", "tls", "--host", "127.0.0.1"),
            *("--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file), *flags),
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text():
            assert time.monotonic() < deadline and scheduler.poll() is None, "no scheduler"
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        workers = subprocess.Popen(
            [
                *(BIN / "dask", "worker", address, "--nworkers", "2", "--nthreads", "1"),
                *("--host", "127.0.0.1", "--no-dashboard", *flags),
            ],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        security = Security(  # type: ignore[no-untyped-call]
            tls_ca_file=str(files[0]),
            tls_client_cert=str(files[1]),
            tls_client_key=str(files[2]),
            require_encryption=True,
        )
        with Client(address, security=security, timeout=60) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(2, timeout=60)
        yield address, folder
    finally:
        for process in (workers, scheduler):
            if process is not None:
                process.send_signal(signal.SIGINT)
        for process in (workers, scheduler):
            if process is not None:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()


def test_a_search_runs_over_tls(tls_cluster: tuple[str, Path], tmp_path: Path) -> None:
    address, folder = tls_cluster
    assert address.startswith("tls://")
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        yaml.safe_dump(
            {
                "name": "over-tls",
                "space": {"name": "nb201-cell"},
                "task": {"name": "nb201-tabular", "time_scale": 0.0002},
                "optimizer": {"name": "random-search", "seed": 0},
                "max_trials": 20,
                "store": str(tmp_path / "store"),
            }
        )
    )
    flags = _tls_flags(folder / "ours-ca.pem", folder / "ours-cert.pem", folder / "ours-key.pem")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "morphml_dask.cli",
            "run",
            str(experiment),
            "--scheduler",
            address,
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = open_store(str(tmp_path / "store")).trials()
    assert len(table) == 20 and (table["state"] == "complete").all()
    assert table["worker"].dropna().str.startswith("tls://127.0.0.1:").all()


def test_a_client_without_the_certificate_cannot_connect(
    tls_cluster: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = tls_cluster
    with pytest.raises(TypeError, match="TLS expects a `ssl_context` argument"):
        Client(address, timeout=5, set_as_default=False)  # type: ignore[no-untyped-call]
    # A client that failed to connect is finalized by the garbage collector, and its
    # __del__ takes the lock that all of distributed's loop runners share: collected while
    # the next client starts (holding that lock), it would deadlock. Collect it here.
    gc.collect()
    with pytest.raises(CommClosedError, match="Connection reset by peer"):
        Client(address.replace("tls://", "tcp://"), timeout=5, set_as_default=False)  # type: ignore[no-untyped-call]
    gc.collect()
    rogue = _authority(tmp_path, "rogue")  # a valid certificate from a CA the cluster ignores
    security = Security(  # type: ignore[no-untyped-call]
        tls_ca_file=str(rogue[0]),
        tls_client_cert=str(rogue[1]),
        tls_client_key=str(rogue[2]),
        require_encryption=True,
    )
    with pytest.raises(CommClosedError, match="TLS certificate does not match"):
        Client(address, security=security, timeout=5, set_as_default=False)  # type: ignore[no-untyped-call]
    gc.collect()

    # The CLI says what is wrong instead of printing a traceback.
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        yaml.safe_dump(
            {
                "name": "no-cert",
                "space": {"name": "nb201-cell"},
                "task": {"name": "nb201-tabular"},
                "optimizer": {"name": "random-search"},
                "max_trials": 2,
                "store": str(tmp_path / "store"),
            }
        )
    )
    assert main(["run", str(experiment), "--scheduler", address]) == 2
    error = capsys.readouterr().err
    assert f"cannot connect to the Dask scheduler at {address}" in error
    assert "--tls-ca-file" in error
    assert not (tmp_path / "store").exists()


def test_tls_flags_must_come_together_and_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text("name: x\n")
    assert main(["run", str(experiment), "--tls-cert", "a.pem"]) == 2
    assert "TLS needs three files" in capsys.readouterr().err
    missing = ["--tls-ca-file", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem"]
    assert main(["resume", str(tmp_path), *missing]) == 2
    assert "the TLS CA certificate 'ca.pem' does not exist" in capsys.readouterr().err


def test_the_local_cluster_of_a_run_speaks_tls_with_the_flags(
    tls_cluster: tuple[str, Path], tmp_path: Path
) -> None:
    _, folder = tls_cluster
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(
        yaml.safe_dump(
            {
                "name": "local-tls",
                "space": {"name": "nb201-cell"},
                "task": {"name": "nb201-tabular"},
                "optimizer": {"name": "random-search", "seed": 1},
                "max_trials": 8,
                "store": str(tmp_path / "store"),
            }
        )
    )
    flags = _tls_flags(folder / "ours-ca.pem", folder / "ours-cert.pem", folder / "ours-key.pem")
    assert main(["run", str(experiment), *flags]) == 0
    workers = open_store(str(tmp_path / "store")).trials()["worker"].dropna()
    assert len(workers) > 0 and workers.str.startswith("tls://127.0.0.1:").all()
