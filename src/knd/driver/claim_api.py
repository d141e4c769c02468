"""The engine's view of the API server: read a claim, apply claim status, record Events.

Small Protocols so the engine is testable and the transport replaceable; `KubeClaimApi`
implements all three as REST calls over `knd.kube.connection.ApiConnection`: GET of
`resource.k8s.io/v1` resourceclaims, server-side apply of their `status` subresource, POST of
core/v1 Events.
Claims are handled as plain JSON dicts exactly as the API server sends them (camelCase keys),
so no client-model conversion can drop fields.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from knd.driver.errors import ClaimNotFoundError, PermanentError, TransientError
from knd.kube.connection import APPLY_PATCH_TYPE, ApiConnection, quote
from knd.kube.errors import ApiError, NotFoundError

log = logging.getLogger(__name__)

Claim = Mapping[str, Any]


class ClaimReader(Protocol):
    def get(self, namespace: str, name: str) -> Claim:
        """The claim as JSON. Raises ClaimNotFoundError, or TransientError for anything else."""
        ...


class StatusApplier(Protocol):
    def apply_devices(
        self,
        namespace: str,
        name: str,
        devices: list[dict[str, Any]],
        manager: str,
        uid: str | None = None,
    ) -> None:
        """Server-side apply of `status.devices` (force), only to the claim with `uid` when
        given. Raises PermanentError when retrying cannot help, TransientError otherwise."""
        ...


class EventRecorder(Protocol):
    def warning(self, claim: Claim, reason: str, message: str) -> None:
        """Record a Warning Event on the claim. Must not raise."""
        ...


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _permanent(exc: ApiError) -> bool:
    """Retrying cannot help: a 4xx other than 409 (conflict) and 429 (throttled), or a 409
    from a failed uid precondition (the claim was re-created under the same name)."""
    if exc.status == 409:
        return "Precondition failed: UID" in exc.message
    return 400 <= exc.status < 500 and exc.status != 429


RAW_PARAMETERS_QUIRK = (
    "the API server keeps the claim's opaque config parameters byte for byte as they were "
    "created, re-encodes them as canonical JSON (compact, keys sorted) on every patch, and "
    "refuses every status patch when the two differ (the claim or its template was created "
    "by a client that does not send canonical JSON); re-create it with canonical JSON (kubectl "
    "sends that) to get its status.devices written"
)


def _explain(exc: ApiError) -> str:
    """The API server's message, plus the remedy when it is the raw-parameters quirk."""
    if exc.status == 422 and "status.allocation" in exc.message and "modified" in exc.message:
        return f"{exc}: {RAW_PARAMETERS_QUIRK}"
    return str(exc)


def _claim_path(namespace: str, name: str) -> str:
    return f"/apis/resource.k8s.io/v1/namespaces/{quote(namespace)}/resourceclaims/{quote(name)}"


class KubeClaimApi:
    """ClaimReader + StatusApplier + EventRecorder over an `ApiConnection`."""

    def __init__(
        self, conn: ApiConnection, component: str, host: str = "", timeout_s: float = 10.0
    ) -> None:
        self._conn = conn
        self.component = component
        self.host = host
        self.timeout_s = timeout_s

    def get(self, namespace: str, name: str) -> Claim:
        try:
            return self._conn.request("GET", _claim_path(namespace, name), timeout_s=self.timeout_s)
        except NotFoundError as exc:
            raise ClaimNotFoundError(
                f"ResourceClaim {namespace}/{name} not found in the API server"
            ) from exc
        except ApiError as exc:
            raise TransientError(f"reading ResourceClaim {namespace}/{name}: {exc}") from exc

    def apply_devices(
        self,
        namespace: str,
        name: str,
        devices: list[dict[str, Any]],
        manager: str,
        uid: str | None = None,
    ) -> None:
        meta = {"name": name, "namespace": namespace}
        if uid:
            meta["uid"] = uid  # a precondition: never the status of a re-created namesake
        body = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": meta,
            "status": {"devices": devices},
        }
        try:
            self._conn.request(
                "PATCH",
                _claim_path(namespace, name) + "/status",
                body=body,
                query={"fieldManager": manager, "force": "true"},
                content_type=APPLY_PATCH_TYPE,
                timeout_s=self.timeout_s,
            )
        except ApiError as exc:
            if _permanent(exc):
                raise PermanentError(
                    f"applying status of {namespace}/{name}: {_explain(exc)}"
                ) from exc
            raise TransientError(f"applying status of {namespace}/{name}: {exc}") from exc

    def warning(self, claim: Claim, reason: str, message: str) -> None:
        meta = claim.get("metadata", {})
        namespace = str(meta.get("namespace", "default"))
        now = _now_rfc3339()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name', 'claim')}.{uuid.uuid4().hex[:16]}"},
            "involvedObject": {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceClaim",
                "namespace": namespace,
                "name": meta.get("name", ""),
                "uid": meta.get("uid", ""),
            },
            "type": "Warning",
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._conn.request(
                "POST",
                f"/api/v1/namespaces/{quote(namespace)}/events",
                body=body,
                timeout_s=self.timeout_s,
            )
        except Exception as exc:  # an Event is best effort: never fail the caller
            log.warning(
                "cannot record event %s on claim %s/%s: %s",
                reason,
                namespace,
                meta.get("name"),
                exc,
            )
