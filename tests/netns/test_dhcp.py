"""DHCPv4 at prepare against a real dnsmasq on the far end of a veth (in its own netns)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knd.api.config import decode
from knd.driver.leases import renew_in_netns
from knd.netns.attach import attach
from knd.netns.builder import build_plan
from knd.netns.capture import capture_host_state
from knd.netns.dhcp import obtain_lease
from knd.netns.errors import DhcpError, DhcpNakError
from knd.netns.plan import Route

from .conftest import Lab, Nic, addrs, sh

pytestmark = pytest.mark.netns

#: nic name → dnsmasq's lease file
LEASE_FILES: dict[str, str] = {}


@pytest.fixture
def dnsmasq(lab: Lab, tmp_path: object) -> Iterator[Nic]:
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq not installed (scripts/system-deps installs dnsmasq-base)")
    nic = lab.nic()
    leases = f"{tmp_path}/leases"
    LEASE_FILES[nic.name] = leases
    sh("ip", "-n", nic.wire_ns, "addr", "add", "10.33.0.1/24", "dev", nic.peer)
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            nic.wire_ns,
            "dnsmasq",
            "--no-daemon",
            "--port=0",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            f"--interface={nic.peer}",
            "--dhcp-range=10.33.0.50,10.33.0.60,255.255.255.0,1h",
            "--dhcp-authoritative",  # a REQUEST for an address it cannot grant gets a NAK
            "--no-ping",  # no ICMP probe (3 s) before an offer
            "--dhcp-option=3,10.33.0.1",
            "--dhcp-option=121,172.16.0.0/12,10.33.0.254,198.51.100.0/24,10.33.0.253",
            f"--dhcp-leasefile={leases}",
            "--pid-file=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.2)
        assert proc.poll() is None, "dnsmasq did not start"
        yield nic
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_dhcp_lease_becomes_plan_without_touching_host(dnsmasq: Nic) -> None:
    nic = dnsmasq
    state = capture_host_state(nic.name)
    assert state.host is not None
    lease = obtain_lease(nic.name, state.host.mac)
    assert lease.address.endswith("/24")
    ip = lease.address.split("/")[0]
    assert 50 <= int(ip.rsplit(".", 1)[1]) <= 60 and ip.startswith("10.33.0.")
    assert lease.router == "10.33.0.1"
    assert lease.routes == (("172.16.0.0/12", "10.33.0.254"), ("198.51.100.0/24", "10.33.0.253"))
    assert lease.server == "10.33.0.1"
    assert addrs(None, nic.name) == set()  # the host interface was not configured
    plan = build_plan(nic.name, "uid", decode({"interface": {"dhcp": True}}), state, lease=lease)
    assert plan.pod is not None
    assert plan.pod.addresses == (lease.address,)
    assert Route("172.16.0.0/12", "10.33.0.254") in plan.pod.routes


def _expiry(nic: Nic, ip: str) -> int:
    """The expiry dnsmasq recorded for `ip` (its lease file: expiry mac ip host client-id)."""
    for line in Path(LEASE_FILES[nic.name]).read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == ip:
            return int(fields[0])
    raise AssertionError(f"dnsmasq has no lease for {ip}")


def test_lease_is_renewed_from_the_pod_netns_unicast_and_broadcast(dnsmasq: Nic, lab: Lab) -> None:
    """The NIC and its leased address move into a pod; the renewal runs inside the pod netns
    (the daemon's LeaseKeeper path), and dnsmasq extends the lease each time."""
    nic = dnsmasq
    state = capture_host_state(nic.name)
    assert state.host is not None
    lease = obtain_lease(nic.name, state.host.mac)
    plan = build_plan(nic.name, "uid", decode({"interface": {"dhcp": True}}), state, lease=lease)
    assert plan.pod is not None and plan.pod.dhcp is not None
    assert plan.pod.dhcp.lease_time == 3600 and plan.pod.dhcp.server == "10.33.0.1"
    _pod, path = lab.netns()
    attach([plan], path)
    ip = lease.address.split("/")[0]
    granted = _expiry(nic, ip)
    time.sleep(1.1)  # dnsmasq's expiry has a resolution of one second
    renewed = renew_in_netns(path, plan.pod.name, state.host.mac, lease.address, "10.33.0.1", False)
    assert renewed.address == lease.address and renewed.lease_time == 3600
    assert renewed.server == "10.33.0.1"
    after_renew = _expiry(nic, ip)
    assert after_renew > granted
    time.sleep(1.1)
    rebound = renew_in_netns(path, plan.pod.name, state.host.mac, lease.address, None, True)
    assert rebound.address == lease.address
    assert _expiry(nic, ip) > after_renew
    with pytest.raises(DhcpNakError):  # authoritative server, address outside its range
        renew_in_netns(path, plan.pod.name, state.host.mac, "10.33.0.99/24", "10.33.0.1", False)


def test_dhcp_times_out_cleanly(lab: Lab) -> None:
    nic = lab.nic()
    started = time.monotonic()
    with pytest.raises(DhcpError, match="timed out"):
        obtain_lease(nic.name, "02:00:00:00:00:01", timeout=1.0)
    assert time.monotonic() - started < 5


def test_dhcp_rejects_bad_interface_name() -> None:
    with pytest.raises(Exception, match="invalid interface name"):
        obtain_lease("../x", "02:00:00:00:00:01", timeout=0.1)


def _leased(nic: Nic) -> set[str]:
    path = Path(LEASE_FILES[nic.name])
    if not path.exists():
        return set()
    return {f[2] for f in (ln.split() for ln in path.read_text().splitlines()) if len(f) >= 3}


def test_stop_pod_sandbox_releases_the_lease_to_dnsmasq(
    dnsmasq: Nic, lab: Lab, tmp_path: Path
) -> None:
    """The daemon's path: run_pod_sandbox attaches the NIC with its leased address into the pod;
    stop_pod_sandbox sends a DHCPRELEASE from the pod netns, then returns the NIC; dnsmasq drops
    the lease at once instead of holding the address for the lease's hour."""
    import json

    from knd.driver.hooks import NetworkHooks, NullLeases, NullStatus
    from knd.driver.metrics import DriverMetrics
    from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore
    from knd.nri.types import PodInfo

    nic = dnsmasq
    state = capture_host_state(nic.name)
    assert state.host is not None
    lease = obtain_lease(nic.name, state.host.mac)
    ip = lease.address.split("/")[0]
    assert ip in _leased(nic)
    plan = build_plan(
        nic.name, "pod-uid", decode({"interface": {"dhcp": True}}), state, lease=lease
    )
    store = StateStore(tmp_path / "knd.db")
    store.save_prepared(
        ClaimRecord("claim-uid", "ns", "c", "pod-uid", time.time(), {}),
        PodRecord("pod-uid", "ns", "p"),
        [PlanRecord("claim-uid", "node", nic.name, "nic", "pod-uid", json.loads(plan.to_json()))],
    )
    pod_ns, path = lab.netns()
    sandbox = PodInfo(id="sb", uid="pod-uid", name="p", namespace="ns", netns=path)
    hooks = NetworkHooks(
        store=store, status=NullStatus(), metrics=DriverMetrics(), leases=NullLeases()
    )
    try:
        hooks.run_pod_sandbox(sandbox)
        assert plan.pod is not None
        assert addrs(pod_ns, plan.pod.name) == {lease.address}
        hooks.stop_pod_sandbox(sandbox)
    finally:
        store.close()
    deadline = time.monotonic() + 10  # dnsmasq rewrites its lease file right after a release
    while ip in _leased(nic) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ip not in _leased(nic)
    assert nic.name in sh("ip", "-o", "link", "show", nic.name)  # back on the host


def test_unprepare_backstop_releases_from_the_host(dnsmasq: Nic) -> None:
    """A pod whose StopPodSandbox never released (its netns was gone): at unprepare the NIC is
    on the host without the address, and the release goes out from the host interface."""
    from knd.driver.leases import release_from_host

    nic = dnsmasq
    state = capture_host_state(nic.name)
    assert state.host is not None
    lease = obtain_lease(nic.name, state.host.mac)
    ip = lease.address.split("/")[0]
    assert ip in _leased(nic)
    plan = build_plan(
        nic.name, "pod-uid", decode({"interface": {"dhcp": True}}), state, lease=lease
    )
    assert release_from_host(plan) is True
    deadline = time.monotonic() + 10
    while ip in _leased(nic) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ip not in _leased(nic)
    static = build_plan(nic.name, "pod-uid", decode({"interface": {"name": "x0"}}), state)
    assert release_from_host(static) is False  # no lease, nothing sent
