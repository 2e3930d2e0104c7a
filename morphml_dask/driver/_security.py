"""TLS for the Dask comms of a search: one CA, one certificate and key for every process.

Dask reads its TLS settings from ``distributed.comm.tls.*`` and
``distributed.comm.require-encryption``; `Client`, `LocalCluster` and ``dask scheduler`` /
``dask worker`` (``--tls-ca-file --tls-cert --tls-key``) all honour them. `tls_settings`
turns the three files a user has into those settings, after checking that they can be read,
so that a typo is an error here rather than a handshake failure later.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from morphml_dask.exceptions import SecurityError

__all__ = ["tls_settings"]


def tls_settings(ca_file: str, cert: str, key: str) -> dict[str, object]:
    """The dask.config settings that make clients, schedulers and workers of this process
    speak TLS with ``cert``/``key``, trusting only certificates signed by ``ca_file``."""
    for role, path in (("CA certificate", ca_file), ("certificate", cert), ("key", key)):
        if not Path(path).is_file():
            raise SecurityError(
                f"the TLS {role} {path!r} does not exist",
                expected=f"a readable PEM file with the {role}",
                received=repr(path),
                fix="pass the paths of the CA certificate, the certificate and its key "
                "(--tls-ca-file, --tls-cert, --tls-key)",
            )
    try:
        context = ssl.create_default_context(cafile=ca_file)
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as error:
        raise SecurityError(
            "the TLS files do not form a usable certificate",
            expected="PEM files: a CA certificate, a certificate and the key that matches it",
            received=f"{type(error).__name__}: {error}",
            fix="check that --tls-key is the private key of --tls-cert, and that all three are PEM",
        ) from error
    settings: dict[str, object] = {
        "distributed.comm.require-encryption": True,
        "distributed.comm.tls.ca-file": ca_file,
    }
    for role in ("client", "scheduler", "worker"):
        settings[f"distributed.comm.tls.{role}.cert"] = cert
        settings[f"distributed.comm.tls.{role}.key"] = key
    return settings
