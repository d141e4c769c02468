"""An in-memory HTTP emulation of the Kubernetes API server (emulated, not a real kube-apiserver).

Speaks the real REST paths, so the kubernetes Python client works against it unchanged:

* `resource.k8s.io/v1` ResourceSlices (cluster-scoped): `GET/POST /apis/resource.k8s.io/v1/
  resourceslices` (list with `labelSelector` and `fieldSelector` on `spec.nodeName`,
  `spec.driver`, `metadata.name`), `GET/PUT/DELETE …/resourceslices/{name}`.
* core v1 Nodes: `GET/POST /api/v1/nodes`, `GET/DELETE /api/v1/nodes/{name}`.

Semantics kept from the real server: `metadata.generateName` (5 random suffix characters),
`uid`, `creationTimestamp`, a global `resourceVersion` counter (PUT with a stale one → 409
Conflict; DELETE preconditions on uid/resourceVersion → 409), `metadata.generation` bumped when
the spec changes, 404 NotFound / 409 AlreadyExists / 422 Invalid as v1 `Status` objects, and a
subset of the ResourceSlice validation (device names, ≤128/≤64 devices, ≤32 attributes, one value
per attribute, strings ≤64). Every successful write is counted (`writes`, per verb) so tests can
assert write counts; `fail_next(verb, code)` injects errors (e.g. a 409 on the next PUT).
It grows into the lab's API server; it never talks to anything else.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import string
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from knd.api.limits import (
    MAX_ATTRIBUTE_STRING_LEN,
    MAX_ATTRIBUTES_AND_CAPACITIES_PER_DEVICE,
    check_qualified_name,
    is_dns_label,
    max_devices_per_slice,
)

SLICES = "/apis/resource.k8s.io/v1/resourceslices"
NODES = "/api/v1/nodes"
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_SUFFIX = string.ascii_lowercase + string.digits
_REASONS = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    422: "Invalid",
    500: "InternalError",
}


class HttpError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason or _REASONS.get(code, "Unknown")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selector_terms(text: str) -> list[tuple[str, str, str]]:
    """`a=b,c!=d,e==f` → [(key, op, value)]; a bare key means "exists" (labels)."""
    terms = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "!=" in part:
            k, v = part.split("!=", 1)
            terms.append((k.strip(), "!=", v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            terms.append((k.strip(), "=", v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            terms.append((k.strip(), "=", v.strip()))
        else:
            terms.append((part, "exists", ""))
    return terms


def _field(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for key in path.split("."):
        cur = cur.get(key) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def _matches(obj: dict[str, Any], label_sel: str, field_sel: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for k, op, v in _selector_terms(label_sel):
        if op == "exists" and k not in labels:
            return False
        if op == "=" and labels.get(k) != v:
            return False
        if op == "!=" and labels.get(k) == v:
            return False
    for k, op, v in _selector_terms(field_sel):
        if k not in ("spec.nodeName", "spec.driver", "metadata.name"):
            raise HttpError(400, f'field label not supported: "{k}"')
        value = _field(obj, k)
        if (op == "=" and value != v) or (op == "!=" and value == v):
            return False
    return True


def validate_slice(obj: dict[str, Any]) -> list[str]:
    """A subset of the resource.k8s.io/v1 ResourceSlice validation (emulated)."""
    errs: list[str] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return ["spec: Required value"]
    if not spec.get("driver"):
        errs.append("spec.driver: Required value")
    pool = spec.get("pool") or {}
    if not pool.get("name"):
        errs.append("spec.pool.name: Required value")
    if int(pool.get("resourceSliceCount") or 0) <= 0:
        errs.append("spec.pool.resourceSliceCount: must be greater than zero")
    selectors = [
        k for k in ("nodeName", "nodeSelector", "allNodes", "perDeviceNodeSelection") if spec.get(k)
    ]
    if len(selectors) != 1:
        errs.append("spec: exactly one of nodeName, nodeSelector, allNodes, perDeviceNodeSelection")
    devices = spec.get("devices") or []
    restricted = any(d.get("taints") or d.get("consumesCounters") for d in devices) or any(
        any(k in v for k in ("ints", "bools", "strings", "versions"))
        for d in devices
        for v in (d.get("attributes") or {}).values()
    )
    cap = max_devices_per_slice(restricted)
    if len(devices) > cap:
        errs.append(f"spec.devices: Too many: {len(devices)}: must have at most {cap} items")
    seen: set[str] = set()
    for i, d in enumerate(devices):
        name = d.get("name", "")
        if not is_dns_label(name):
            errs.append(f"spec.devices[{i}].name: Invalid value: {name!r}: must be a DNS label")
        if name in seen:
            errs.append(f"spec.devices[{i}].name: Duplicate value: {name!r}")
        seen.add(name)
        attrs = d.get("attributes") or {}
        total = len(attrs) + len(d.get("capacity") or {})
        if total > MAX_ATTRIBUTES_AND_CAPACITIES_PER_DEVICE:
            errs.append(
                f"spec.devices[{i}].attributes: Too many: {total}: must have at most "
                f"{MAX_ATTRIBUTES_AND_CAPACITIES_PER_DEVICE} attributes and capacities"
            )
        for key, val in attrs.items():
            errs.extend(
                f"spec.devices[{i}].attributes[{key}]: {p}" for p in check_qualified_name(key)
            )
            set_fields = [k for k, v in (val or {}).items() if v is not None]
            if len(set_fields) != 1:
                errs.append(f"spec.devices[{i}].attributes[{key}]: exactly one value is required")
            s = (val or {}).get("string")
            if isinstance(s, str) and len(s) > MAX_ATTRIBUTE_STRING_LEN:
                errs.append(
                    f"spec.devices[{i}].attributes[{key}].string: Too long: may not be more "
                    f"than {MAX_ATTRIBUTE_STRING_LEN} bytes"
                )
    return errs


class ApiServerState:
    """The store and the counters (thread-safe; used by the HTTP handler and by tests)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rv = 0
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"resourceslices": {}, "nodes": {}}
        self.writes_by_verb: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []
        self._fail: list[tuple[str, int]] = []

    @property
    def writes(self) -> int:
        return sum(self.writes_by_verb.values())

    def reset_counts(self) -> None:
        with self.lock:
            self.writes_by_verb.clear()
            self.requests.clear()

    def fail_next(self, verb: str, code: int = 409) -> None:
        """Make the next `verb` (POST/PUT/DELETE) request fail with `code`."""
        with self.lock:
            self._fail.append((verb.upper(), code))

    def _take_failure(self, verb: str) -> int | None:
        for i, (v, code) in enumerate(self._fail):
            if v == verb:
                del self._fail[i]
                return code
        return None

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    # -- operations (called with the lock held by the handler) ----------------------------------

    def create(
        self, kind: str, obj: dict[str, Any], api_version: str, type_kind: str
    ) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise HttpError(
                    422, "metadata.name: Required value: name or generateName is required"
                )
            for _ in range(10):
                name = prefix + "".join(secrets.choice(_SUFFIX) for _ in range(5))
                if name not in self.objects[kind]:
                    break
            meta["name"] = name
        name = meta["name"]
        if len(name) > 253 or not _NAME_RE.match(name):
            raise HttpError(422, f"metadata.name: Invalid value: {name!r}: must be a DNS subdomain")
        if name in self.objects[kind]:
            raise HttpError(409, f'{kind} "{name}" already exists', "AlreadyExists")
        if kind == "resourceslices":
            errs = validate_slice(obj)
            if errs:
                raise HttpError(422, f'ResourceSlice "{name}" is invalid: ' + "; ".join(errs))
        obj["apiVersion"], obj["kind"] = api_version, type_kind
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            resourceVersion=self._next_rv(),
            generation=1,
        )
        self.objects[kind][name] = obj
        return copy.deepcopy(obj)

    def update(self, kind: str, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        old = self.objects[kind].get(name)
        if old is None:
            raise HttpError(404, f'{kind} "{name}" not found')
        meta = obj.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise HttpError(400, "the name of the object does not match the name on the URL")
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise HttpError(
                409,
                f'Operation cannot be fulfilled on {kind} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
            )
        if kind == "resourceslices":
            errs = validate_slice(obj)
            if errs:
                raise HttpError(422, f'ResourceSlice "{name}" is invalid: ' + "; ".join(errs))
            for immutable in ("driver", "nodeName"):
                if obj["spec"].get(immutable) != old["spec"].get(immutable):
                    raise HttpError(422, f"spec.{immutable}: Invalid value: field is immutable")
        old_meta = old["metadata"]
        meta.update(
            name=name,
            uid=old_meta["uid"],
            creationTimestamp=old_meta["creationTimestamp"],
            resourceVersion=self._next_rv(),
            generation=old_meta.get("generation", 1) + (obj.get("spec") != old.get("spec")),
        )
        meta.pop("generateName", None) if "generateName" not in old_meta else None
        obj["apiVersion"], obj["kind"] = old["apiVersion"], old["kind"]
        self.objects[kind][name] = obj
        return copy.deepcopy(obj)

    def delete(self, kind: str, name: str, opts: dict[str, Any]) -> dict[str, Any]:
        old = self.objects[kind].get(name)
        if old is None:
            raise HttpError(404, f'{kind} "{name}" not found')
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
            raise HttpError(409, f"Precondition failed: UID in precondition: {pre['uid']}")
        rv = pre.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise HttpError(409, f"Precondition failed: ResourceVersion in precondition: {rv}")
        del self.objects[kind][name]
        self._next_rv()
        return copy.deepcopy(old)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, err: HttpError) -> None:
        self._send(
            err.code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": str(err),
                "reason": err.reason,
                "code": err.code,
            },
        )

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HttpError(400, f"invalid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise HttpError(400, "body must be a JSON object")
        return obj

    def _route(self) -> tuple[str, str | None, str, str, dict[str, list[str]]]:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path.rstrip("/")
        for base, kind, api_version, type_kind in (
            (SLICES, "resourceslices", "resource.k8s.io/v1", "ResourceSlice"),
            (NODES, "nodes", "v1", "Node"),
        ):
            if path == base:
                return kind, None, api_version, type_kind, query
            if path.startswith(base + "/") and "/" not in path[len(base) + 1 :]:
                return kind, path[len(base) + 1 :], api_version, type_kind, query
        raise HttpError(404, f"the server could not find the requested resource ({url.path})")

    def _handle(self, verb: str) -> None:
        state = self.server.state
        try:
            kind, name, api_version, type_kind, query = self._route()
            body = self._body() if verb in ("POST", "PUT", "DELETE") else {}
            with state.lock:
                state.requests.append((verb, self.path))
                if verb in ("POST", "PUT", "DELETE"):
                    code = state._take_failure(verb)
                    if code is not None:
                        raise HttpError(code, f"injected failure for {verb} {self.path}")
                code, result = self._dispatch(
                    state, verb, kind, name, api_version, type_kind, query, body
                )
                if verb in ("POST", "PUT", "DELETE"):
                    state.writes_by_verb[verb] += 1
        except HttpError as err:
            self._status(err)
            return
        self._send(code, result)

    @staticmethod
    def _dispatch(
        state: ApiServerState,
        verb: str,
        kind: str,
        name: str | None,
        api_version: str,
        type_kind: str,
        query: dict[str, list[str]],
        body: dict[str, Any],
    ) -> tuple[int, dict[str, Any]]:
        store = state.objects[kind]
        if verb == "GET" and name is None:
            label_sel = (query.get("labelSelector") or [""])[0]
            field_sel = (query.get("fieldSelector") or [""])[0]
            items = [
                copy.deepcopy(o)
                for _, o in sorted(store.items())
                if _matches(o, label_sel, field_sel)
            ]
            return 200, {
                "apiVersion": api_version,
                "kind": type_kind + "List",
                "metadata": {"resourceVersion": str(state.rv)},
                "items": items,
            }
        if verb == "GET" and name is not None:
            if name not in store:
                raise HttpError(404, f'{kind} "{name}" not found')
            return 200, copy.deepcopy(store[name])
        if verb == "POST" and name is None:
            return 201, state.create(kind, body, api_version, type_kind)
        if verb == "PUT" and name is not None:
            return 200, state.update(kind, name, body)
        if verb == "DELETE" and name is not None:
            return 200, state.delete(kind, name, body)
        raise HttpError(405, f"{verb} is not supported on {kind}")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ApiServerState


class FakeApiServer:
    """Run the emulated API server on 127.0.0.1 (an ephemeral port by default) in a thread.

    Use as a context manager; `url` is the base URL for the kubernetes client.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = ApiServerState()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.state = self.state
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def writes(self) -> int:
        return self.state.writes

    def start(self) -> FakeApiServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="fake-apiserver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_node(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """Create a Node directly (not counted as a write)."""
        with self.state.lock:
            obj = {"metadata": {"name": name, "labels": labels or {}}, "spec": {}, "status": {}}
            return self.state.create("nodes", obj, "v1", "Node")

    def slices(self) -> list[dict[str, Any]]:
        """All stored ResourceSlices (copies), sorted by name."""
        with self.state.lock:
            return [
                copy.deepcopy(o) for _, o in sorted(self.state.objects["resourceslices"].items())
            ]

    def fail_next(self, verb: str, code: int = 409) -> None:
        self.state.fail_next(verb, code)


__all__ = ["ApiServerState", "FakeApiServer", "HTTPStatus", "validate_slice"]
