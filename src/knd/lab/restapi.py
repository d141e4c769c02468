"""A small JSON client for the lab's API server emulator (no auth): kinds, paths and watch.

The lab's own processes (controller, `knd lab`, bench) use it for plain REST calls; the calls
go over the driver's own `knd.kube.connection` (watch streams over urllib). Errors raise
`RestError` carrying the HTTP code and the Kubernetes Status message.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from knd.kube.connection import MERGE_PATCH_TYPE, ApiConnection, CredentialsError, connect_url
from knd.kube.errors import ApiError

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
        self._conn: ApiConnection | None = None
        with contextlib.suppress(CredentialsError):  # a bad URL is reported by the first call
            self._conn = connect_url(self.url, timeout)

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
        if self._conn is None:
            raise RestError(0, f"not an http(s) URL: {self.url}")
        try:
            return self._conn.request(method, path, body=body, content_type=ctype)
        except ApiError as exc:
            raise RestError(exc.status, exc.message) from exc

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
            "PATCH", self.path(kind, namespace, name, sub), patch, MERGE_PATCH_TYPE
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
