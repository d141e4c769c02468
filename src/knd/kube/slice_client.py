"""The small interface the slice publisher writes through, and its kubernetes-client implementation.

`SliceClient` speaks plain wire-form dicts (camelCase JSON objects), so it can be swapped (a fake
in tests, another HTTP client later). `KubernetesSliceClient` wraps the pinned kubernetes Python
client (`ResourceV1Api` for resource.k8s.io/v1 ResourceSlices, a plain REST GET for the Node).
Errors are mapped to `knd.kube.errors`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from knd.kube.errors import ApiError, for_status
from knd.kube.rest import quote, request_json

T = TypeVar("T")


class SliceClient(Protocol):
    def get_node(self, name: str) -> dict[str, Any]: ...

    def list_slices(self, node_name: str) -> list[dict[str, Any]]: ...

    def create_slice(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def update_slice(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def delete_slice(self, name: str, uid: str | None, resource_version: str | None) -> None: ...


def api_client_for(host: str, token: str | None = None, verify_ssl: bool = True) -> Any:
    """A kubernetes `ApiClient` for `host` (e.g. `http://127.0.0.1:8080`)."""
    cfg = client.Configuration(host=host, verify_ssl=verify_ssl)
    if token:
        cfg.api_key = {"BearerToken": token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(cfg)


def api_client_from_environment() -> Any:
    """In-cluster config when running in a pod, else the local kubeconfig."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def _slice_model(body: dict[str, Any]) -> Any:
    model = client.V1ResourceSlice.from_dict(body)
    if model is None:
        raise ApiError(0, "empty ResourceSlice body")
    return model


class KubernetesSliceClient:
    """`SliceClient` over the kubernetes Python client."""

    def __init__(self, api_client: Any, timeout_s: float = 10.0) -> None:
        self._client = api_client
        self._resource = client.ResourceV1Api(api_client)
        self._timeout = timeout_s

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ApiException as exc:
            raise for_status(int(exc.status or 0), str(exc.reason or exc)) from exc
        except Exception as exc:  # connection errors, validation errors of the client models
            raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc

    def _dict(self, model: Any) -> dict[str, Any]:
        out: dict[str, Any] = self._client.sanitize_for_serialization(model)
        return out

    def get_node(self, name: str) -> dict[str, Any]:
        # Plain REST: the generated CoreV1Api costs ~65 MB RSS (knd.kube.rest).
        return self._call(
            lambda: request_json(
                self._client, "GET", f"/api/v1/nodes/{quote(name)}", timeout_s=self._timeout
            )
        )

    def list_slices(self, node_name: str) -> list[dict[str, Any]]:
        result = self._call(
            lambda: self._resource.list_resource_slice(
                field_selector=f"spec.nodeName={node_name}", _request_timeout=self._timeout
            )
        )
        return [self._dict(item) for item in result.items or []]

    def create_slice(self, body: dict[str, Any]) -> dict[str, Any]:
        model = _slice_model(body)
        created = self._call(
            lambda: self._resource.create_resource_slice(model, _request_timeout=self._timeout)
        )
        return self._dict(created)

    def update_slice(self, body: dict[str, Any]) -> dict[str, Any]:
        model = _slice_model(body)
        name = body["metadata"]["name"]
        updated = self._call(
            lambda: self._resource.replace_resource_slice(
                name, model, _request_timeout=self._timeout
            )
        )
        return self._dict(updated)

    def delete_slice(self, name: str, uid: str | None, resource_version: str | None) -> None:
        opts = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid, resource_version=resource_version)
        )
        self._call(
            lambda: self._resource.delete_resource_slice(
                name, body=opts, _request_timeout=self._timeout
            )
        )
