"""Live-host discovery in a throwaway network namespace (real netlink, real sysfs via
`ip netns exec`): names, addresses, link kinds, uplink exclusion, route changes and events.
All names start with `ki`; the namespace is deleted afterwards."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from knd.host.netlink import LiveNetlink
from knd.host.netlink_events import NetlinkEvents
from knd.host.sysfs import SysfsRoot
from knd.inventory.rescan import Rescanner
from knd.inventory.scanner import Inventory, ScanResult

pytestmark = pytest.mark.netns

if os.geteuid() != 0 or shutil.which("ip") is None:
    print("tests/netns/test_inventory_live.py: skipped, needs root and iproute2", file=sys.stderr)
    pytest.skip("needs root and iproute2 (ip)", allow_module_level=True)

KND = [sys.executable, "-m", "knd.cli.main"]


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[str]:
    """A namespace with: kibr0 (bridge, default route, port kip0), kiv0 (veth, addresses),
    kimv (macvlan on kiv0)."""
    ns = f"ki-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip(ns, "link", "set", "lo", "up")
        ip(ns, "link", "add", "kibr0", "type", "bridge")
        ip(ns, "link", "add", "kip0", "type", "veth", "peer", "name", "kip1")
        ip(ns, "link", "set", "kip0", "master", "kibr0")
        ip(ns, "link", "add", "kiv0", "type", "veth", "peer", "name", "kiv1")
        ip(ns, "link", "add", "link", "kiv0", "name", "kimv", "type", "macvlan")
        for dev in ("kibr0", "kip0", "kip1", "kiv0", "kiv1", "kimv"):
            ip(ns, "link", "set", dev, "up")
        ip(ns, "addr", "add", "192.0.2.1/24", "dev", "kibr0")
        for i in range(1, 8):
            ip(ns, "addr", "add", f"198.51.100.{i}/24", "dev", "kiv0")
        ip(ns, "addr", "add", "2001:db8::1/64", "dev", "kiv0", "nodad")
        ip(ns, "link", "set", "kiv0", "alias", "ki test")
        ip(ns, "route", "add", "default", "via", "192.0.2.254", "dev", "kibr0")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def knd_in(ns: str, *args: str) -> str:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, *KND, "inventory", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return proc.stdout


def test_knd_inventory_in_a_netns(netns: str) -> None:
    listed = json.loads(knd_in(netns, "-o", "json"))
    assert listed["kind"] == "List"
    found = listed["items"]
    # PCI functions are not namespaced: the host's NICs show up too (without netdev facts)
    devices = {d["name"]: d["attributes"] for d in found if d["name"].startswith("ki")}
    assert sorted(devices) == ["kimv", "kip1", "kiv0", "kiv1"]
    v0 = devices["kiv0"]
    assert v0["dra.net/type"] == {"string": "veth"}
    assert v0["dra.net/virtual"] == {"bool": True}
    assert v0["dra.net/sriov"] == {"bool": False}  # on every netdev device, veths included
    assert v0["dra.net/alias"] == {"string": "ki test"}
    assert v0["dra.net/state"] == {"string": "up"}
    assert v0["dra.net/ipv6"] == {"string": "2001:db8::1/64"}
    # seven addresses do not fit 64 characters: cut on an address boundary
    assert v0["dra.net/ipv4"] == {"string": ",".join(f"198.51.100.{i}/24" for i in range(1, 5))}
    assert devices["kimv"]["dra.net/type"] == {"string": "macvlan"}
    table = knd_in(netns, "--filter", "")
    assert "kibr0     uplink: carries the ipv4 default route (metric 0)" in table
    assert "kip0      uplink: port of uplink kibr0" in table
    assert "lo        loopback" in table
    # DraNet's default filter drops veths from what is published
    table = knd_in(netns)
    published = [ln.split() for ln in table.splitlines()[2:] if ln.startswith("ki")]
    assert [row[0] for row in published if row[-1] == "yes"] == ["kimv"]


def test_uplinks_follow_route_changes(netns: str, tmp_path: Path) -> None:
    inv = Inventory(sysfs=SysfsRoot(tmp_path), netlink=LiveNetlink(netns=netns))
    first = inv.scan()
    names = {d.name for d in first.published}
    assert "kibr0" not in names and "kip0" not in names and "kiv0" in names
    ip(netns, "route", "del", "default")
    ip(netns, "route", "add", "default", "via", "198.51.100.254", "dev", "kimv", "onlink")
    second = inv.scan()
    names = {d.name for d in second.published}
    assert {"kibr0", "kip0"} <= names
    assert "kimv" not in names and "kiv0" not in names  # macvlan uplink and its lower device
    reasons = {e.subject: e.reason for e in second.discovery.excluded}
    assert reasons["kiv0"] == "uplink: lower device of uplink kimv"


def test_netlink_events_trigger_rescans(netns: str, tmp_path: Path) -> None:
    inv = Inventory(sysfs=SysfsRoot(tmp_path), netlink=LiveNetlink(netns=netns))
    seen = threading.Event()
    results: list[ScanResult] = []

    def on_result(r: ScanResult) -> None:
        results.append(r)
        if any(d.name == "kinew0" for d in r.published):
            seen.set()

    rescanner: Rescanner[ScanResult] = Rescanner(
        inv.scan, on_result, resync_s=3600, min_interval_s=0.05, burst=5
    )
    events = NetlinkEvents(rescanner.request, netns=netns)
    first = threading.Event()

    def first_then_on_result(result: ScanResult) -> None:
        first.set()
        on_result(result)

    rescanner._on_result = first_then_on_result
    events.start()
    rescanner.start()
    try:
        assert first.wait(15)
        assert not seen.is_set()
        ip(netns, "link", "add", "kinew0", "type", "veth", "peer", "name", "kinew1")
        assert seen.wait(15), "no rescan saw the new link"
    finally:
        rescanner.stop()
        events.stop()
    assert events.events > 0 and rescanner.requests > 0
