"""Per-pod NIC telemetry on real veths: the hooks attach a NIC into a pod netns, traffic flows,
the collector's counters equal what iproute2 reads in that netns, `knd top` shows the pod, and
the series disappear when the pod stops. No thread is started per scrape."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from knd.cli.main import main
from knd.cli.top_cmd import parse_sample
from knd.driver.health import HealthServer, HealthState
from knd.driver.hooks import NetworkHooks
from knd.driver.nic_telemetry import NicTelemetry
from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore
from knd.nri.types import PodInfo
from tests.netns.conftest import Lab, ipj, sh
from tests.netns.helpers import plan_for

POD_UID = "pod-telemetry-1"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "knd.db")
    try:
        yield s
    finally:
        s.close()


def _scrape(registry: CollectorRegistry) -> dict[tuple[str, ...], dict[tuple[str, str], float]]:
    return parse_sample(generate_latest(registry).decode())


def _send(ns: str, dst: str) -> None:
    code = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for _ in range(5): s.sendto(b'x' * 100, ('{dst}', 9))"
    )
    sh("ip", "netns", "exec", ns, sys.executable, "-c", code)


def _ip_stats(ns: str, dev: str) -> dict[str, int]:
    data = ipj(ns, "-s", "link", "show", "dev", dev)[0]["stats64"]
    return {
        "rx_bytes": data["rx"]["bytes"],
        "tx_bytes": data["tx"]["bytes"],
        "rx_packets": data["rx"]["packets"],
        "tx_packets": data["tx"]["packets"],
    }


def test_pod_nic_counters_follow_the_pod(
    lab: Lab, store: StateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    nic = lab.nic()
    sh("ip", "addr", "add", "192.0.2.10/24", "dev", nic.name)
    sh("ip", "-n", nic.wire_ns, "addr", "add", "192.0.2.1/24", "dev", nic.peer)
    plan = plan_for(nic, {"interface": {"name": "net1"}}, pod_uid=POD_UID)
    store.save_prepared(
        ClaimRecord("claim-uid-1", "team-a", "fast-nic", POD_UID, time.time(), {}),
        PodRecord(POD_UID, "team-a", "trainer-0"),
        [PlanRecord("claim-uid-1", "node", nic.name, "nic", POD_UID, json.loads(plan.to_json()))],
    )
    telemetry = NicTelemetry()
    registry = CollectorRegistry()
    registry.register(telemetry)
    hooks = NetworkHooks(store=store, status=None, telemetry=telemetry)
    pod_ns, pod_path = lab.netns()
    pod = PodInfo(id="sb", uid=POD_UID, name="trainer-0", namespace="team-a", netns=pod_path)

    hooks.run_pod_sandbox(pod)
    try:
        # Five UDP datagrams each way; permanent neighbours so no ARP is needed and a veth
        # counts each datagram when sendto() returns.
        peer_mac = ipj(nic.wire_ns, "link", "show", "dev", nic.peer)[0]["address"]
        pod_mac = ipj(pod_ns, "link", "show", "dev", "net1")[0]["address"]
        sh(
            "ip",
            "-n",
            pod_ns,
            "neigh",
            "replace",
            "192.0.2.1",
            "lladdr",
            peer_mac,
            "dev",
            "net1",
            "nud",
            "permanent",
        )
        sh(
            "ip",
            "-n",
            nic.wire_ns,
            "neigh",
            "replace",
            "192.0.2.10",
            "lladdr",
            pod_mac,
            "dev",
            nic.peer,
            "nud",
            "permanent",
        )
        _send(pod_ns, "192.0.2.1")
        _send(nic.wire_ns, "192.0.2.10")
        threads = threading.active_count()
        sample = _scrape(registry)
        sample = _scrape(registry)  # the held socket is reused
        assert threading.active_count() == threads
        key = ("team-a", "trainer-0", "fast-nic", nic.name, "net1")
        assert set(sample) == {key}
        got = sample[key]
        ip = _ip_stats(pod_ns, "net1")
        assert got[("packets", "tx")] >= 5 and got[("packets", "rx")] >= 5
        # Read after ours: the kernel's counters through iproute2 are never behind ours.
        for kind in ("bytes", "packets"):
            for d in ("rx", "tx"):
                assert got[(kind, d)] <= ip[f"{d}_{kind}"]
        assert got[("bytes", "tx")] >= 5 * 128 and got[("bytes", "rx")] >= 5 * 128
        assert got[("drops", "rx")] == 0 and got[("errors", "tx")] == 0

        # `knd top` against the daemon's metrics server shows the pod's NIC.
        server = HealthServer("127.0.0.1:0", HealthState(), registry)
        server.start()
        try:
            url = f"http://127.0.0.1:{server.port}/metrics"
            assert main(["top", "--url", url, "--interval", "0.2", "--count", "1"]) == 0
        finally:
            server.stop()
        out = capsys.readouterr().out
        assert "team-a/trainer-0" in out and "fast-nic" in out and "net1" in out
    finally:
        hooks.stop_pod_sandbox(pod)
    assert telemetry.tracked() == []
    assert _scrape(registry) == {}
    text = generate_latest(registry).decode()
    assert "trainer-0" not in text
    assert main(["top", "--url", "http://127.0.0.1:1/metrics", "--count", "1"]) == 1


def test_a_pod_whose_netns_is_gone_is_skipped(lab: Lab) -> None:
    telemetry = NicTelemetry()
    from knd.driver.nic_telemetry import TrackedNic

    telemetry.track(
        "u1", "ns", "p", "/run/netns/kn-no-such-netns", [TrackedNic("c", "d", "eth0", None)]
    )
    assert telemetry.tracked() == []
    # A NIC that is not (or no longer) in the pod netns: no series, a counted read error is not
    # needed (the link is simply absent).
    _, path = lab.netns()
    telemetry.track("u2", "ns", "p", path, [TrackedNic("c", "d", "nope0", None)])
    registry = CollectorRegistry()
    registry.register(telemetry)
    assert _scrape(registry) == {}
    telemetry.close()
    assert telemetry.tracked() == []


def test_health_of_an_attached_nic_is_its_link_inside_the_pod(lab: Lab, store: StateStore) -> None:
    """Device health for a NIC in a pod: the host's sysfs no longer has it, the pod's netns
    does. Healthy while its far end is up; operstate down without carrier when the
    far end goes down (read by one RTM_GETLINK in the pod's netns); absent after the pod."""
    from knd.kubelet.health_probe import HealthTarget, SysfsLinkProbe

    nic = lab.nic()
    plan = plan_for(nic, {"interface": {"name": "net1"}}, pod_uid=POD_UID)
    store.save_prepared(
        ClaimRecord("claim-uid-1", "team-a", "fast-nic", POD_UID, time.time(), {}),
        PodRecord(POD_UID, "team-a", "trainer-0"),
        [PlanRecord("claim-uid-1", "node", nic.name, "nic", POD_UID, json.loads(plan.to_json()))],
    )
    telemetry = NicTelemetry()
    hooks = NetworkHooks(store=store, status=None, telemetry=telemetry)
    _, pod_path = lab.netns()
    pod = PodInfo(id="sb", uid=POD_UID, name="trainer-0", namespace="team-a", netns=pod_path)
    probe = SysfsLinkProbe(
        lambda: [HealthTarget("node", nic.name, nic.name)], attached=telemetry.link_state
    )
    hooks.run_pod_sandbox(pod)
    try:
        state = telemetry.link_state(nic.name)
        assert state is not None
        assert (state.ifname, state.operstate, state.carrier) == ("net1", "up", True)
        assert [(s.healthy, s.message) for s in probe.snapshot()] == [
            (True, "link up, carrier present")
        ]
        sh("ip", "-n", nic.wire_ns, "link", "set", "dev", nic.peer, "down")
        state = telemetry.link_state(nic.name)
        assert state is not None and state.carrier is False
        assert state.operstate == "down"  # a veth whose peer is down (the kernel's word)
        ((healthy, message),) = [(s.healthy, s.message) for s in probe.snapshot()]
        assert healthy is False
        assert message == "netdev net1 in pod team-a/trainer-0 operstate down"
        sh("ip", "-n", nic.wire_ns, "link", "set", "dev", nic.peer, "up")
    finally:
        hooks.stop_pod_sandbox(pod)
    assert telemetry.link_state(nic.name) is None
