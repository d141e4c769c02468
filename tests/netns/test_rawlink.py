"""knd.netns.rawlink's hot-path requests (address, route, lookup by name) against the kernel,
read back with iproute2 — the same results pyroute2's addr/route "add" give."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from knd.netns.nsfd import NetnsWorker, open_netns
from knd.netns.plan import Route
from knd.netns.rawlink import LinkSocket

from .conftest import Lab, Nic, ipj

pytestmark = pytest.mark.netns


@pytest.fixture
def pod_nic(lab: Lab) -> Iterator[tuple[str, Nic, LinkSocket, NetnsWorker]]:
    """A veth NIC moved into a fresh netns, and a LinkSocket created inside that netns."""
    nic = lab.nic()
    pod, path = lab.netns()
    subprocess.run(["ip", "link", "set", nic.name, "netns", pod], check=True)
    subprocess.run(["ip", "-n", pod, "link", "set", nic.name, "up"], check=True)
    fd = open_netns(path)
    worker = NetnsWorker(fd)
    sock = worker.call(LinkSocket)
    try:
        yield pod, nic, sock, worker
    finally:
        sock.close()
        worker.close()
        os.close(fd)


def test_lookup_address_and_routes_match_iproute2(
    pod_nic: tuple[str, Nic, LinkSocket, NetnsWorker],
) -> None:
    pod, nic, sock, _ = pod_nic
    index = sock.index_of(nic.name)
    assert index is not None
    (info,) = ipj(pod, "link", "show", nic.name)
    assert index == info["ifindex"]
    assert sock.index_of("kn-absent0") is None
    for cidr in ("10.61.0.2/24", "2001:db8:61::2/64"):
        sock.add_address(index, cidr)
        sock.add_address(index, cidr)  # EEXIST is success
    (addrs,) = ipj(pod, "addr", "show", nic.name)
    got = {(a["local"], a["prefixlen"], a["scope"]) for a in addrs["addr_info"]}
    assert {("10.61.0.2", 24, "global"), ("2001:db8:61::2", 64, "global")} <= got
    routes = (
        Route("10.62.0.0/24", "10.61.0.1"),
        Route("10.63.0.0/24", "10.61.0.1", table=1234),  # > 255: only RTA_TABLE carries it
        Route("10.61.0.9/32", None, "10.61.0.2", scope=253, table=77),
        Route("0.0.0.0/0", "10.61.0.1", table=77),
    )
    for route in routes:
        sock.add_route(index, route)
        sock.add_route(index, route)
    main = {r["dst"]: r for r in ipj(pod, "-d", "route", "show", "table", "main")}
    assert main["10.62.0.0/24"]["gateway"] == "10.61.0.1"
    assert main["10.62.0.0/24"]["protocol"] == "static"
    (big,) = ipj(pod, "route", "show", "table", "1234")
    assert (big["dst"], big["gateway"], big["dev"]) == ("10.63.0.0/24", "10.61.0.1", nic.name)
    t77 = {r["dst"]: r for r in ipj(pod, "route", "show", "table", "77")}
    assert t77["10.61.0.9"]["scope"] == "link" and t77["10.61.0.9"]["prefsrc"] == "10.61.0.2"
    assert t77["default"]["gateway"] == "10.61.0.1"
    with pytest.raises(OSError) as info_err:  # an unreachable gateway: the kernel's error
        sock.add_route(index, Route("10.64.0.0/24", "192.0.2.1"))
    assert info_err.value.errno in (101, 22)  # ENETUNREACH / EINVAL, as with `ip route add`
    assert json.dumps(ipj(pod, "route", "show", "10.64.0.0/24")) == "[]"
