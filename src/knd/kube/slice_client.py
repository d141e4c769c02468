"""The small interface the slice publisher writes through, and its REST implementation.

`SliceClient` speaks plain wire-form dicts (camelCase JSON objects), so it can be swapped (a fake
in tests). `RestSliceClient` makes the calls over `knd.kube.connection.ApiConnection`:
resource.k8s.io/v1 ResourceSlices (list by `spec.nodeName` field selector, create, replace,
delete with uid + resourceVersion preconditions) and the core Node read. Errors are
`knd.kube.errors` (`ConflictError` on 409, `NotFoundError` on 404, `ApiError` otherwise).
"""

from __future__ import annotations

from typing import Any, Protocol

from knd.kube.connection import ApiConnection, quote

SLICES_PATH = "/apis/resource.k8s.io/v1/resourceslices"


class SliceClient(Protocol):
    def get_node(self, name: str) -> dict[str, Any]: ...

    def list_slices(self, node_name: str) -> list[dict[str, Any]]: ...

    def create_slice(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def update_slice(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def delete_slice(self, name: str, uid: str | None, resource_version: str | None) -> None: ...


class RestSliceClient:
    """`SliceClient` over an `ApiConnection`."""

    def __init__(self, conn: ApiConnection) -> None:
        self._conn = conn

    def get_node(self, name: str) -> dict[str, Any]:
        return self._conn.request("GET", f"/api/v1/nodes/{quote(name)}")

    def list_slices(self, node_name: str) -> list[dict[str, Any]]:
        answer = self._conn.request(
            "GET", SLICES_PATH, query={"fieldSelector": f"spec.nodeName={node_name}"}
        )
        items: list[dict[str, Any]] = answer.get("items") or []
        return items

    def create_slice(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._conn.request("POST", SLICES_PATH, body=body)

    def update_slice(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        return self._conn.request("PUT", f"{SLICES_PATH}/{quote(name)}", body=body)

    def delete_slice(self, name: str, uid: str | None, resource_version: str | None) -> None:
        preconditions = {
            key: value
            for key, value in (("uid", uid), ("resourceVersion", resource_version))
            if value
        }
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions}
        self._conn.request("DELETE", f"{SLICES_PATH}/{quote(name)}", body=body)
