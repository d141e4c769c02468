"""The engine's view of the API server: read a claim, apply claim status, record Events.

Small Protocols so the engine is testable and the transport replaceable; `KubeClaimApi`
implements all three with the kubernetes Python client (`ResourceV1Api`; Events by plain
REST, knd.kube.rest).
Claims are handled as plain JSON dicts exactly as the API server sends them (camelCase keys),
so no client-model conversion can drop fields.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from kubernetes import client

from knd.driver.errors import ClaimNotFoundError, TransientError
from knd.kube.rest import quote, request_json

log = logging.getLogger(__name__)

Claim = Mapping[str, Any]

APPLY_PATCH = "application/apply-patch+yaml"


class ClaimReader(Protocol):
    def get(self, namespace: str, name: str) -> Claim:
        """The claim as JSON. Raises ClaimNotFoundError, or TransientError for anything else."""
        ...


class StatusApplier(Protocol):
    def apply_devices(
        self, namespace: str, name: str, devices: list[dict[str, Any]], manager: str
    ) -> None:
        """Server-side apply of `status.devices` (force). Raises TransientError on failure."""
        ...


class EventRecorder(Protocol):
    def warning(self, claim: Claim, reason: str, message: str) -> None:
        """Record a Warning Event on the claim. Must not raise."""
        ...


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class KubeClaimApi:
    """ClaimReader + StatusApplier + EventRecorder over a `kubernetes.client.ApiClient`."""

    def __init__(
        self, api_client: Any, component: str, host: str = "", timeout_s: float = 10.0
    ) -> None:
        self._client = api_client
        self._resource = client.ResourceV1Api(api_client)
        self._exc = client.exceptions.ApiException
        self.component = component
        self.host = host
        self.timeout_s = timeout_s

    def get(self, namespace: str, name: str) -> Claim:
        try:
            resp: Any = self._resource.read_namespaced_resource_claim(
                name, namespace, _preload_content=False, _request_timeout=self.timeout_s
            )
            data: dict[str, Any] = json.loads(resp.data)
            return data
        except self._exc as exc:
            if exc.status == 404:
                raise ClaimNotFoundError(
                    f"ResourceClaim {namespace}/{name} not found in the API server"
                ) from exc
            raise TransientError(
                f"reading ResourceClaim {namespace}/{name}: API server answered "
                f"{exc.status} {exc.reason}"
            ) from exc
        except Exception as exc:
            raise TransientError(f"reading ResourceClaim {namespace}/{name}: {exc}") from exc

    def apply_devices(
        self, namespace: str, name: str, devices: list[dict[str, Any]], manager: str
    ) -> None:
        body = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": namespace},
            "status": {"devices": devices},
        }
        try:
            self._resource.patch_namespaced_resource_claim_status(
                name,
                namespace,
                body,
                field_manager=manager,
                force=True,
                _content_type=APPLY_PATCH,
                _request_timeout=self.timeout_s,
            )
        except Exception as exc:
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
            # Plain REST: the generated CoreV1Api costs ~65 MB RSS (knd.kube.rest).
            request_json(
                self._client,
                "POST",
                f"/api/v1/namespaces/{quote(namespace)}/events",
                body=body,
                timeout_s=self.timeout_s,
            )
        except Exception as exc:
            log.warning(
                "cannot record event %s on claim %s/%s: %s",
                reason,
                namespace,
                meta.get("name"),
                exc,
            )
