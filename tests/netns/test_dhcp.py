"""DHCPv4 at prepare against a real dnsmasq on the far end of a veth (in its own netns)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from knd.api.config import decode
from knd.netns.builder import build_plan
from knd.netns.capture import capture_host_state
from knd.netns.dhcp import obtain_lease
from knd.netns.errors import DhcpError
from knd.netns.plan import Route

from .conftest import Lab, Nic, addrs, sh

pytestmark = pytest.mark.netns


@pytest.fixture
def dnsmasq(lab: Lab, tmp_path: object) -> Iterator[Nic]:
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq not installed (scripts/system-deps installs dnsmasq-base)")
    nic = lab.nic()
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
            "--dhcp-option=3,10.33.0.1",
            "--dhcp-option=121,172.16.0.0/12,10.33.0.254,198.51.100.0/24,10.33.0.253",
            f"--dhcp-leasefile={tmp_path}/leases",
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


def test_dhcp_times_out_cleanly(lab: Lab) -> None:
    nic = lab.nic()
    started = time.monotonic()
    with pytest.raises(DhcpError, match="timed out"):
        obtain_lease(nic.name, "02:00:00:00:00:01", timeout=1.0)
    assert time.monotonic() - started < 5


def test_dhcp_rejects_bad_interface_name() -> None:
    with pytest.raises(Exception, match="invalid interface name"):
        obtain_lease("../x", "02:00:00:00:00:01", timeout=0.1)
