"""A fake API server for ResourceClaims and Events (EMULATED: no kube-apiserver here).

Speaks the real REST paths over HTTP on loopback, enough for the kubelet side of knd:

* `GET  /apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims/{name}`
* `PATCH .../resourceclaims/{name}/status` with `application/apply-patch+yaml` (server-side
  apply of `status.devices`: list-map keyed by driver/pool/device/shareID; each field manager
  owns the entries it applied, an apply replaces that manager's set; without `force` an entry
  owned by another manager is a 409 conflict; an entry not matching an allocation result is a
  422, as the real validation does). `application/merge-patch+json` replaces status.devices.
* `POST /api/v1/namespaces/{ns}/events` (core/v1 Events)

Claims are stored as JSON dicts (`put_claim`), with `uid`, `resourceVersion`, `generation`
filled in. Test hooks: `fail_patches` (answer the next N status patches with 500), request
counters. Designed to merge into the shared fake (knd.lab.apiserver) later: `ClaimsState`
holds the data and `handle()` returns None for paths it does not serve.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

_CLAIM = re.compile(
    r"^/apis/resource\.k8s\.io/v1/namespaces/([^/]+)/resourceclaims/([^/]+)(/status)?$"
)
_EVENTS = re.compile(r"^/api/v1/namespaces/([^/]+)/events$")

Response = tuple[int, dict[str, Any]]


def _status(code: int, reason: str, message: str) -> Response:
    return code, {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


def _device_key(entry: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(entry.get("driver", "")),
        str(entry.get("pool", "")),
        str(entry.get("device", "")),
        str(entry.get("shareID", "")),
    )


class ClaimsState:
    """Claims, device-status ownership and events; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}
        self.owners: dict[tuple[str, str], dict[tuple[str, str, str, str], set[str]]] = {}
        self.events: list[dict[str, Any]] = []
        self.gets = 0
        self.patches = 0
        self.fail_patches = 0
        self._rv = 0

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def put_claim(self, claim: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace a claim (a new UID unless the caller set one)."""
        obj: dict[str, Any] = json.loads(json.dumps(claim))
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        obj.setdefault("apiVersion", "resource.k8s.io/v1")
        obj.setdefault("kind", "ResourceClaim")
        with self.lock:
            meta["resourceVersion"] = self._next_rv()
            key = (meta["namespace"], meta["name"])
            self.claims[key] = obj
            self.owners.pop(key, None)
        return obj

    def delete_claim(self, namespace: str, name: str) -> None:
        with self.lock:
            self.claims.pop((namespace, name), None)
            self.owners.pop((namespace, name), None)

    def claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.claims.get((namespace, name))
            return json.loads(json.dumps(obj)) if obj is not None else None

    # -- request handling --------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: Mapping[str, list[str]], ctype: str, body: bytes
    ) -> Response | None:
        m = _CLAIM.match(path)
        if m:
            ns, name, sub = m.group(1), m.group(2), m.group(3)
            if method == "GET":
                return self._get(ns, name)
            if method == "PATCH" and sub:
                return self._patch_status(ns, name, query, ctype, body)
            return _status(405, "MethodNotAllowed", f"{method} not supported on {path}")
        m = _EVENTS.match(path)
        if m and method == "POST":
            event = json.loads(body or b"{}")
            event.setdefault("metadata", {})["namespace"] = m.group(1)
            with self.lock:
                self.events.append(event)
            return 201, event
        return None

    def _get(self, ns: str, name: str) -> Response:
        with self.lock:
            self.gets += 1
            obj = self.claims.get((ns, name))
            if obj is None:
                return _status(
                    404, "NotFound", f'resourceclaims.resource.k8s.io "{name}" not found'
                )
            return 200, json.loads(json.dumps(obj))

    def _patch_status(
        self, ns: str, name: str, query: Mapping[str, list[str]], ctype: str, body: bytes
    ) -> Response:
        with self.lock:
            self.patches += 1
            if self.fail_patches > 0:
                self.fail_patches -= 1
                return _status(500, "InternalError", "injected failure")
            obj = self.claims.get((ns, name))
            if obj is None:
                return _status(
                    404, "NotFound", f'resourceclaims.resource.k8s.io "{name}" not found'
                )
            try:
                patch = yaml.safe_load(body) or {}
            except yaml.YAMLError as exc:
                return _status(400, "BadRequest", f"invalid body: {exc}")
            devices = list((patch.get("status") or {}).get("devices") or [])
            status = obj.setdefault("status", {})
            results = ((status.get("allocation") or {}).get("devices") or {}).get("results") or []
            allocated = {
                (str(r.get("driver")), str(r.get("pool")), str(r.get("device")), "")
                for r in results
            } | {_device_key(r) for r in results}
            for d in devices:
                if _device_key(d) not in allocated:
                    return _status(
                        422,
                        "Invalid",
                        f"status.devices: device {_device_key(d)} is not allocated",
                    )
            if ctype.startswith("application/apply-patch"):
                manager = (query.get("fieldManager") or [""])[0]
                if not manager:
                    return _status(400, "BadRequest", "fieldManager is required for apply")
                force = (query.get("force") or ["false"])[0] == "true"
                owners = self.owners.setdefault((ns, name), {})
                current = {_device_key(d): d for d in status.get("devices") or []}
                for d in devices:
                    others = owners.get(_device_key(d), set()) - {manager}
                    if others and not force:
                        return _status(409, "Conflict", f"conflict with {sorted(others)}")
                applied = {_device_key(d) for d in devices}
                for key, who in list(owners.items()):
                    if manager in who and key not in applied:
                        who.discard(manager)
                        if not who:
                            current.pop(key, None)
                            del owners[key]
                for d in devices:
                    key = _device_key(d)
                    owners[key] = {manager} if force else owners.get(key, set()) | {manager}
                    current[key] = d
                status["devices"] = list(current.values())
            elif ctype.startswith("application/merge-patch"):
                status["devices"] = devices
            else:
                return _status(415, "UnsupportedMediaType", f"unsupported patch type {ctype}")
            obj["metadata"]["resourceVersion"] = self._next_rv()
            return 200, json.loads(json.dumps(obj))


class _Handler(BaseHTTPRequestHandler):
    state: ClaimsState

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type") or ""
        result = self.state.handle(method, url.path, parse_qs(url.query), ctype, body)
        code, payload = result or _status(404, "NotFound", f"no route for {url.path}")
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_POST(self) -> None:
        self._serve("POST")


class FakeClaimsApiServer:
    """The fake on 127.0.0.1:<ephemeral port>, served from a daemon thread."""

    def __init__(self, state: ClaimsState | None = None, port: int = 0) -> None:
        self.state = state or ClaimsState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeClaimsApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
