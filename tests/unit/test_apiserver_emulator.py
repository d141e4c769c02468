"""The API server emulator, driven by the official Kubernetes Python client (unchanged)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes.client as k8s
import pytest
from kubernetes.client.exceptions import ApiException

from knd.lab.apiserver import ApiServerEmulator, ObjectStore
from knd.lab.field_ownership import DeviceStatusOwners
from knd.lab.gpu_slices import gpu_resource_slice


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServerEmulator]:
    srv = ApiServerEmulator(ObjectStore(k8s_version="1.34")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def api(server: ApiServerEmulator) -> Iterator[k8s.ApiClient]:
    cfg = k8s.Configuration(host=server.url)
    with k8s.ApiClient(cfg) as client:
        yield client


def claim(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name},
        "spec": {
            "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": "dra.net"}}]}
        },
    }


def test_slice_crud_with_label_and_field_selectors(
    api: k8s.ApiClient, server: ApiServerEmulator
) -> None:
    r = k8s.ResourceV1Api(api)
    body = gpu_resource_slice("crud-node", [("0000:07:00.0", "pci0000:07", 0)])
    body["metadata"]["labels"] = {"owner": "test"}
    created = r.create_resource_slice(body)
    assert created.metadata.uid and created.metadata.resource_version
    assert created.spec.devices[0].attributes["resource.kubernetes.io/pcieRoot"].string == (
        "pci0000:07"
    )
    listed = r.list_resource_slice(
        field_selector="spec.nodeName=crud-node", label_selector="owner=test"
    )
    assert [s.metadata.name for s in listed.items] == [body["metadata"]["name"]]
    assert r.list_resource_slice(field_selector="spec.nodeName=other").items == []
    before = server.store.write_count("resourceslices")
    first_rv = created.metadata.resource_version
    fresh = dict(body, metadata={**body["metadata"], "resourceVersion": first_rv})
    fresh["spec"]["pool"]["generation"] = 2
    updated = r.replace_resource_slice(body["metadata"]["name"], fresh)
    assert updated.spec.pool.generation == 2
    assert updated.metadata.resource_version != first_rv
    assert server.store.write_count("resourceslices") == before + 1
    # The same write again carries a stale resourceVersion → 409 Conflict, nothing written.
    with pytest.raises(ApiException) as info:
        r.replace_resource_slice(body["metadata"]["name"], fresh)
    assert info.value.status == 409
    assert json.loads(info.value.body)["reason"] == "Conflict"
    assert server.store.write_count("resourceslices") == before + 1
    r.delete_resource_slice(body["metadata"]["name"])
    with pytest.raises(ApiException) as info:
        r.read_resource_slice(body["metadata"]["name"])
    assert info.value.status == 404
    assert json.loads(info.value.body)["reason"] == "NotFound"


def test_schema_and_dra_limits_are_enforced(api: k8s.ApiClient, server: ApiServerEmulator) -> None:
    r = k8s.ResourceV1Api(api)
    bad_schema = gpu_resource_slice("n", [("0000:07:00.0", "pci0000:07", 0)])
    bad_schema["metadata"]["name"] = "bad-schema"
    bad_schema["spec"]["devices"][0]["attributes"]["x"] = {"strang": "typo"}
    too_long = gpu_resource_slice("n", [("0000:07:00.0", "pci0000:07", 0)])
    too_long["metadata"]["name"] = "too-long"
    too_long["spec"]["devices"][0]["attributes"]["dra.net/alias"] = {"string": "x" * 65}
    too_many = gpu_resource_slice(
        "n", [(f"0000:{i // 8:02x}:{i % 8:02x}.0", "pci0000:00", 0) for i in range(129)]
    )
    too_many["metadata"]["name"] = "too-many"
    cases = ((bad_schema, "strang"), (too_long, "Too long"), (too_many, "at most 128"))
    for body, needle in cases:
        # Raw HTTP: the server must reject what any client sends, not rely on the
        # Python client's own checks.
        req = urllib.request.Request(
            f"{server.url}/apis/resource.k8s.io/v1/resourceslices",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        status = json.loads(info.value.read())
        assert info.value.code == 422 and status["reason"] == "Invalid", status
        assert needle in status["message"]
    assert r.list_resource_slice(field_selector="spec.nodeName=n").items == []


def allocate(r: k8s.ResourceV1Api, name: str, ns: str, *devices: tuple[str, str]) -> None:
    """Write `status.allocation` as the scheduler does (an update of /status)."""
    results = [
        {"request": "nic", "driver": driver, "pool": "n", "device": device}
        for driver, device in devices
    ]
    r.patch_namespaced_resource_claim_status(
        name,
        ns,
        {"status": {"allocation": {"devices": {"results": results}}}},
        _content_type="application/merge-patch+json",
    )


def test_claim_status_server_side_apply_merges_per_driver(api: k8s.ApiClient) -> None:
    r = k8s.ResourceV1Api(api)
    r.create_namespaced_resource_claim("ns1", claim("c1"))
    allocate(r, "c1", "ns1", ("gpu.nvidia.com", "gpu-0"), ("dra.net", "eth1"))
    # Status subresource: a PUT of the main resource cannot write status.
    gpu = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c1"},
        "status": {
            "devices": [
                {"driver": "gpu.nvidia.com", "pool": "n", "device": "gpu-0", "conditions": []}
            ]
        },
    }
    nic = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c1"},
        "status": {
            "devices": [
                {
                    "driver": "dra.net",
                    "pool": "n",
                    "device": "eth1",
                    "networkData": {"interfaceName": "eth99", "ips": ["192.0.2.5/24"]},
                }
            ]
        },
    }
    for body, manager in ((gpu, "gpu.nvidia.com"), (nic, "dra.net"), (nic, "dra.net")):
        r.patch_namespaced_resource_claim_status(
            "c1",
            "ns1",
            body,
            field_manager=manager,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    got = r.read_namespaced_resource_claim("c1", "ns1")
    devices = {d.driver: d for d in got.status.devices}
    assert set(devices) == {"gpu.nvidia.com", "dra.net"}
    assert devices["dra.net"].network_data.interface_name == "eth99"
    assert devices["dra.net"].network_data.ips == ["192.0.2.5/24"]


def test_merge_patch_and_main_resource_ignores_status(api: k8s.ApiClient) -> None:
    r = k8s.ResourceV1Api(api)
    r.create_namespaced_resource_claim("ns2", claim("c2"))
    r.patch_namespaced_resource_claim(
        "c2",
        "ns2",
        {"metadata": {"labels": {"a": "b"}}, "status": {"devices": []}},
        _content_type="application/merge-patch+json",
    )
    got = r.read_namespaced_resource_claim("c2", "ns2")
    assert got.metadata.labels == {"a": "b"}
    assert got.status is None or not got.status.devices


def test_watch_streams_events_from_a_resource_version(
    api: k8s.ApiClient, server: ApiServerEmulator
) -> None:
    core = k8s.CoreV1Api(api)
    rv = core.list_node().metadata.resource_version
    seen: list[tuple[str, str]] = []

    def watch() -> None:
        url = f"{server.url}/api/v1/nodes?watch=true&resourceVersion={rv}&timeoutSeconds=2"
        with urllib.request.urlopen(url, timeout=10) as resp:
            for line in resp:
                event = json.loads(line)
                seen.append((event["type"], event["object"]["metadata"]["name"]))
                if len(seen) == 2:
                    return

    t = threading.Thread(target=watch)
    t.start()
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "w1"}})
    core.delete_node("w1")
    t.join(10)
    assert seen == [("ADDED", "w1"), ("DELETED", "w1")]


def test_unavailable_mode_and_unknown_paths(server: ApiServerEmulator) -> None:
    server.unavailable.set()
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{server.url}/api/v1/nodes", timeout=5)
        assert info.value.code == 503
    finally:
        server.unavailable.clear()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.url}/apis/foo/v1/bars", timeout=5)
    assert info.value.code == 404


def test_events_and_generate_name(api: k8s.ApiClient) -> None:
    core = k8s.CoreV1Api(api)
    ev = core.create_namespaced_event(
        "ns3",
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": "c1."},
            "involvedObject": {"kind": "ResourceClaim", "name": "c1", "namespace": "ns3"},
            "reason": "ClaimPrepareFailed",
            "message": "interface.mtu: bad",
            "type": "Warning",
        },
    )
    assert ev.metadata.name.startswith("c1.")
    listed = core.list_namespaced_event("ns3", field_selector="involvedObject.name=c1")
    assert [e.reason for e in listed.items] == ["ClaimPrepareFailed"]


def test_fault_injection_preconditions_and_helpers(api: k8s.ApiClient) -> None:
    with ApiServerEmulator() as srv:
        cfg = k8s.Configuration(host=srv.url)
        with k8s.ApiClient(cfg) as client:
            r = k8s.ResourceV1Api(client)
            node = srv.add_node("fi-node")
            assert node["metadata"]["uid"] and srv.writes == 0
            body = gpu_resource_slice("fi-node", [("0000:07:00.0", "pci0000:07", 0)])
            srv.fail_next("POST", 500)
            with pytest.raises(ApiException) as info:
                r.create_resource_slice(body)
            assert info.value.status == 500 and srv.writes == 0
            created = r.create_resource_slice(body)
            assert [s["metadata"]["name"] for s in srv.slices()] == [body["metadata"]["name"]]
            with pytest.raises(ApiException) as info:
                r.delete_resource_slice(
                    created.metadata.name, body={"preconditions": {"uid": "not-the-uid"}}
                )
            assert info.value.status == 409
            r.delete_resource_slice(
                created.metadata.name, body={"preconditions": {"uid": created.metadata.uid}}
            )
            assert srv.slices() == [] and srv.writes == 2
            srv.store.reset_counts()
            assert srv.writes == 0


def _entry(driver: str, device: str, ifname: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {"driver": driver, "pool": "n", "device": device}
    if ifname:
        entry["networkData"] = {"interfaceName": ifname}
    return entry


def _apply(
    r: k8s.ResourceV1Api,
    name: str,
    ns: str,
    manager: str,
    entries: list[dict[str, Any]],
    force: bool = False,
) -> Any:
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": ns},
        "status": {"devices": entries},
    }
    kwargs: dict[str, Any] = {"force": True} if force else {}
    return r.patch_namespaced_resource_claim_status(
        name,
        ns,
        body,
        field_manager=manager,
        _content_type="application/apply-patch+yaml",
        **kwargs,
    )


def _devices(r: k8s.ResourceV1Api, name: str, ns: str) -> dict[str, Any]:
    got = r.read_namespaced_resource_claim(name, ns)
    return {d.device: d for d in (got.status.devices or [])}


@pytest.fixture
def ssa(api: k8s.ApiClient) -> Iterator[k8s.ResourceV1Api]:
    r = k8s.ResourceV1Api(api)
    r.create_namespaced_resource_claim("ssa", claim("c"))
    allocate(r, "c", "ssa", ("dra.net", "eth1"), ("dra.net", "eth2"), ("gpu.nvidia.com", "gpu-0"))
    yield r
    r.delete_namespaced_resource_claim("c", "ssa")


def test_apply_of_another_managers_field_conflicts_without_force(
    ssa: k8s.ResourceV1Api, server: ApiServerEmulator
) -> None:
    _apply(ssa, "c", "ssa", "dra.net", [_entry("dra.net", "eth1", "net1")])
    rv = ssa.read_namespaced_resource_claim("c", "ssa").metadata.resource_version
    with pytest.raises(ApiException) as info:
        _apply(ssa, "c", "ssa", "intruder", [_entry("dra.net", "eth1", "evil0")])
    status = json.loads(info.value.body)
    assert info.value.status == 409 and status["reason"] == "Conflict"
    assert 'conflict with "dra.net"' in status["message"]
    assert status["details"]["causes"][0]["field"] == (
        '.status.devices[driver="dra.net",pool="n",device="eth1"].networkData'
    )
    got = ssa.read_namespaced_resource_claim("c", "ssa")
    assert got.metadata.resource_version == rv  # nothing was written
    assert _devices(ssa, "c", "ssa")["eth1"].network_data.interface_name == "net1"
    assert server.store.device_owners("ssa", "c").owners(
        ("dra.net", "n", "eth1", ""), "networkData"
    ) == {"dra.net"}
    # the same value is shared ownership, not a conflict
    _apply(ssa, "c", "ssa", "observer", [_entry("dra.net", "eth1", "net1")])
    assert server.store.device_owners("ssa", "c").managers(("dra.net", "n", "eth1", "")) == {
        "dra.net",
        "observer",
    }


def test_force_takes_ownership_over(ssa: k8s.ResourceV1Api, server: ApiServerEmulator) -> None:
    _apply(ssa, "c", "ssa", "old", [_entry("dra.net", "eth1", "net1")])
    _apply(ssa, "c", "ssa", "new", [_entry("dra.net", "eth1", "net2")], force=True)
    assert _devices(ssa, "c", "ssa")["eth1"].network_data.interface_name == "net2"
    owners = server.store.device_owners("ssa", "c")
    assert owners.owners(("dra.net", "n", "eth1", ""), "networkData") == {"new"}
    # the field moved: now the old manager is the one that conflicts
    with pytest.raises(ApiException) as info:
        _apply(ssa, "c", "ssa", "old", [_entry("dra.net", "eth1", "net1")])
    assert (
        info.value.status == 409 and 'conflict with "new"' in json.loads(info.value.body)["message"]
    )


def test_apply_replaces_the_managers_set_and_keeps_other_managers_entries(
    ssa: k8s.ResourceV1Api,
) -> None:
    _apply(
        ssa,
        "c",
        "ssa",
        "dra.net",
        [_entry("dra.net", "eth1", "net1"), _entry("dra.net", "eth2", "net2")],
    )
    _apply(ssa, "c", "ssa", "gpu.nvidia.com", [_entry("gpu.nvidia.com", "gpu-0")])
    _apply(ssa, "c", "ssa", "helper", [_entry("dra.net", "eth1", "net1")])  # co-owns eth1
    # dra.net leaves out eth2: its entry disappears, the GPU driver's stays
    _apply(ssa, "c", "ssa", "dra.net", [_entry("dra.net", "eth1", "net1")])
    assert set(_devices(ssa, "c", "ssa")) == {"eth1", "gpu-0"}
    # dra.net leaves out eth1 too: the helper still owns it, so it stays
    _apply(ssa, "c", "ssa", "dra.net", [])
    assert set(_devices(ssa, "c", "ssa")) == {"eth1", "gpu-0"}
    _apply(ssa, "c", "ssa", "helper", [])
    assert set(_devices(ssa, "c", "ssa")) == {"gpu-0"}


def test_non_apply_writes_take_the_fields_they_change(ssa: k8s.ResourceV1Api) -> None:
    _apply(ssa, "c", "ssa", "dra.net", [_entry("dra.net", "eth1", "net1")])
    ssa.patch_namespaced_resource_claim_status(
        "c",
        "ssa",
        {"status": {"devices": [_entry("dra.net", "eth1", "edited")]}},
        field_manager="kubectl-edit",
        _content_type="application/merge-patch+json",
    )
    with pytest.raises(ApiException) as info:
        _apply(ssa, "c", "ssa", "dra.net", [_entry("dra.net", "eth1", "net1")])
    assert 'conflict with "kubectl-edit"' in json.loads(info.value.body)["message"]


def test_ownership_is_dropped_with_the_object(
    api: k8s.ApiClient, server: ApiServerEmulator
) -> None:
    r = k8s.ResourceV1Api(api)
    for _ in range(2):
        r.create_namespaced_resource_claim("ssa-re", claim("c"))
        allocate(r, "c", "ssa-re", ("dra.net", "eth1"))
        _apply(r, "c", "ssa-re", "first", [_entry("dra.net", "eth1", "a")])
        _apply(r, "c", "ssa-re", "first", [_entry("dra.net", "eth1", "b")])
        r.delete_namespaced_resource_claim("c", "ssa-re")
        assert server.store.device_owners("ssa-re", "c").managers(("dra.net", "n", "eth1", "")) == (
            set()
        )


@pytest.mark.parametrize("path", ["apply", "merge", "put"])
def test_status_device_not_in_the_allocation_is_invalid(path: str, ssa: k8s.ResourceV1Api) -> None:
    stray = _entry("dra.net", "eth9", "net9")
    with pytest.raises(ApiException) as info:
        if path == "apply":
            _apply(ssa, "c", "ssa", "dra.net", [stray], force=True)
        elif path == "merge":
            ssa.patch_namespaced_resource_claim_status(
                "c",
                "ssa",
                {"status": {"devices": [stray]}},
                _content_type="application/merge-patch+json",
            )
        else:
            obj = ssa.api_client.sanitize_for_serialization(
                ssa.read_namespaced_resource_claim("c", "ssa")
            )
            obj["status"]["devices"] = [stray]
            ssa.replace_namespaced_resource_claim_status("c", "ssa", obj)
    status = json.loads(info.value.body)
    assert info.value.status == 422 and status["reason"] == "Invalid"
    assert (
        'status.devices[0]: Invalid value: "dra.net/n/eth9": must be an allocated device'
        in (status["message"])
    )
    assert _devices(ssa, "c", "ssa") == {}


def test_request_counters_count_reads_and_failed_requests() -> None:
    with ApiServerEmulator() as srv:
        created = srv.put_claim({**claim("rc"), "metadata": {"name": "rc", "namespace": "x"}})
        assert srv.writes == 0 and srv.claim("x", "rc") == created
        url = f"{srv.url}/apis/resource.k8s.io/v1/namespaces/x/resourceclaims"
        for _ in range(2):
            urllib.request.urlopen(f"{url}/rc", timeout=5).close()
        urllib.request.urlopen(url, timeout=5).close()
        srv.fail_next("PATCH", 500)
        req = urllib.request.Request(
            f"{url}/rc/status",
            data=b"{}",
            method="PATCH",
            headers={"Content-Type": "application/merge-patch+json"},
        )
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=5)
        assert srv.store.request_count("get", "resourceclaims") == 2
        assert srv.store.request_count("list", "resourceclaims") == 1
        assert srv.store.request_count("patch", "resourceclaims") == 1
        assert srv.writes == 0
        srv.delete_claim("x", "rc")
        assert srv.claim("x", "rc") is None and srv.writes == 0


def test_a_field_left_out_of_an_apply_is_removed_from_the_entry() -> None:
    key = ("dra.net", "n", "eth1", "")
    owners = DeviceStatusOwners()
    full = {**_entry("dra.net", "eth1", "net1"), "data": {"k": "v"}}
    devices = owners.apply([], [full], "dra.net", force=False)
    assert devices == [full]
    devices = owners.apply(devices, [_entry("dra.net", "eth1", "net1")], "dra.net", force=False)
    assert devices == [_entry("dra.net", "eth1", "net1")]
    assert owners.owners(key, "data") == set() and owners.owners(key) == {"dra.net"}
    # a field another manager also owns stays when one of its managers leaves it out
    devices = owners.apply(devices, [_entry("dra.net", "eth1", "net1")], "co", force=False)
    devices = owners.apply(
        devices, [{"driver": "dra.net", "pool": "n", "device": "eth1"}], "co", False
    )
    assert devices == [_entry("dra.net", "eth1", "net1")]
    assert owners.owners(key, "networkData") == {"dra.net"}
