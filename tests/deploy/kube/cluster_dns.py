"""Cluster DNS for the operator process: names of Services (``<service>.<namespace>``,
``...svc``, ``...svc.cluster.local``) resolve to 127.0.0.1, where the kubelet
(`kube.kubelet.Kubelet`) serves them on the ports written in the Service.

kopf loads this file before the operator's module (``kopf run cluster_dns.py -m
dask_kubernetes.operator.controller``); it patches ``socket.getaddrinfo``, which asyncio,
aiohttp and tornado resolve through, only where ``EMULATED_CLUSTER_DNS=1`` is set (so that
importing it elsewhere, as pytest's doctest collection does, changes nothing).
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

__all__ = ["DNS_SWITCH"]

DNS_SWITCH = "EMULATED_CLUSTER_DNS"

_SERVICE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\.[a-z0-9-]+(\.svc(\.cluster\.local)?)?$")
_resolve = socket.getaddrinfo


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and _SERVICE.match(name) and not name.replace(".", "").isdigit():
        host = "127.0.0.1"
    return _resolve(host, *args, **kwargs)


if os.environ.get(DNS_SWITCH) == "1":
    socket.getaddrinfo = _getaddrinfo
