"""DraNet's feature gates in knd: DRAListTypeAttributes (list-typed standard numaNode) and
PersistentResourceSliceAttributes (allocated devices keep their attributes in the slice)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from knd.api import attributes as attr
from knd.driver.daemon import Daemon
from knd.driver.options import parse
from knd.driver.snapshots import DeviceSnapshots, merge
from knd.driver.store import ClaimRecord, PodRecord, StateStore
from knd.host.numa import numa_peers
from knd.host.sysfs import SysfsRoot
from knd.inventory.discover import Options
from knd.inventory.filter import AdminFilter
from knd.inventory.model import Device, Discovery, from_wire_value
from knd.inventory.scanner import Inventory, ScanResult
from knd.inventory.slices import assign
from knd.kube.connection import connect_url
from knd.kubelet.types import PreparedDevice, PrepareResult
from tests.fixtures.sysfs import write_tree

pytestmark = pytest.mark.unit


def write_numa(root: Path, sockets: dict[int, int | None], distances: list[list[int]]) -> None:
    """NUMA nodes 0..n-1: node → socket (None: no CPUs), and the SLIT matrix."""
    nodes = sorted(sockets)
    for node in nodes:
        d = root / "devices" / "system" / "node" / f"node{node}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "distance").write_text(" ".join(str(x) for x in distances[node]) + "\n")
        sock = sockets[node]
        (d / "cpulist").write_text("" if sock is None else f"{node * 8}-{node * 8 + 7}\n")
        if sock is not None:
            topo = root / "devices" / "system" / "cpu" / f"cpu{node * 8}" / "topology"
            topo.mkdir(parents=True, exist_ok=True)
            (topo / "physical_package_id").write_text(f"{sock}\n")


def test_numa_peers_are_same_socket_nodes_at_the_smallest_distance(tmp_path: Path) -> None:
    # socket 0: nodes 0-3, node 3 a bit farther from the others; socket 1: nodes 4-5;
    # node 6 has memory but no CPUs
    sockets: dict[int, int | None] = {0: 0, 1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: None}
    near, far3, remote = 11, 12, 32
    matrix = []
    for a in range(7):
        row = []
        for b in range(7):
            if a == b:
                row.append(10)
            elif sockets[a] is not None and sockets[a] == sockets[b]:
                row.append(far3 if 3 in (a, b) else near)
            else:
                row.append(remote)
        matrix.append(row)
    write_numa(tmp_path, sockets, matrix)
    peers = numa_peers(SysfsRoot(tmp_path))
    assert peers[0] == (0, 1, 2)
    assert peers[2] == (2, 0, 1)
    assert peers[3] == (3, 0, 1, 2)  # all its socket peers are at 12
    assert peers[4] == (4, 5) and peers[5] == (5, 4)
    assert peers[6] == (6,)


def test_numa_peers_tolerate_a_missing_or_malformed_topology(tmp_path: Path) -> None:
    assert numa_peers(SysfsRoot(tmp_path)) == {}
    write_numa(tmp_path, {0: 0, 1: 0}, [[10, 11], [11, 10]])
    (tmp_path / "devices/system/node/node1/distance").write_text("garbage\n")
    peers = numa_peers(SysfsRoot(tmp_path))
    assert peers == {0: (0, 1), 1: (1,)}


def gpu_node_with_numa(tmp_path: Path) -> Path:
    root = write_tree("gpu-node", tmp_path / "sys")
    write_numa(
        root,
        {0: 0, 1: 0, 2: 1, 3: 1},
        [[10, 11, 20, 20], [11, 10, 20, 20], [20, 20, 10, 11], [20, 20, 11, 10]],
    )
    return root


def test_list_type_attributes_gate_publishes_numa_node_as_an_int_list(tmp_path: Path) -> None:
    root = gpu_node_with_numa(tmp_path)
    scalar = Inventory(sysfs=SysfsRoot(root)).scan()
    listed = Inventory(sysfs=SysfsRoot(root), options=Options(list_numa=True)).scan()
    before = {d.name: d for d in scalar.discovery.devices}
    nics = [d for d in listed.discovery.devices if d.get(attr.STD_NUMA_NODE) is not None]
    assert nics
    for dev in nics:
        own = before[dev.name].get(attr.STD_NUMA_NODE)
        assert isinstance(own, int)
        assert dev.get(attr.STD_NUMA_NODE) == ((0, 1) if own == 0 else (1, 0))
        assert dev.get(attr.NUMA_NODE) == own  # the legacy dra.net attribute stays an int
        wire = dev.wire()["attributes"][attr.STD_NUMA_NODE]
        assert wire == {"ints": [own, 1 - own]}
        assert from_wire_value(wire) == dev.get(attr.STD_NUMA_NODE)
    # a slice holding list attributes takes at most 64 devices
    many = [Device(f"d{i}", {attr.STD_NUMA_NODE: (0, 1)}) for i in range(65)]
    assert [len(p.devices) for p in assign(many)] == [64, 1]


def test_both_filter_forms_read_the_list(tmp_path: Path) -> None:
    dev = Device("pci-0000-3b-00-0", {attr.STD_NUMA_NODE: (1, 0), attr.NUMA_NODE: 1})
    dranet = AdminFilter('0 in attributes["resource.kubernetes.io/numaNode"].IntValues')
    knd = AdminFilter('0 in device.attributes["resource.kubernetes.io"].numaNode')
    assert dranet(dev).keep and knd(dev).keep
    assert not AdminFilter('3 in attributes["resource.kubernetes.io/numaNode"].IntValues')(dev).keep


# -- PersistentResourceSliceAttributes ------------------------------------------------------
NIC_LIVE = Device("pci-0000-3b-00-0", {"dra.net/ifName": "eth1", "dra.net/mtu": 9000})
NIC_IN_POD = Device("pci-0000-3b-00-0", {"dra.net/pciAddress": "0000:3b:00.0"})
MACVLAN = Device("macvlan0", {"dra.net/ifName": "macvlan0", "dra.net/virtual": True})


def test_merge_keeps_snapshot_only_devices_and_lets_live_values_win() -> None:
    snap_nic = Device(NIC_LIVE.name, {"dra.net/ifName": "eth1", "dra.net/mtu": 1500})
    merged = merge([NIC_IN_POD], [snap_nic, MACVLAN])
    assert [d.name for d in merged] == ["macvlan0", "pci-0000-3b-00-0"]
    nic = merged[1]
    assert nic.attributes == {
        "dra.net/pciAddress": "0000:3b:00.0",
        "dra.net/ifName": "eth1",
        "dra.net/mtu": 1500,
    }
    live_wins = merge([NIC_LIVE], [snap_nic])[0]
    assert live_wins.get("dra.net/mtu") == 9000


def prepared(store: StateStore, claim_uid: str) -> None:
    store.save_prepared(
        ClaimRecord(claim_uid, "ns", claim_uid, f"pod-{claim_uid}", time.time(), {}),
        PodRecord(f"pod-{claim_uid}", "ns", "p"),
        [],
    )


def test_snapshots_persist_and_follow_the_claims(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    prepared(store, "claim-1")
    snaps = DeviceSnapshots(store)
    assert snaps.record("claim-1", [NIC_LIVE, Device("tl", {"x": (1, 2)})]) == 2
    snaps.record("claim-gone", [MACVLAN])  # its claim is not (or no longer) prepared
    store.close()
    store = StateStore(path)  # a daemon restart
    snaps = DeviceSnapshots(store)
    assert {d.name: d for d in snaps.active()} == {
        NIC_LIVE.name: NIC_LIVE,
        "tl": Device("tl", {"x": (1, 2)}),
    }
    assert snaps.forget("claim-1") == 2 and snaps.active() == []
    store.close()


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[list[Device]] = []

    def publish(self, devices: Sequence[Device]) -> Any:
        self.published.append(list(devices))

        class Outcome:
            writes = 1

        return Outcome()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[Daemon] = []

    def make(gates: str) -> tuple[Daemon, FakePublisher]:
        opts = parse(
            [
                "--hostname-override=n1",
                f"--state-path={tmp_path / f'state-{len(made)}.db'}",
                f"--feature-gates={gates}",
                "--filter=",
            ],
            {},
        )
        d = Daemon(opts, connect_url("http://127.0.0.1:1"))
        pub = FakePublisher()
        d._publisher = pub  # type: ignore[assignment]
        d._open_store()
        made.append(d)
        return d, pub

    yield make
    for d in made:
        d._close_store()


def allocate(daemon: Daemon) -> None:
    """A scan with the NIC and the macvlan on the host, then a claim prepared for both."""
    assert daemon.store is not None
    daemon.publish(ScanResult(Discovery(devices=[NIC_LIVE, MACVLAN]), [NIC_LIVE, MACVLAN]))
    prepared(daemon.store, "claim-1")
    devices = (PreparedDevice("n1", NIC_LIVE.name), PreparedDevice("n1", MACVLAN.name))
    daemon._after_prepare({"claim-1": PrepareResult(devices=devices)})


def test_gate_on_allocated_devices_keep_their_attributes(daemon_factory: Any) -> None:
    daemon, pub = daemon_factory("PersistentResourceSliceAttributes=true")
    allocate(daemon)
    # the NIC's netdev and the macvlan moved into the pod: the host scan lost them
    daemon.publish(ScanResult(Discovery(devices=[NIC_IN_POD]), [NIC_IN_POD]))
    last = {d.name: d for d in pub.published[-1]}
    assert set(last) == {NIC_LIVE.name, MACVLAN.name}
    assert last[NIC_LIVE.name].get("dra.net/ifName") == "eth1"
    assert last[NIC_LIVE.name].get("dra.net/pciAddress") == "0000:3b:00.0"
    # health is probed on the host as scanned: no netdev for the NIC, no macvlan
    targets = {t.device: t for t in daemon.health_targets()}
    assert set(targets) == {NIC_LIVE.name} and targets[NIC_LIVE.name].ifname is None

    # unprepared: the snapshots go, the next publish shows the host as it is
    class Ref:
        uid = "claim-1"

    daemon._after_unprepare([Ref()], {})
    daemon.publish(ScanResult(Discovery(devices=[NIC_IN_POD]), [NIC_IN_POD]))
    assert [d.name for d in pub.published[-1]] == [NIC_IN_POD.name]


def test_gate_on_the_filter_runs_after_the_merge(daemon_factory: Any) -> None:
    daemon, pub = daemon_factory("PersistentResourceSliceAttributes=true")
    daemon.admin_filter = AdminFilter('!attributes["dra.net/virtual"].BoolValue')
    allocate(daemon)
    daemon.publish(ScanResult(Discovery(devices=[NIC_IN_POD]), [NIC_IN_POD]))
    assert [d.name for d in pub.published[-1]] == [NIC_LIVE.name]  # the macvlan is filtered


def test_gate_off_publishes_the_host_as_scanned(daemon_factory: Any) -> None:
    daemon, pub = daemon_factory("PersistentResourceSliceAttributes=false")
    allocate(daemon)
    daemon.publish(ScanResult(Discovery(devices=[NIC_IN_POD]), [NIC_IN_POD]))
    assert pub.published[-1] == [NIC_IN_POD]
    assert daemon.snapshots is None
