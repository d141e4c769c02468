"""A small JSON client for the lab's API server emulator (stdlib HTTP, no auth).

The lab's own processes (controller, `knd lab`, bench) use it for plain REST calls; the driver
uses the official Kubernetes client against the same server. Errors raise `RestError` carrying
the HTTP code and the Kubernetes Status message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

JSON = dict[str, Any]

#: kind → (API prefix, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "ResourceSlice": ("/apis/resource.k8s.io/v1", "resourceslices", False),
    "DeviceClass": ("/apis/resource.k8s.io/v1", "deviceclasses", False),
    "ResourceClaim": ("/apis/resource.k8s.io/v1", "resourceclaims", True),
    "ResourceClaimTemplate": ("/apis/resource.k8s.io/v1", "resourceclaimtemplates", True),
    "Pod": ("/api/v1", "pods", True),
    "Node": ("/api/v1", "nodes", False),
    "Event": ("/api/v1", "events", True),
}


class RestError(Exception):
    """An API call failed: `code` is the HTTP status (0 when the server is unreachable)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RestClient:
    """JSON REST calls against one API server URL."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def path(self, kind: str, namespace: str = "", name: str = "", sub: str = "") -> str:
        """The REST path of a kind (collection, or one object and its subresource)."""
        prefix, plural, namespaced = KINDS[kind]
        p = prefix + (
            f"/namespaces/{namespace or 'default'}" if namespaced and (namespace or name) else ""
        )
        p += f"/{plural}"
        if name:
            p += f"/{name}"
        if sub:
            p += f"/{sub}"
        return p

    def call(
        self, method: str, path: str, body: Any = None, ctype: str = "application/json"
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        if not self.url.startswith(("http://", "https://")):
            raise RestError(0, f"not an http(s) URL: {self.url}")
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        if data is not None:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                message = str(json.loads(exc.read()).get("message", exc.reason))
            except ValueError:
                message = str(exc.reason)
            raise RestError(exc.code, message) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RestError(0, f"API server unreachable: {exc}") from exc

    def list(self, kind: str, namespace: str | None = None) -> list[JSON]:
        """Every object of a kind (all namespaces when `namespace` is None)."""
        prefix, plural, namespaced = KINDS[kind]
        p = prefix + (f"/namespaces/{namespace}" if namespaced and namespace else "") + f"/{plural}"
        items: list[JSON] = self.call("GET", p).get("items") or []
        return items

    def get(self, kind: str, name: str, namespace: str = "") -> JSON | None:
        """One object, or None when it does not exist."""
        try:
            obj: JSON = self.call("GET", self.path(kind, namespace, name))
            return obj
        except RestError as exc:
            if exc.code == 404:
                return None
            raise

    def create(self, obj: JSON) -> JSON:
        ns = (obj.get("metadata") or {}).get("namespace") or "default"
        prefix, plural, namespaced = KINDS[str(obj.get("kind"))]
        p = prefix + (f"/namespaces/{ns}" if namespaced else "") + f"/{plural}"
        created: JSON = self.call("POST", p, obj)
        return created

    def merge_patch(self, kind: str, name: str, namespace: str, patch: JSON, sub: str = "") -> JSON:
        out: JSON = self.call(
            "PATCH", self.path(kind, namespace, name, sub), patch, "application/merge-patch+json"
        )
        return out

    def delete(self, kind: str, name: str, namespace: str = "") -> bool:
        """Delete; False when it was already gone."""
        try:
            self.call("DELETE", self.path(kind, namespace, name))
            return True
        except RestError as exc:
            if exc.code == 404:
                return False
            raise

    def watch(self, kind: str, timeout_s: int = 30) -> Iterator[JSON]:
        """Watch events of a kind (all namespaces) from now on, until the server ends the
        stream after `timeout_s` seconds."""
        prefix, plural, _ = KINDS[kind]
        rv = self.call("GET", f"{prefix}/{plural}").get("metadata", {}).get("resourceVersion", "")
        path = f"{prefix}/{plural}?watch=true&resourceVersion={rv}&timeoutSeconds={timeout_s}"
        if not self.url.startswith(("http://", "https://")):
            raise RestError(0, f"not an http(s) URL: {self.url}")
        req = urllib.request.Request(self.url + path)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=timeout_s + 10) as resp:  # noqa: S310
                for line in resp:
                    if line.strip():
                        event: JSON = json.loads(line)
                        yield event
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RestError(0, f"watch {kind}: {exc}") from exc
