"""knd's real data path against real containerd 2.x and 1.7: kubelet emulator → DRA gRPC
NodePrepareResources (claims from the API server emulator, real host capture, plan persisted in
SQLite) → CRI RunPodSandbox → knd's NRI hooks execute the plan in the pod netns → the container
sees the NIC (ExecSync) and an RDMA-style char device → claim status written → StopPodSandbox
returns the NIC with its host state → NodeUnprepareResources.

Emulated: the API server and the kubelet (knd.lab). Real: containerd, runc, CNI, pods, netns,
veth NICs, the gRPC/ttrpc wire. The RDMA char device comes from a sysfs fixture whose uverbs0
node is 1:3 (the harmless /dev/null numbers).
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from pyroute2 import IPRoute

from knd.api.names import interface_device_name
from knd.driver.claim_api import KubeClaimApi
from knd.driver.hooks import NetworkHooks, NullLeases
from knd.driver.metrics import DriverMetrics
from knd.driver.netns_plans import NetnsPlanBuilder
from knd.driver.prepare import PrepareEngine
from knd.driver.retry import Backoff
from knd.driver.status_writer import StatusWriter
from knd.driver.store import StateStore
from knd.kube.connection import connect_url
from knd.kubelet.plugin import KubeletPlugin
from knd.lab.apiserver import ApiServerEmulator
from knd.lab.cri import CriClient, PodSpec
from knd.lab.kubelet import KubeletEmulator
from knd.netns.fabric import delete_host_links
from knd.nri.plugin import NriPlugin, PluginConfig
from tests.e2e.conftest import runtime_cmd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "kubelet"))
from kubelet_claims import DRIVER, POOL, claim, opaque

pytestmark = pytest.mark.e2e
_seq = itertools.count()


@dataclass
class Node:
    """Everything knd runs on the node, wired as the daemon wires it."""

    api: ApiServerEmulator
    store: StateStore
    status: StatusWriter
    hooks: NetworkHooks
    plugin: NriPlugin
    kubelet: KubeletEmulator
    sysfs: Path


def _rdma_fixture(root: Path, ifname: str) -> None:
    (root / "class" / "net" / ifname / "device" / "infiniband" / "mlx5_9").mkdir(parents=True)
    verbs = root / "class" / "infiniband_verbs" / "uverbs0"
    verbs.mkdir(parents=True, exist_ok=True)
    (verbs / "ibdev").write_text("mlx5_9\n")
    (verbs / "dev").write_text("1:3\n")


def plugin_config(runtime: dict[str, Any]) -> PluginConfig:
    """knd's NRI plugin on the test runtime's socket, redialing fast."""
    return PluginConfig(
        socket_path=runtime["nri_socket"],
        name="dra.net",
        index="20",
        backoff_initial_s=0.05,
        backoff_max_s=0.5,
        use_env_socket=False,
    )


def connect_again(node: Node, runtime: dict[str, Any]) -> None:
    """A new NRI plugin for the node's hooks (after a test stopped the old one), synchronized."""
    node.plugin = NriPlugin(node.hooks, plugin_config(runtime))
    node.plugin.start()
    assert node.plugin.wait_synchronized(10), node.plugin.last_close_reason


@pytest.fixture(scope="module")
def node(runtime: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("knd-node")
    api = ApiServerEmulator().start()
    store = StateStore(tmp / "state" / "knd.db")
    kube = KubeClaimApi(connect_url(api.url), component=DRIVER, host=POOL)
    status = StatusWriter(applier=kube, driver=DRIVER, backoff=Backoff(0.05, 10.0, attempts=8))
    sysfs = tmp / "sys"
    sysfs.mkdir()
    builder = NetnsPlanBuilder(sysfs_root=str(sysfs), dev_root=str(tmp / "dev"))
    engine = PrepareEngine(
        driver=DRIVER, store=store, reader=kube, events=kube, plan_builder=builder
    )
    kroot = tmp / "kubelet"
    kroot.mkdir()
    dra = KubeletPlugin(DRIVER, engine, kroot)
    dra.start()
    kubelet = KubeletEmulator(kroot).start()
    kubelet.wait_registered(DRIVER)
    hooks = NetworkHooks(store=store, status=status, metrics=DriverMetrics(), leases=NullLeases())
    plugin = NriPlugin(hooks, plugin_config(runtime))
    plugin.start()
    assert plugin.wait_synchronized(10), plugin.last_close_reason
    n = Node(api, store, status, hooks, plugin, kubelet, sysfs)
    try:
        yield n
    finally:
        n.plugin.stop()  # a test may have replaced the plugin (reconnect tests)
        plugin.stop()
        kubelet.stop()
        dra.stop()
        status.close()
        store.close()
        api.stop()


@pytest.fixture
def cri(runtime: dict[str, Any], node: Node) -> Iterator[CriClient]:
    c = CriClient(runtime["socket"])
    try:
        yield c
    finally:
        c.remove_all_pods()
        c.close()


@pytest.fixture
def nic(node: Node) -> Iterator[str]:
    n = next(_seq)
    host, peer = f"kd{os.getpid() % 10000}h{n}", f"kd{os.getpid() % 10000}p{n}"
    with IPRoute() as ipr:
        ipr.link("add", ifname=host, kind="veth", peer={"ifname": peer})
        idx = ipr.link_lookup(ifname=host)[0]
        ipr.link("set", index=idx, mtu=1500, state="up")
        ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], state="up")
        ipr.addr("add", index=idx, address="10.99.0.1", prefixlen=24)
    _rdma_fixture(node.sysfs, host)
    try:
        yield host
    finally:
        delete_host_links((host, peer))


def _host(name: str) -> dict[str, Any] | None:
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if not idx:
            return None
        link = ipr.get_links(idx[0])[0]
        addrs = sorted(
            f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx[0], family=2)
        )
        return {"mtu": link.get("IFLA_MTU"), "addrs": addrs}


def _prepare(node: Node, params: dict[str, Any], device: str) -> tuple[dict[str, Any], PodSpec]:
    pod = PodSpec(f"kd-{uuid.uuid4().hex[:6]}", uid=str(uuid.uuid4()))
    obj = claim(
        f"c-{pod.name}",
        [("nic", DRIVER, device)],
        configs=[opaque("FromClaim", params)],
        pods=[(pod.name, pod.uid)],
    )
    obj = node.api.put_claim(obj)
    meta = obj["metadata"]
    resp = node.kubelet.prepare(DRIVER, [(meta["namespace"], meta["uid"], meta["name"])])
    assert resp.claims[meta["uid"]].error == "", resp
    return obj, pod


def _sh(cri: CriClient, cid: str, *cmd: str) -> str:
    r = cri.exec_sync(cid, ["/bin/busybox", *cmd])
    assert r.exit_code == 0, (cmd, r)
    return str(r.stdout)


def _wait(cond: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    return cond()


PARAMS = {
    "interface": {"name": "net1", "addresses": ["192.0.2.20/24"], "mtu": 1450},
    "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}],
}


def test_claimed_nic_reaches_the_container_and_comes_back(
    runtime: dict[str, Any], node: Node, cri: CriClient, nic: str
) -> None:
    obj, pod = _prepare(node, PARAMS, interface_device_name(nic))
    sid = cri.run_pod(pod)
    assert _host(nic) is None, "the NIC left the host"
    cid = cri.create_container(
        sid, pod, "work", runtime["busybox_image"], ["/bin/busybox", "sleep", "600"]
    )
    cri.start_container(cid)
    assert _sh(cri, cid, "cat", "/sys/class/net/net1/mtu").strip() == "1450"
    assert "inet 192.0.2.20/24" in _sh(cri, cid, "ip", "-o", "addr", "show", "dev", "net1")
    assert "198.51.100.0/24 via 192.0.2.1 dev net1" in _sh(cri, cid, "ip", "route")
    listing = _sh(cri, cid, "ls", "-l", "/dev/infiniband/uverbs0")
    assert listing.startswith("crw-rw-rw-") and re.search(r"\b1,\s+3\b", listing), listing

    # The claim's status.devices[] carries networkData (written off the hook's path).
    meta = obj["metadata"]

    def network_data() -> Any:
        got = node.api.claim(meta["namespace"], meta["name"]) or {}
        for entry in (got.get("status") or {}).get("devices") or []:
            if entry.get("driver") == DRIVER and entry.get("networkData"):
                return entry
        return None

    entry = _wait(network_data)
    assert entry is not None, "claim status was not written"
    assert entry["networkData"]["interfaceName"] == "net1"
    assert entry["networkData"]["ips"] == ["192.0.2.20/24"]
    ready = {c["type"]: c for c in entry["conditions"]}
    assert ready["Ready"]["status"] == "True" and ready["NetworkReady"]["status"] == "True"
    record = node.store.pod(pod.uid)
    assert record is not None and record.netns == cri.pod_netns(sid)

    cri.stop_container(cid)
    cri.remove_container(cid)
    cri.stop_pod(sid)
    back = _wait(lambda: _host(nic))
    assert back == {"mtu": 1500, "addrs": ["10.99.0.1/24"]}, "host state restored"
    cri.remove_pod(sid)
    resp = node.kubelet.unprepare(DRIVER, [(meta["namespace"], meta["uid"], meta["name"])])
    assert resp.claims[meta["uid"]].error == ""
    assert node.store.plans_for_pod(pod.uid) == []


def test_failing_attach_fails_the_sandbox_and_keeps_the_nic_usable(
    node: Node, cri: CriClient, nic: str
) -> None:
    # An unreachable gateway fails at the route step, after the move: full rollback.
    params = {
        "interface": {"name": "net1", "addresses": ["192.0.2.20/24"]},
        "routes": [{"destination": "198.51.100.0/24", "gateway": "203.0.113.1"}],
    }
    obj, pod = _prepare(node, params, interface_device_name(nic))
    with pytest.raises(grpc.RpcError) as err:
        cri.run_pod(pod)
    details = err.value.details() or ""
    assert interface_device_name(nic) in details and "route" in details, details
    assert _host(nic) == {"mtu": 1500, "addrs": ["10.99.0.1/24"]}
    meta = obj["metadata"]

    def failed() -> Any:
        got = node.api.claim(meta["namespace"], meta["name"]) or {}
        for entry in (got.get("status") or {}).get("devices") or []:
            for cond in entry.get("conditions") or []:
                if cond["type"] == "Ready" and cond["status"] == "False":
                    return cond
        return None

    cond = _wait(failed)
    assert cond is not None and cond["reason"] == "NetworkDeviceAttachFailed"
    node.kubelet.unprepare(DRIVER, [(meta["namespace"], meta["uid"], meta["name"])])


def test_host_network_pod_with_a_claim_is_refused(node: Node, cri: CriClient, nic: str) -> None:
    obj, pod = _prepare(node, PARAMS, interface_device_name(nic))
    pod.host_network = True
    with pytest.raises(grpc.RpcError) as err:
        cri.run_pod(pod)
    assert "host network" in (err.value.details() or "")
    assert _host(nic) is not None
    meta = obj["metadata"]
    node.kubelet.unprepare(DRIVER, [(meta["namespace"], meta["uid"], meta["name"])])


def test_runtime_restart_reconnects_and_synchronize_sees_the_pod(
    runtime: dict[str, Any], node: Node, cri: CriClient, nic: str
) -> None:
    obj, pod = _prepare(node, PARAMS, interface_device_name(nic))
    sid = cri.run_pod(pod)
    before = node.plugin.registrations
    runtime_cmd("stop", "--version", runtime["version"], "--daemon-only")
    runtime_cmd("start", "--version", runtime["version"])
    assert _wait(lambda: node.plugin.registrations > before, 20), node.plugin.last_close_reason
    assert _wait(lambda: node.hooks.last_sync.known_pods >= 1, 10)
    assert node.hooks.last_sync.misplaced == []
    record = node.store.pod(pod.uid)
    assert record is not None and record.netns
    # Pods started before a runtime restart get no StopPodSandbox (see docs/nri.md): the NIC
    # comes back when the netns goes away, by knd's detach on the next stop, or by unprepare.
    cri.stop_pod(sid)
    cri.remove_pod(sid)
    meta = obj["metadata"]
    node.kubelet.unprepare(DRIVER, [(meta["namespace"], meta["uid"], meta["name"])])


def test_pod_started_while_knd_was_away_is_healed_at_synchronize(
    runtime: dict[str, Any], node: Node, cri: CriClient, nic: str
) -> None:
    """knd's NRI plugin is gone when the pod starts (the runtime starts it without knd); when
    the plugin connects again, Synchronize attaches the NIC and the claim status says so."""
    obj, pod = _prepare(node, PARAMS, interface_device_name(nic))
    node.plugin.stop()
    try:
        sid = cri.run_pod(pod)
        assert _host(nic) is not None, "no knd: the pod runs without its NIC"
    finally:
        connect_again(node, runtime)
    assert node.hooks.last_sync.healed == [f"{pod.namespace}/{pod.name}"]
    assert _host(nic) is None, "the NIC is in the pod now"
    cid = cri.create_container(
        sid, pod, "work", runtime["busybox_image"], ["/bin/busybox", "sleep", "600"]
    )
    cri.start_container(cid)
    assert "inet 192.0.2.20/24" in _sh(cri, cid, "ip", "-o", "addr", "show", "dev", "net1")
    meta = obj["metadata"]

    def healed_status() -> Any:
        got = node.api.claim(meta["namespace"], meta["name"]) or {}
        for entry in (got.get("status") or {}).get("devices") or []:
            for cond in entry.get("conditions") or []:
                if cond["type"] == "Ready" and "after a knd restart" in cond["message"]:
                    return cond
        return None

    cond = _wait(healed_status)
    assert cond is not None and cond["status"] == "True"
    cri.stop_container(cid)
    cri.remove_container(cid)
    cri.stop_pod(sid)
    assert _wait(lambda: _host(nic)) == {"mtu": 1500, "addrs": ["10.99.0.1/24"]}
    cri.remove_pod(sid)
    node.kubelet.unprepare(DRIVER, [(meta["namespace"], meta["uid"], meta["name"])])


def test_pod_without_claims_is_untouched(
    runtime: dict[str, Any], node: Node, cri: CriClient, nic: str
) -> None:
    pod = PodSpec(f"kd-plain-{uuid.uuid4().hex[:6]}")
    before = node.plugin.timer.stats("RunPodSandbox")
    sid = cri.run_pod(pod)
    cid = cri.create_container(
        sid, pod, "work", runtime["busybox_image"], ["/bin/busybox", "sleep", "600"]
    )
    cri.start_container(cid)
    assert sorted(_sh(cri, cid, "ls", "/sys/class/net").split()) == ["eth0", "lo"]
    assert cri.exec_sync(cid, ["/bin/busybox", "ls", "/dev/infiniband"]).exit_code != 0
    after = node.plugin.timer.stats("RunPodSandbox")
    assert after is not None and after.count == (before.count if before else 0) + 1
    assert after.errors == (before.errors if before else 0)
    assert _host(nic) is not None and node.store.pod(pod.uid) is None
