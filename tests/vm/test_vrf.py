"""VRF success path on a real kernel (this machine's own kernel has no VRF): the pod's NIC is
enslaved to a VRF, its routes live in the VRF table, and traffic flows across the VRF to a peer
NIC on the same qemu hub."""

from __future__ import annotations

import subprocess

from knd.netns.attach import attach
from knd.netns.detach import detach

from .conftest import Namespaces, PlanFn, VNic, ipj, sh

VRF = {
    "interface": {
        "name": "eth9",
        "addresses": ["192.0.2.10/24"],
        "vrf": {"name": "blue", "table": 1100},
    },
    "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.20"}],
}
PEER = {"interface": {"name": "eth9", "addresses": ["192.0.2.20/24", "198.51.100.1/32"]}}


def _ping(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "5", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_vrf_routes_rules_and_traffic(vnics: list[VNic], netns: Namespaces, plan: PlanFn) -> None:
    nic, peer_nic = sorted(vnics, key=lambda n: n.numa)
    pod, pod_path = netns()
    _peer, peer_path = netns()
    p, q = plan(nic, VRF), plan(peer_nic, PEER)
    assert p.pod is not None and p.pod.vrf is not None and p.pod.vrf.table == 1100
    attach([p], pod_path)
    attach([q], peer_path)

    blue = ipj(pod, "-d", "link", "show", "dev", "blue")[0]
    assert blue["linkinfo"]["info_kind"] == "vrf"
    assert blue["linkinfo"]["info_data"]["table"] == 1100
    eth9 = ipj(pod, "-d", "link", "show", "dev", "eth9")[0]
    assert eth9["master"] == "blue" and eth9["address"] == nic.mac
    vrf_routes = {(r["dst"], r.get("gateway")) for r in ipj(pod, "route", "show", "table", "1100")}
    assert ("198.51.100.0/24", "192.0.2.20") in vrf_routes
    assert ("192.0.2.0/24", None) in vrf_routes  # the connected route moved with the VRF
    assert all(r.get("dev") != "eth9" for r in ipj(pod, "route", "show", "table", "main"))
    rules = ipj(pod, "rule", "show")
    assert any("l3mdev" in r for r in rules), rules  # the VRF driver's l3mdev rule
    assert sh("ip", "netns", "exec", pod, "cat", "/proc/sys/net/ipv4/tcp_l3mdev_accept") == "1\n"

    # Traffic across the VRF: the connected peer and the network routed through it.
    assert _ping(pod, "-I", "blue", "192.0.2.20").returncode == 0
    routed = _ping(pod, "-I", "blue", "198.51.100.1")
    assert routed.returncode == 0, routed.stdout + routed.stderr
    # Outside the VRF the pod has no route there.
    assert _ping(pod, "198.51.100.1").returncode != 0

    for plans, path in (([p], pod_path), ([q], peer_path)):
        (back,) = detach(plans, path)
        assert back.outcome == "returned" and not back.errors
    names = {lk["ifname"]: lk["address"] for lk in ipj(None, "link")}
    assert names[nic.ifname] == nic.mac and names[peer_nic.ifname] == peer_nic.mac
