"""Claim builders for the kubelet-side tests: claims shaped like real scheduler output."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from knd.api.claims import ResourceClaim

DRIVER = "dra.net"
GPU = "gpu.nvidia.com"
POOL = "node-a"


def claim(
    name: str,
    results: Sequence[tuple[str, str, str]],  # (request, driver, device)
    *,
    configs: Sequence[dict[str, Any]] = (),
    pods: Sequence[tuple[str, str]] | None = None,  # (name, uid)
    allocated: bool = True,
    namespace: str = "default",
) -> dict[str, Any]:
    """A ResourceClaim as the API server returns it after the scheduler allocated it."""
    if pods is None:
        pods = [(f"{name}-pod", str(uuid.uuid4()))]
    requests = sorted({r for r, _, _ in results})
    obj: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
        "spec": {
            "devices": {
                "requests": [
                    {"name": r, "exactly": {"deviceClassName": f"{r}.example.com"}}
                    for r in requests
                ]
            }
        },
        "status": {},
    }
    if allocated:
        obj["status"]["allocation"] = {
            "devices": {
                "results": [
                    {
                        "request": r,
                        "driver": d,
                        "pool": POOL if d == DRIVER else "gpu-pool",
                        "device": dev,
                    }
                    for r, d, dev in results
                ],
                "config": list(configs),
            },
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [POOL]}]}
                ]
            },
            "allocationTimestamp": "2026-11-27T02:00:00Z",
        }
        obj["status"]["reservedFor"] = [{"resource": "pods", "name": n, "uid": u} for n, u in pods]
    return obj


def opaque(
    source: str, params: Any, requests: Sequence[str] = (), driver: str = DRIVER
) -> dict[str, Any]:
    entry: dict[str, Any] = {"source": source, "opaque": {"driver": driver, "parameters": params}}
    if requests:
        entry["requests"] = list(requests)
    return entry


def ref(obj: dict[str, Any]) -> tuple[str, str, str]:
    m = obj["metadata"]
    return (m["namespace"], m["uid"], m["name"])


def as_claim(obj: dict[str, Any]) -> ResourceClaim:
    """A claim built here, as the typed shape the engine reads (the same dict, unconverted)."""
    return cast(ResourceClaim, obj)
