"""The slice publisher against the emulated API server (knd.lab.apiserver: real REST paths,
schema validation; not a real kube-apiserver), through knd's REST client (knd.kube.connection)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from knd.host.sysfs import SysfsRoot
from knd.inventory.discover import discover
from knd.inventory.model import Device
from knd.kube.connection import connect_url
from knd.kube.publisher import PublishError, SlicePublisher
from knd.kube.slice_client import RestSliceClient
from knd.lab.apiserver import NODES, SLICES, ApiServerEmulator
from tests.fixtures import pciids as test_ids
from tests.fixtures.sysfs import write_tree

pytestmark = pytest.mark.unit


@pytest.fixture
def server() -> Iterator[ApiServerEmulator]:
    with ApiServerEmulator() as srv:
        srv.add_node("node-a")
        yield srv


@pytest.fixture(scope="module")
def sriov_devices(tmp_path_factory: pytest.TempPathFactory) -> list[Device]:
    root = write_tree("sriov", tmp_path_factory.mktemp("sys") / "sriov")
    return discover(SysfsRoot(root), test_ids.database()).devices


def publisher(srv: ApiServerEmulator, node: str = "node-a") -> SlicePublisher:
    return SlicePublisher(RestSliceClient(connect_url(srv.url)), node)


def with_mtu(devices: list[Device], i: int, mtu: int) -> list[Device]:
    out = list(devices)
    out[i] = Device(out[i].name, {**out[i].attributes, "dra.net/mtu": mtu})
    return out


def pools(srv: ApiServerEmulator) -> list[tuple[int, int, int]]:
    return [
        (
            s["spec"]["pool"]["generation"],
            s["spec"]["pool"]["resourceSliceCount"],
            len(s["spec"]["devices"]),
        )
        for s in srv.slices()
    ]


def test_first_publish_splits_and_owns(
    server: ApiServerEmulator, sriov_devices: list[Device]
) -> None:
    r = publisher(server).publish(sriov_devices)
    assert (r.creates, r.updates, r.deletes, r.generation, r.slices) == (2, 0, 0, 1, 2)
    assert pools(server) == [(1, 2, 128), (1, 2, 2)]
    node_uid = server.store.get(NODES, "", "node-a")["metadata"]["uid"]
    for s in server.slices():
        assert s["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "name": "node-a",
                "uid": node_uid,
                "controller": True,
            }
        ]
        assert s["spec"]["nodeName"] == "node-a" and s["spec"]["pool"]["name"] == "node-a"
        assert s["metadata"]["name"].startswith(("00000-dra.net-node-a-", "00001-dra.net-node-a-"))
    names = [d["name"] for s in server.slices() for d in s["spec"]["devices"]]
    assert sorted(names) == sorted(d.name for d in sriov_devices)


def test_unchanged_is_zero_writes_and_one_nic_one_write(
    server: ApiServerEmulator, sriov_devices: list[Device]
) -> None:
    pub = publisher(server)
    pub.publish(sriov_devices)
    before = server.writes
    assert pub.publish(sriov_devices).writes == 0 and server.writes == before
    r = pub.publish(with_mtu(sriov_devices, 129, 9000))  # a device of the second slice
    assert (r.updates, r.creates, r.deletes, r.generation) == (1, 0, 0, 1)
    assert server.writes == before + 1
    # a fresh publisher (e.g. after a restart) sees the same state: still zero writes
    assert publisher(server).publish(with_mtu(sriov_devices, 129, 9000)).writes == 0


def test_changes_in_two_slices_bump_generation(
    server: ApiServerEmulator, sriov_devices: list[Device]
) -> None:
    pub = publisher(server)
    pub.publish(sriov_devices)
    r = pub.publish(with_mtu(with_mtu(sriov_devices, 0, 9000), 129, 9000))
    assert (r.generation, r.updates) == (2, 2)
    assert pools(server) == [(2, 2, 128), (2, 2, 2)]


def test_shrinking_deletes_the_emptied_slice(
    server: ApiServerEmulator, sriov_devices: list[Device]
) -> None:
    pub = publisher(server)
    pub.publish(sriov_devices)
    r = pub.publish(sriov_devices[:100])
    assert (r.deletes, r.updates, r.generation, r.slices) == (1, 1, 2, 1)
    assert pools(server) == [(2, 1, 100)]


def test_stale_and_foreign_slices_are_deleted(
    server: ApiServerEmulator, sriov_devices: list[Device]
) -> None:
    other = publisher(server, node="node-b")
    server.add_node("node-b")
    other.publish(sriov_devices[:3])
    pub = publisher(server)
    pub.publish(sriov_devices[:3])
    # a leftover of an older generation and a slice with an unknown name, same pool
    stale = dict(server.slices()[0])
    for name, gen in (("00007-dra.net-node-a-old", 0), ("node-a-dra.net-legacy", 1)):
        obj = {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {"name": name},
            "spec": {
                **stale["spec"],
                "nodeName": "node-a",
                "pool": {"name": "node-a", "generation": gen, "resourceSliceCount": 1},
            },
        }
        server.store.create(SLICES, "", obj)
    r = pub.publish(sriov_devices[:3])
    assert r.deletes == 2
    names = [s["metadata"]["name"] for s in server.slices() if s["spec"]["nodeName"] == "node-a"]
    assert len(names) == 1 and names[0].startswith("00000-")
    assert len([s for s in server.slices() if s["spec"]["nodeName"] == "node-b"]) == 1


def test_conflict_is_retried(server: ApiServerEmulator, sriov_devices: list[Device]) -> None:
    pub = publisher(server)
    pub.publish(sriov_devices)
    server.fail_next("PUT", 409)
    r = pub.publish(with_mtu(sriov_devices, 5, 9000))
    assert r.attempts == 2 and r.updates == 1
    stored = {d["name"]: d for s in server.slices() for d in s["spec"]["devices"]}
    assert stored[sriov_devices[5].name]["attributes"]["dra.net/mtu"] == {"int": 9000}


def test_persistent_conflicts_fail(server: ApiServerEmulator, sriov_devices: list[Device]) -> None:
    pub = publisher(server)
    pub.publish(sriov_devices)
    for _ in range(5):
        server.fail_next("PUT", 409)
    with pytest.raises(PublishError):
        pub.publish(with_mtu(sriov_devices, 5, 9000))


def test_missing_node_fails(server: ApiServerEmulator, tmp_path: Path) -> None:
    with pytest.raises(PublishError):
        publisher(server, node="ghost").publish([])
    assert server.writes == 0


def test_shareable_devices_are_stored_and_stable(
    server: ApiServerEmulator, sriov_devices: list[Device]
) -> None:
    shared = [Device(d.name, d.attributes, shares=4) for d in sriov_devices[:3]]
    pub = publisher(server)
    assert pub.publish(shared).writes == 1
    stored = server.slices()[0]["spec"]["devices"]
    assert all(d["allowMultipleAllocations"] is True for d in stored)
    assert {d["capacity"]["dra.net/shares"]["value"] for d in stored} == {"4"}
    before = server.writes
    assert pub.publish(shared).writes == 0 and server.writes == before  # no update loop
    # Sharing turned off (a restart without --device-shares): one write, fields gone.
    plain = [Device(d.name, d.attributes) for d in shared]
    assert pub.publish(plain).writes == 1
    stored = server.slices()[0]["spec"]["devices"]
    assert all("allowMultipleAllocations" not in d and "capacity" not in d for d in stored)
