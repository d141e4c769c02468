"""The emulated API server (knd.lab.apiserver) driven by the unchanged kubernetes client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from knd.kube.slice_client import api_client_for
from knd.lab.apiserver import FakeApiServer

pytestmark = pytest.mark.unit


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as srv:
        yield srv


def body(node: str, driver: str = "dra.net", n: int = 1, **meta: Any) -> client.V1ResourceSlice:
    return client.V1ResourceSlice.from_dict(
        {
            "metadata": {"generateName": f"{node}-", **meta},
            "spec": {
                "driver": driver,
                "nodeName": node,
                "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                "devices": [
                    {"name": f"dev{i}", "attributes": {"dra.net/mtu": {"int": 1500}}}
                    for i in range(n)
                ],
            },
        }
    )


def test_crud_generate_name_and_selectors(server: FakeApiServer) -> None:
    api = client.ResourceV1Api(api_client_for(server.url))
    a = api.create_resource_slice(body("n1"))
    api.create_resource_slice(body("n2", labels={"team": "x"}))
    assert a.metadata.name.startswith("n1-") and len(a.metadata.name) == len("n1-") + 5
    assert a.metadata.uid and a.metadata.resource_version
    by_node = api.list_resource_slice(field_selector="spec.nodeName=n1").items
    assert [s.spec.node_name for s in by_node] == ["n1"]
    by_label = api.list_resource_slice(label_selector="team=x").items
    assert [s.spec.node_name for s in by_label] == ["n2"]
    got = api.read_resource_slice(a.metadata.name)
    assert got.spec.devices[0].attributes["dra.net/mtu"].int == 1500
    assert server.writes == 2
    api.delete_resource_slice(a.metadata.name)
    with pytest.raises(ApiException) as err:
        api.read_resource_slice(a.metadata.name)
    assert err.value.status == 404
    assert server.state.writes_by_verb == {"POST": 2, "DELETE": 1}


def test_stale_resource_version_conflicts(server: FakeApiServer) -> None:
    api = client.ResourceV1Api(api_client_for(server.url))
    a = api.create_resource_slice(body("n1"))
    a.spec.pool.generation = 2
    b = api.replace_resource_slice(a.metadata.name, a)
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)
    assert b.metadata.generation == 2
    with pytest.raises(ApiException) as err:
        api.replace_resource_slice(a.metadata.name, a)  # a carries the old resourceVersion
    assert err.value.status == 409
    stale = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(resource_version=a.metadata.resource_version)
    )
    with pytest.raises(ApiException) as err:
        api.delete_resource_slice(a.metadata.name, body=stale)
    assert err.value.status == 409
    assert server.writes == 2  # failed writes are not counted


def test_validation_rejects_oversized_slices(server: FakeApiServer) -> None:
    api = client.ResourceV1Api(api_client_for(server.url))
    with pytest.raises(ApiException) as err:
        api.create_resource_slice(body("n1", n=129))
    assert err.value.status == 422 and "at most 128" in str(err.value.body)
    raw = body("n1").to_dict()
    raw["spec"]["devices"][0]["attributes"] = {f"dra.net/a{i}": {"int": i} for i in range(33)}
    with pytest.raises(ApiException) as err:
        api.create_resource_slice(client.V1ResourceSlice.from_dict(raw))
    assert err.value.status == 422
    assert server.writes == 0


def test_nodes_get(server: FakeApiServer) -> None:
    node = server.add_node("n1")
    core = client.CoreV1Api(api_client_for(server.url))
    got = core.read_node("n1")
    assert got.metadata.uid == node["metadata"]["uid"]
    with pytest.raises(ApiException) as err:
        core.read_node("n2")
    assert err.value.status == 404
