"""knd.host.rtnl raw dumps checked against iproute2's view of the same namespace (`ip -j`)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from knd.host.netlink import AF_INET, AF_INET6, LiveNetlink, default_gateway
from knd.host.rtnl import Rtnl

pytestmark = pytest.mark.netns

if os.geteuid() != 0 or shutil.which("ip") is None:
    print("tests/netns/test_rtnl.py: skipped, needs root and iproute2", file=sys.stderr)
    pytest.skip("needs root and iproute2 (ip)", allow_module_level=True)


def ip(ns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", ns, *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def netns() -> Iterator[str]:
    ns = f"ki-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for a, b in (("kia0", "kia1"), ("kib0", "kib1")):
            ip(ns, "link", "add", a, "type", "veth", "peer", "name", b)
            ip(ns, "link", "set", a, "up")
            ip(ns, "link", "set", b, "up")
        ip(ns, "link", "set", "kia0", "mtu", "9000", "alias", "ki-alias")
        ip(ns, "addr", "add", "192.0.2.1/24", "dev", "kia0")
        ip(ns, "addr", "add", "198.51.100.1/24", "dev", "kib0")
        ip(ns, "addr", "add", "2001:db8:1::1/64", "dev", "kia0", "nodad")
        ip(ns, "route", "add", "default", "metric", "50", "nexthop", "via", "192.0.2.254",
           "dev", "kia0", "nexthop", "via", "198.51.100.254", "dev", "kib0")  # fmt: skip
        ip(
            ns,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:1::fe",
            "dev",
            "kia0",
            "metric",
            "7",
        )
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_links_match_iproute2(netns: str) -> None:
    expected = {d["ifname"]: d for d in json.loads(ip(netns, "-j", "-d", "link", "show"))}
    with Rtnl(netns) as rtnl:
        links = {link.name: link for link in rtnl.links()}
    assert set(links) == set(expected)
    for name, link in links.items():
        exp = expected[name]
        assert link.index == exp["ifindex"]
        assert link.mtu == exp["mtu"]
        assert link.mac == exp.get("address")
        assert link.operstate == exp["operstate"].lower()
        assert link.kind == exp.get("linkinfo", {}).get("info_kind")
    assert links["kia0"].alias == "ki-alias"
    assert links["kia0"].parent == links["kia1"].index  # veth peer
    assert links["lo"].arphrd == 772


def test_addresses_and_ecmp_default_routes(netns: str) -> None:
    snap = LiveNetlink(netns).snapshot()
    by_name = {link.name: link for link in snap.links}
    assert by_name["kia0"].ipv4 == ("192.0.2.1/24",)
    assert by_name["kia0"].ipv6 == ("2001:db8:1::1/64",)  # link-local fe80:: is not global
    assert by_name["kib0"].ipv4 == ("198.51.100.1/24",)
    assert by_name["lo"].ipv4 == ()  # 127.0.0.1 is host scope
    routes = {(r.family, r.metric): set(r.oifs) for r in snap.default_routes}
    assert routes == {
        (AF_INET, 50): {by_name["kia0"].index, by_name["kib0"].index},
        (AF_INET6, 7): {by_name["kia0"].index},
    }


def test_route_gateways_single_and_ecmp(netns: str) -> None:
    with Rtnl(netns) as rtnl:
        index = {link.name: link.index for link in rtnl.links()}
        v4 = [r for r in rtnl.routes(AF_INET) if r.dst_len == 0 and r.table == 254]
        v6 = [r for r in rtnl.routes(AF_INET6) if r.dst_len == 0 and r.table == 254]
    assert [r.gateways for r in v4] == [
        {index["kia0"]: "192.0.2.254", index["kib0"]: "198.51.100.254"}
    ]
    assert [r.gateways for r in v6] == [{index["kia0"]: "2001:db8:1::fe"}]


def test_default_gateway_per_interface_and_family(netns: str) -> None:
    # Azure's IPv6 gateway is link-local: a second, lower-metric default via fe80:: on kib0.
    ip(netns, "-6", "route", "add", "default", "via", "fe80::1234:5678:9abc", "dev", "kib0",
       "metric", "3")  # fmt: skip
    assert default_gateway("kia0", AF_INET6, netns) == "2001:db8:1::fe"
    assert default_gateway("kib0", AF_INET6, netns) == "fe80::1234:5678:9abc"
    assert default_gateway("kib0", AF_INET, netns) == "198.51.100.254"
    assert default_gateway("kia1", AF_INET6, netns) == ""  # no default route through it
    assert default_gateway("absent0", AF_INET6, netns) == ""
