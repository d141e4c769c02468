"""A small JSON client for the lab's API server: kinds, paths and watch.

The lab's own processes (`knd lab`, `knd explain --lab`, the stand-in GPU driver, bench, tests)
use it for plain REST calls against the real kube-apiserver (`from_kubeconfig`: the server, CA
file and bearer token of a kubeconfig the lab wrote; no other auth method) or an API server
emulator's plain URL (no auth). The calls
go over the driver's own `knd.kube.connection` (watch streams over urllib). Errors raise
`RestError` carrying the HTTP code and the Kubernetes Status message.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from knd.kube.connection import (
    MERGE_PATCH_TYPE,
    ApiConnection,
    CredentialsError,
    connect_url,
    tls_context,
)
from knd.kube.errors import ApiError

JSON = dict[str, Any]

#: kind → (API prefix, plural, namespaced)
KINDS: dict[str, tuple[str, str, bool]] = {
    "ResourceSlice": ("/apis/resource.k8s.io/v1", "resourceslices", False),
    "DeviceClass": ("/apis/resource.k8s.io/v1", "deviceclasses", False),
    "ResourceClaim": ("/apis/resource.k8s.io/v1", "resourceclaims", True),
    "ResourceClaimTemplate": ("/apis/resource.k8s.io/v1", "resourceclaimtemplates", True),
    "Pod": ("/api/v1", "pods", True),
    "Service": ("/api/v1", "services", True),
    "DaemonSet": ("/apis/apps/v1", "daemonsets", True),
    "Node": ("/api/v1", "nodes", False),
    "Event": ("/api/v1", "events", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Namespace": ("/api/v1", "namespaces", False),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ValidatingAdmissionPolicy": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingadmissionpolicies",
        False,
    ),
    "ValidatingAdmissionPolicyBinding": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingadmissionpolicybindings",
        False,
    ),
}


class RestError(Exception):
    """An API call failed: `code` is the HTTP status (0 when the server is unreachable)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RestClient:
    """JSON REST calls against one API server URL."""

    def __init__(
        self, url: str, timeout: float = 10.0, *, token: str = "", ca_file: str = ""
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._conn: ApiConnection | None = None
        self._token = token
        self._tls: ssl.SSLContext | None = None
        if ca_file or self.url.startswith("https://"):
            self._tls = tls_context(ca_file=ca_file or None)
        with contextlib.suppress(CredentialsError):  # a bad URL is reported by the first call
            if token or self._tls is not None:
                self._conn = ApiConnection(
                    self.url,
                    tls=self._tls,
                    auth=(lambda: f"Bearer {token}") if token else None,
                    timeout_s=timeout,
                )
            else:
                self._conn = connect_url(self.url, timeout)

    @classmethod
    def from_kubeconfig(cls, path: Path, timeout: float = 10.0) -> RestClient:
        """A client for the current context of a kubeconfig with a token and a CA file (the
        kind the lab writes); anything else is a `RestError`."""
        try:
            cfg = yaml.safe_load(path.read_text())
            ctx_name = cfg["current-context"]
            ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
            cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
            user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
            return cls(
                str(cluster["server"]),
                timeout,
                token=str(user.get("token") or ""),
                ca_file=str(cluster.get("certificate-authority") or ""),
            )
        except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration) as exc:
            raise RestError(0, f"kubeconfig {path}: {exc!r}") from exc

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

    def watch(self, kind: str, timeout_s: int = 30, resource_version: str = "") -> Iterator[JSON]:
        """Watch events of a kind (all namespaces) from now on (or after `resource_version`),
        until the server ends the stream after `timeout_s` seconds."""
        prefix, plural, _ = KINDS[kind]
        rv = resource_version or self.call("GET", f"{prefix}/{plural}").get("metadata", {}).get(
            "resourceVersion", ""
        )
        path = f"{prefix}/{plural}?watch=true&resourceVersion={rv}&timeoutSeconds={timeout_s}"
        if not self.url.startswith(("http://", "https://")):
            raise RestError(0, f"not an http(s) URL: {self.url}")
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        req = urllib.request.Request(self.url + path, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(  # noqa: S310
                req, timeout=timeout_s + 10, context=self._tls
            ) as resp:
                for line in resp:
                    if line.strip():
                        event: JSON = json.loads(line)
                        yield event
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RestError(0, f"watch {kind}: {exc}") from exc
