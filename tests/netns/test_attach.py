"""Attach/detach of veth "NICs" into real throwaway netns, read back twice: pyroute2 from
inside the netns and iproute2/ethtool. Covers DraNet's e2e configs."""

from __future__ import annotations

import pytest
from pyroute2 import NetNS

from knd.netns.attach import attach
from knd.netns.detach import detach
from knd.netns.plan import AttachPlan

from .conftest import Lab, addrs, in_ns, ipj, link, link_absent, routes, sh
from .helpers import drop_rule, give_host_state, plan_for

pytestmark = pytest.mark.netns

FULL = {
    "interface": {
        "name": "eth99",
        "addresses": ["192.168.77.2/24", "2001:db8:77::2/64"],
        "mtu": 4321,
        "hardwareAddr": "02:11:22:33:44:55",
        "arpIgnore": 1,
        "arpAnnounce": 2,
        "forwarding": True,
    },
    "routes": [
        {"destination": "198.51.100.0/24", "gateway": "192.168.77.1"},
        {"destination": "192.168.77.1/32", "scope": 253},
        {"destination": "2001:db8:99::/64", "gateway": "2001:db8:77::1"},
        {"destination": "203.0.113.0/24", "gateway": "192.168.77.1", "table": 100},
    ],
    "rules": [{"priority": 100, "source": "192.168.77.0/24", "table": 100}],
    "neighbors": [
        {"destination": "192.168.77.50", "hardwareAddr": "02:aa:bb:cc:dd:01"},
        {"destination": "2001:db8:77::50", "hardwareAddr": "02:aa:bb:cc:dd:02"},
    ],
    "ethtool": {"features": {"tso": False, "gro": False, "lro": False}},
}


def _host_snapshot(name: str) -> tuple[object, ...]:
    data = link(None, name)
    rts = sorted(
        (r.get("dst"), r.get("gateway"), r.get("table", "main"))
        for r in routes(None, name)
        if r.get("table") != "local"
    )
    features = sorted(sh("ethtool", "-k", name).splitlines()[1:])  # every feature and value
    sizes = (data["gso_max_size"], data["gro_max_size"])
    sizes_v4 = tuple(ifla_u32(HOST_NS, name, attr) for attr in (63, 64))
    return (
        data["mtu"],
        data["address"],
        "UP" in data["flags"],
        addrs(None, name),
        rts,
        features,
        sizes,
        sizes_v4,
    )


def test_full_config_attach_readback_and_detach_restores(lab: Lab) -> None:
    nic = lab.nic()
    give_host_state(nic, 41)
    try:
        before = _host_snapshot(nic.name)
        assert "tcp-segmentation-offload: on" in sh("ethtool", "-k", nic.name)  # pod turns it off
        plan = plan_for(nic, FULL)
        assert AttachPlan.from_json(plan.to_json()) == plan
        pod, path = lab.netns()
        result = attach([plan], path)
        assert result[0].interface_name == "eth99"
        assert link_absent(None, nic.name)

        # --- read back with iproute2 / ethtool
        info = link(pod, "eth99")
        assert info["mtu"] == 4321
        assert info["address"] == "02:11:22:33:44:55"
        assert "UP" in info["flags"]
        assert addrs(pod, "eth99") == {"192.168.77.2/24", "2001:db8:77::2/64"}
        got = {
            (r.get("dst"), r.get("gateway"), r.get("table", "main")) for r in routes(pod, "eth99")
        }
        assert ("198.51.100.0/24", "192.168.77.1", "main") in got
        assert ("192.168.77.1", None, "main") in got
        assert ("2001:db8:99::/64", "2001:db8:77::1", "main") in got
        assert ("203.0.113.0/24", "192.168.77.1", "100") in got
        # host routes replicated (table 141 from the host) and host rule for that table
        assert ("10.141.0.0/24", "10.41.0.254", "141") in got
        rules = {(r.get("priority"), r.get("src"), r.get("table")) for r in ipj(pod, "rule")}
        assert (100, "192.168.77.0", "100") in rules
        assert (1041, "10.41.0.0", "141") in rules
        neigh = {(n["dst"], n["lladdr"]) for n in ipj(pod, "neigh", "show", "nud", "permanent")}
        assert ("192.168.77.50", "02:aa:bb:cc:dd:01") in neigh
        assert ("2001:db8:77::50", "02:aa:bb:cc:dd:02") in neigh
        assert ("10.41.0.9", "02:00:00:00:09:09") in neigh  # host neighbour replicated
        for key, want in (
            ("ipv4/conf/eth99/arp_ignore", "1"),
            ("ipv4/conf/eth99/arp_announce", "2"),
            ("ipv4/conf/eth99/forwarding", "1"),
            ("ipv6/conf/eth99/forwarding", "1"),
        ):
            assert in_ns(pod, "cat", f"/proc/sys/net/{key}").strip() == want
        k = in_ns(pod, "ethtool", "-k", "eth99")
        assert "tcp-segmentation-offload: off" in k
        assert "generic-receive-offload: off" in k
        assert "large-receive-offload: off" in k

        # --- read back with pyroute2 from inside the netns
        with NetNS(pod) as ns:
            (lk,) = ns.link("get", ifname="eth99")
            assert lk.get("mtu") == 4321
            assert lk.get("address") == "02:11:22:33:44:55"
            ips = {
                f"{a.get('address')}/{a['prefixlen']}"
                for a in ns.addr("dump", index=lk["index"])
                if a["scope"] == 0
            }
            assert ips == {"192.168.77.2/24", "2001:db8:77::2/64"}
            t100 = [r.get("dst") for r in ns.route("dump") if r.get("table") == 100]
            assert "203.0.113.0" in t100

        # --- detach restores the host state
        out = detach([plan], path)
        assert out[0].outcome == "returned", out
        assert out[0].errors == ()
        assert link_absent(pod, "eth99")
        assert _host_snapshot(nic.name) == before
        # idempotent
        again = detach([plan], path)
        assert again[0].outcome == "restored"
        assert _host_snapshot(nic.name) == before
    finally:
        drop_rule(41)


def test_big_tcp_sizes_with_mtu_and_detach_restores_the_host_sizes(lab: Lab) -> None:
    """DraNet's BIG TCP example uses 65536 (veth's default); 32768 here, so that both the
    attach and the restore are visible. The sizes stay with the device across netns moves."""
    nic = lab.nic()
    before = _host_snapshot(nic.name)
    assert before[6:] == ((65536, 65536), (65536, 65536))
    plan = plan_for(
        nic,
        {
            "interface": {
                "mtu": 8896,
                "gsoMaxSize": 32768,
                "groMaxSize": 32768,
                "gsoIPv4MaxSize": 32768,
                "groIPv4MaxSize": 32768,
                "addresses": ["10.5.0.2/24"],
            }
        },
    )
    assert plan.host is not None
    assert (plan.host.gso_max_size, plan.host.gso_ipv4_max_size) == (65536, 65536)
    pod, path = lab.netns()
    attach([plan], path)
    info = link(pod, nic.name)
    assert info["mtu"] == 8896
    assert info["gso_max_size"] == 32768
    assert info["gro_max_size"] == 32768
    # iproute2 6.1 and pyroute2 0.9 do not decode the IPv4 variants: raw RTM_GETLINK.
    assert ifla_u32(path, nic.name, 63) == 32768  # IFLA_GSO_IPV4_MAX_SIZE
    assert ifla_u32(path, nic.name, 64) == 32768  # IFLA_GRO_IPV4_MAX_SIZE
    out = detach([plan], path)
    assert out[0].errors == ()
    assert _host_snapshot(nic.name) == before


HOST_NS = "/proc/self/ns/net"  # the test process runs in the host netns


def ifla_u32(ns_path: str, ifname: str, attr: int) -> int | None:
    """Read one u32 IFLA attribute with a hand-made RTM_GETLINK inside the netns."""
    import os
    import socket
    import struct

    from knd.netns.nsfd import NetnsWorker, open_netns

    fd = open_netns(ns_path)
    try:
        with NetnsWorker(fd) as w:
            sock = w.call(socket.socket, socket.AF_NETLINK, socket.SOCK_RAW, 0)
    finally:
        os.close(fd)
    with sock:
        name = ifname.encode() + b"\0"
        nla = struct.pack("=HH", 4 + len(name), 3) + name + b"\0" * (-len(name) % 4)
        body = struct.pack("=BxHiII", 0, 0, 0, 0, 0) + nla
        sock.send(struct.pack("=IHHII", 16 + len(body), 18, 1, 1, 0) + body)  # RTM_GETLINK
        data = sock.recv(65536)
    off = 16 + 16
    length = struct.unpack_from("=I", data)[0]
    while off + 4 <= length:
        alen, atype = struct.unpack_from("=HH", data, off)
        if atype == attr:
            return int(struct.unpack_from("=I", data, off + 4)[0])
        off += (alen + 3) & ~3
    return None


def test_host_addresses_copied_when_none_configured(lab: Lab) -> None:
    nic = lab.nic()
    sh("ip", "addr", "add", "10.6.0.1/24", "dev", nic.name)
    plan = plan_for(nic, {"interface": {"name": "net1"}})
    pod, path = lab.netns()
    res = attach([plan], path)
    assert res[0].ips == ("10.6.0.1/24",)
    assert addrs(pod, "net1") == {"10.6.0.1/24"}
    detach([plan], path)
    assert addrs(None, nic.name) == {"10.6.0.1/24"}


def test_reattach_is_idempotent(lab: Lab) -> None:
    nic = lab.nic()
    plan = plan_for(
        nic,
        {
            "interface": {"name": "net1", "addresses": ["10.7.0.2/24"]},
            "routes": [{"destination": "10.70.0.0/16", "gateway": "10.7.0.1"}],
        },
    )
    pod, path = lab.netns()
    attach([plan], path)
    attach([plan], path)
    assert addrs(pod, "net1") == {"10.7.0.2/24"}
    assert any(r.get("dst") == "10.70.0.0/16" for r in routes(pod, "net1"))


def test_attach_when_the_pod_already_uses_the_devices_ifindex(lab: Lab) -> None:
    """The move asks to keep the host ifindex; a pod whose own interface holds it makes the
    kernel refuse that (EBUSY, nothing moved), and knd moves again under a kernel-chosen
    ifindex: the addresses land on the NIC, never on the pod's interface holding the index."""
    nic = lab.nic()
    plan = plan_for(nic, {"interface": {"name": "net1", "addresses": ["10.8.0.2/24"]}})
    pod, path = lab.netns()
    sh("ip", "-n", pod, "link", "add", "cni0", "index", str(nic.ifindex), "type", "veth",
       "peer", "name", "cni0p")  # fmt: skip
    attach([plan], path)
    net1, cni0 = link(pod, "net1"), link(pod, "cni0")
    assert cni0["ifindex"] == nic.ifindex
    assert net1["ifindex"] != nic.ifindex
    assert addrs(pod, "net1") == {"10.8.0.2/24"}
    assert addrs(pod, "cni0") == set()
    detach([plan], path)
    assert link_absent(pod, "net1")
    assert not link_absent(None, nic.name)  # home, under its own name


def test_attach_keeps_the_ifindex_the_pod_has_free(lab: Lab) -> None:
    nic = lab.nic()
    plan = plan_for(nic, {"interface": {"name": "net1", "addresses": ["10.8.1.2/24"]}})
    pod, path = lab.netns()
    attach([plan], path)
    assert link(pod, "net1")["ifindex"] == nic.ifindex
    assert addrs(pod, "net1") == {"10.8.1.2/24"}
