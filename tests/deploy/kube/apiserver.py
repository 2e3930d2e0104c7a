"""An in-memory Kubernetes API for real clients (kopf, kr8s, kubernetes): kmock's
`KubernetesEmulator` with what those clients need and kmock 0.8 lacks.

kmock keeps the objects (`kmock.Object`, with their history) and serves discovery; this
subclass parses the paths itself (``/api/v1/namespaces[/name]`` are objects, a trailing slash
is ignored) and serves list, watch, get, create, patch, replace and delete with: label and
field selectors, ``kind`` and ``apiVersion`` in lists, ``uid``, ``creationTimestamp``,
``resourceVersion`` and ``generation`` on objects, ``generateName``, JSON and merge patches,
``null`` fields pruned (the dask-kubernetes operator copies fields as they are and fails on
``env: null``), and the core group's ``groupVersion`` "v1". It is no garbage collector and
no scheduler: `kube.kubelet.Kubelet` plays those parts.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

pytest.importorskip(
    "kmock",
    reason="the emulated Kubernetes needs kmock and pytest-asyncio: "
    "pip install 'kmock>=0.8' 'pytest-asyncio>=1.0'",
    exc_type=ImportError,
)
# Imported after the skip: a missing kmock skips the tests instead of failing collection.
import aiohttp.web
import kmock

__all__ = ["RESOURCES", "KubernetesApi"]

_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
# (group/version/plural, kind, namespaced, subresources): what the operator, its clients and
# the kubelet use.
RESOURCES: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = (
    ("v1/namespaces", "Namespace", False, ("status",)),
    ("v1/nodes", "Node", False, ("status",)),
    ("v1/pods", "Pod", True, ("status", "log")),
    ("v1/services", "Service", True, ("status",)),
    ("v1/secrets", "Secret", True, ()),
    ("v1/events", "Event", True, ()),
    ("apps/v1/deployments", "Deployment", True, ("status", "scale")),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False, ()),
    ("kubernetes.dask.org/v1/daskclusters", "DaskCluster", True, ("status",)),
    ("kubernetes.dask.org/v1/daskworkergroups", "DaskWorkerGroup", True, ("status", "scale")),
    ("kubernetes.dask.org/v1/daskjobs", "DaskJob", True, ("status",)),
    ("kubernetes.dask.org/v1/daskautoscalers", "DaskAutoscaler", True, ("status",)),
)

_Key = tuple[Any, str | None, str]


def _prune_nulls(value: Any) -> Any:
    """The value without ``null`` entries in its mappings (as a real API server stores it)."""
    if isinstance(value, Mapping):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def _parse_path(path: str) -> tuple[str, str, str | None, str | None, str | None, str | None]:
    """(group, version, namespace, plural, name, subresource) of an API path; plural is None
    for discovery paths and group is "-" for paths outside ``/api`` and ``/apis``."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 2 and parts[0] == "apis":
        group, version, rest = parts[1], (parts[2:3] or [""])[0], parts[3:]
    else:
        return "-", "", None, None, None, None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    return group, version, namespace, plural, name, "/".join(rest[2:]) or None


def _label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """A test of labels for a label selector (``a=b``, ``a==b``, ``a!=b``, ``a in (b,c)``,
    ``a notin (b)``, ``a``, ``!a``)."""
    # (key, operator, values): each term of the selector.
    terms: list[tuple[str, str, frozenset[str]]] = []
    for term in (t.strip() for t in re.findall(r"[^,(]+(?:\([^)]*\))?", selector)):
        match = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term)
        if match:
            values = frozenset(v.strip() for v in match[3].split(","))
            terms.append((match[1], match[2], values))
        elif "!=" in term:
            key, value = term.split("!=", 1)
            terms.append((key.strip(), "notin", frozenset({value.strip()})))
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            terms.append((key.strip(), "in", frozenset({value.strip()})))
        elif term:
            terms.append(
                (term.lstrip("!"), "absent" if term.startswith("!") else "exists", frozenset())
            )

    def check(labels: Mapping[str, str]) -> bool:
        for key, operator, values in terms:
            if operator in ("exists", "absent"):
                if (key in labels) != (operator == "exists"):
                    return False
            elif (labels.get(key) in values) != (operator == "in"):
                return False
        return True

    return check


def _field_matcher(selector: str) -> Callable[[Mapping[str, Any]], bool]:
    """A test of objects for a field selector (``status.phase=Running``, ``a!=b``)."""
    tests: list[tuple[list[str], str, bool]] = []
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        negate = "!=" in term
        path, value = term.split("!=" if negate else "=", 1)
        tests.append((path.lstrip("=").split("."), value.lstrip("="), negate))

    def check(obj: Mapping[str, Any]) -> bool:
        for path, value, negate in tests:
            found: Any = obj
            for part in path:
                found = found.get(part) if isinstance(found, Mapping) else None
            if (str(found) == value) == negate:
                return False
        return True

    return check


class KubernetesApi(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator, fixed for real clients (see the module docstring).

    Serve it with ``kmock.Server(api)`` inside ``async with api:``; `add` puts objects in
    from the same event loop.
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._version = 0
        self._watchers: list[tuple[Any, asyncio.Queue[dict[str, Any]]]] = []
        self._kinds: dict[Any, tuple[str, bool]] = {}
        for path, kind, namespaced, subresources in RESOURCES:
            key = kmock.resource(path)
            self.resources[key] = kmock.ResourceInfo(
                kind=kind,
                singular=kind.lower(),
                namespaced=namespaced,
                verbs=_VERBS,
                subresources=subresources,
            )
            self._kinds[key] = (kind, namespaced)

    # -- parsing -------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            request = await self._parse(raw_request)
            self._requests.append(request)
            if request.resource is not None and request.resource.plural is not None:
                return await self._serve(request)
            response: aiohttp.web.StreamResponse = await super()._handle(request)
            return response
        except kmock.KubernetesError as error:
            failed: aiohttp.web.StreamResponse = await self._render_error(error)
            return failed

    async def _parse(self, raw_request: aiohttp.web.BaseRequest) -> Any:
        body = await raw_request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        path = raw_request.path.rstrip("/") or "/"
        group, version, namespace, plural, name, subresource = _parse_path(path)
        method = raw_request.method.upper()
        query = dict(raw_request.query)
        return kmock.Request(
            id=len(self._requests),
            raw_request=raw_request,
            url=raw_request.url.with_path(path),
            method=method,
            params=query,
            headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies),
            data=data,
            body=body,
            text=body.decode(errors="replace"),
            action=None,
            resource=None
            if group == "-"
            else kmock.resource(group=group, version=version or None, plural=plural),
            namespace=namespace,
            name=name,
            subresource=subresource,
        )

    # -- discovery fixes -----------------------------------------------------------------

    async def _serve_version(self, request: Any) -> Any:
        served: dict[str, Any] = dict(await super()._serve_version(request))  # type: ignore[arg-type]
        if request.resource.group == "":
            served["groupVersion"] = request.resource.version  # "v1", not "/v1"
        return served

    async def _serve_server_version(self, request: Any) -> Any:
        served: dict[str, Any] = dict(await super()._serve_server_version(request))  # type: ignore[arg-type]
        # A version that kr8s supports (kmock reports 1.26), so that it does not warn.
        served.update(minor="32", gitVersion="v1.32.0")
        return served

    # -- objects -------------------------------------------------------------------------

    async def _serve(self, request: Any) -> aiohttp.web.StreamResponse:
        resource = kmock.resource(request.resource)
        if resource not in self._kinds:
            raise kmock.KubernetesResourceNotFoundError()
        method, named = request.method.value.upper(), request.name is not None
        if method == "GET" and request.params.get("watch") in ("true", "1"):
            return await self._watch(request, resource)
        if method == "GET" and not named:
            return aiohttp.web.json_response(self._list(request, resource))
        if method == "POST" and not named:
            created = await self.add(resource, request.data or {}, namespace=request.namespace)
            return aiohttp.web.json_response(created, status=201)
        if not named:
            raise kmock.KubernetesError(status=405, reason="MethodNotAllowed")
        key: _Key = (resource, request.namespace, request.name)
        if method == "GET":
            return aiohttp.web.json_response(self._get(key))
        if method in ("PATCH", "PUT"):
            obj = await self.change(key, request.data, replace=method == "PUT")
            return aiohttp.web.json_response(obj)
        if method == "DELETE":
            return aiohttp.web.json_response(await self.remove(key))
        raise kmock.KubernetesError(status=405, reason="MethodNotAllowed")

    def _get(self, key: _Key) -> dict[str, Any]:
        if key not in self.objects or self.objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return dict(self.objects[key].raw)

    def _matching(self, request: Any) -> Callable[[Mapping[str, Any]], bool]:
        labels = _label_matcher(request.params.get("labelSelector", ""))
        fields = _field_matcher(request.params.get("fieldSelector", ""))

        def check(obj: Mapping[str, Any]) -> bool:
            meta = obj.get("metadata", {})
            return (
                (request.namespace is None or meta.get("namespace") == request.namespace)
                and (request.name is None or meta.get("name") == request.name)
                and labels(meta.get("labels", {}))
                and fields(obj)
            )

        return check

    def objects_of(self, resource: Any) -> Iterable[dict[str, Any]]:
        """The live objects of a resource (``"v1/pods"``, ...), in all namespaces."""
        resource = kmock.resource(resource)
        for (res, _, _), obj in list(self.objects.items()):
            if res == resource and not obj.deleted:
                yield copy.deepcopy(dict(obj.raw))

    def get_object(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        """One live object, or None."""
        try:
            return copy.deepcopy(self._get((kmock.resource(resource), namespace, name)))
        except kmock.KubernetesError:
            return None

    def _list(self, request: Any, resource: Any) -> dict[str, Any]:
        check = self._matching(request)
        kind, _ = self._kinds[resource]
        return {
            "apiVersion": self._api_version(resource),
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(self._version)},
            "items": [obj for obj in self.objects_of(resource) if check(obj)],
        }

    async def _watch(self, request: Any, resource: Any) -> aiohttp.web.StreamResponse:
        check = self._matching(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        watcher = (resource, queue)
        self._watchers.append(watcher)
        response = aiohttp.web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request._raw_request)
        since = int(request.params.get("resourceVersion") or 0)
        try:
            for obj in self.objects_of(resource):
                if check(obj) and int(obj["metadata"]["resourceVersion"]) > since:
                    await response.write(json.dumps({"type": "ADDED", "object": obj}).encode())
                    await response.write(b"\n")
            timeout = float(request.params.get("timeoutSeconds") or 3600)
            async with asyncio.timeout(timeout):
                while True:
                    event = await queue.get()
                    if check(event["object"]):
                        await response.write(json.dumps(event).encode() + b"\n")
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self._watchers.remove(watcher)
        return response

    def _api_version(self, resource: Any) -> str:
        return resource.version if resource.group == "" else f"{resource.group}/{resource.version}"

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _notify(self, resource: Any, kind: str, obj: Mapping[str, Any]) -> None:
        for watched, queue in self._watchers:
            if watched == resource:
                queue.put_nowait({"type": kind, "object": copy.deepcopy(dict(obj))})

    async def add(
        self, resource: Any, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Create an object as ``POST`` does; return it as stored."""
        resource = kmock.resource(resource)
        kind, namespaced = self._kinds[resource]
        obj: dict[str, Any] = _prune_nulls(copy.deepcopy(dict(body)))
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        obj.setdefault("apiVersion", self._api_version(resource))
        obj.setdefault("kind", kind)
        key: _Key = (resource, meta.get("namespace"), meta["name"])
        async with self._lock:
            if key in self.objects and not self.objects[key].deleted:
                raise kmock.KubernetesError(status=409, reason="AlreadyExists")
            meta.update(
                uid=str(uuid.uuid4()),
                creationTimestamp=_now(),
                resourceVersion=self._next_version(),
                generation=1,
            )
            if key in self.objects:
                self.objects[key].create(obj)
            else:
                self.objects[key] = obj
            self._notify(resource, "ADDED", obj)
        return obj

    async def change(self, key: _Key, patch: Any, *, replace: bool = False) -> dict[str, Any]:
        """Patch (merge or JSON patch) or replace an object; return it as stored."""
        key = (kmock.resource(key[0]), key[1], key[2])
        async with self._lock:
            old = self._get(key)
            if replace:
                new = _prune_nulls(copy.deepcopy(patch))
                new["metadata"] = {**new.get("metadata", {}), **_identity(old)}
                self.objects[key].create(new)  # a new version holding only the new content
            else:
                self.objects[key].patch(patch)
            new = dict(self.objects[key].raw)
            meta = new["metadata"]
            if new.get("spec") != old.get("spec"):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            meta["resourceVersion"] = self._next_version()
            self.objects[key].patch({"metadata": meta})
            stored = dict(self.objects[key].raw)
            if stored["metadata"].get("deletionTimestamp") and not stored["metadata"].get(
                "finalizers"
            ):
                self.objects[key].delete()
                self._notify(key[0], "DELETED", stored)
            else:
                self._notify(key[0], "MODIFIED", stored)
        return stored

    async def remove(self, key: _Key) -> dict[str, Any]:
        """Delete an object (or mark it, while it has finalizers); return its last state."""
        key = (kmock.resource(key[0]), key[1], key[2])
        async with self._lock:
            obj = self._get(key)
            if obj["metadata"].get("finalizers"):
                if not obj["metadata"].get("deletionTimestamp"):
                    self.objects[key].patch(
                        {
                            "metadata": {
                                "deletionTimestamp": _now(),
                                "resourceVersion": self._next_version(),
                            }
                        }
                    )
                    obj = dict(self.objects[key].raw)
                    self._notify(key[0], "MODIFIED", obj)
                return obj
            obj["metadata"]["resourceVersion"] = self._next_version()
            self.objects[key].delete()
            self._notify(key[0], "DELETED", obj)
        return obj


def _now() -> str:
    """The time now as Kubernetes writes timestamps (RFC 3339, UTC, seconds)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _identity(meta_of: Mapping[str, Any]) -> dict[str, Any]:
    meta = meta_of["metadata"]
    return {k: meta[k] for k in ("uid", "creationTimestamp", "namespace", "name") if k in meta}
