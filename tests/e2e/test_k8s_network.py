"""knd's network plumbing through real Kubernetes: one and two NICs in a pod, DHCP, RDMA.

The lab (tests/e2e/k8s_support.py) runs upstream kube-apiserver, controller-manager, scheduler
and kubelet on the project-local containerd 2; the kubelet calls knd's NodePrepareResources and
containerd's NRI hands knd the pod sandbox. Every assertion reads the kernel (inside the pod via
CRI exec of busybox `ip`, or the host's links through netlink), the real API server (pods,
claims, Events) or dnsmasq's lease file — never knd's own memory.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute, NetNS

from knd.cli.main import main as knd_main
from tests.e2e.k8s_support import (
    Lab,
    _host_nics,
    _wait,
    claim_of,
    clean,
    delete_pod,
    dra_calls,
    kubelet_metrics,
    lab_fixture,
    nic_request,
    pod,
    sh,
    start,
    uniq,
)

pytestmark = pytest.mark.e2e
lab = lab_fixture()
__all__ = ["clean"]  # fixtures used by name

RT_TABLE = 100


def _link(nic: str) -> Any:
    with IPRoute() as ipr:
        (idx,) = ipr.link_lookup(ifname=nic)
        return ipr.get_links(idx)[0]


def test_two_nics_in_one_pod_each_with_its_own_config(clean: Lab) -> None:
    """One claim, two requests, two NICs: each renamed, addressed (v4 + v6), with its own MTU,
    MAC, routes (main and table 100), rule and permanent neighbours — read back from the pod's
    kernel; both leave the host while the pod runs and come home when it is deleted."""
    lab, c = clean, uniq("two")
    a, b = lab.nic(0), lab.nic(1)
    macs = {n: _link(n).get_attr("IFLA_ADDRESS") for n in (a, b)}
    configs = {
        "a": {
            "interface": {
                "name": "net1",
                "addresses": ["192.0.2.21/24"],
                "mtu": 4000,
                "hardwareAddr": "00:11:22:33:44:01",
            },
            "routes": [
                {"destination": "198.51.100.0/24", "gateway": "192.0.2.1"},
                {"destination": "203.0.113.0/24", "gateway": "192.0.2.1", "table": RT_TABLE},
            ],
            "rules": [{"priority": 100, "source": "192.0.2.21/32", "table": RT_TABLE}],
            "neighbors": [{"destination": "192.0.2.1", "hardwareAddr": "02:00:00:00:00:aa"}],
        },
        "b": {
            "interface": {
                "name": "net2",
                "addresses": ["10.77.0.21/24", "2001:db8:77::21/64"],
                "mtu": 3000,
                "hardwareAddr": "00:11:22:33:44:02",
            },
            "routes": [{"destination": "2001:db8:78::/64", "gateway": "2001:db8:77::1"}],
            "neighbors": [{"destination": "2001:db8:77::1", "hardwareAddr": "02:00:00:00:00:bb"}],
        },
    }
    name = uniq("p")
    p = start(
        lab,
        claim_of(c, [nic_request("a", a), nic_request("b", b)], configs),
        pod(lab, name, {"nics": c}),
    )
    links = sh(lab, p, "ip", "-o", "link", "show")
    assert re.search(r"^\d+: net1[@:]", links, re.M), links
    assert re.search(r"^\d+: net2[@:]", links, re.M), links
    assert a not in links and b not in links, "the NICs keep their host names in the pod"
    assert "inet 192.0.2.21/24" in sh(lab, p, "ip", "-o", "addr", "show", "dev", "net1")
    net2 = sh(lab, p, "ip", "-o", "addr", "show", "dev", "net2")
    assert "inet 10.77.0.21/24" in net2 and "inet6 2001:db8:77::21/64" in net2, net2
    for dev, mtu, mac in (("net1", 4000, "00:11:22:33:44:01"), ("net2", 3000, "00:11:22:33:44:02")):
        assert sh(lab, p, "cat", f"/sys/class/net/{dev}/mtu").strip() == str(mtu)
        assert sh(lab, p, "cat", f"/sys/class/net/{dev}/address").strip() == mac
    assert "198.51.100.0/24 via 192.0.2.1 dev net1" in sh(lab, p, "ip", "route")
    table = sh(lab, p, "ip", "route", "show", "table", str(RT_TABLE))
    assert "203.0.113.0/24 via 192.0.2.1 dev net1" in table, table
    assert f"from 192.0.2.21 lookup {RT_TABLE}" in sh(lab, p, "ip", "rule"), "rule missing"
    assert "2001:db8:78::/64 via 2001:db8:77::1 dev net2" in sh(lab, p, "ip", "-6", "route")
    neigh1 = sh(lab, p, "ip", "neigh", "show", "dev", "net1")
    assert "192.0.2.1 lladdr 02:00:00:00:00:aa" in neigh1 and "PERMANENT" in neigh1, neigh1
    neigh2 = sh(lab, p, "ip", "-6", "neigh", "show", "dev", "net2")
    assert "2001:db8:77::1 lladdr 02:00:00:00:00:bb" in neigh2 and "PERMANENT" in neigh2, neigh2
    assert not {a, b} & _host_nics(lab)
    # the real scheduler gave the one claim both devices; the pod is the claim's only user
    claim = lab.api.get("ResourceClaim", c, "default")
    assert claim is not None
    results = claim["status"]["allocation"]["devices"]["results"]
    assert sorted(r["request"] for r in results) == ["a", "b"]
    assert [u["name"] for u in claim["status"]["reservedFor"]] == [name]
    delete_pod(lab, name)
    _wait(lambda: {a, b} <= _host_nics(lab), 60, "both NICs back on the host")
    for n in (a, b):
        link = _link(n)
        assert link.get_attr("IFLA_ADDRESS") == macs[n], f"{n} MAC not restored"
        assert link.get_attr("IFLA_MTU") == 1500, f"{n} MTU not restored"


@pytest.fixture
def host_state(clean: Lab) -> Iterator[tuple[Lab, str]]:
    """Lab NIC 3 with host state of every kind knd copies and restores: an address, a route in
    main and one in table 100, a rule to that table, a permanent neighbour, MTU and alias."""
    lab = clean
    nic = lab.nic(3)
    with IPRoute() as ipr:
        (idx,) = ipr.link_lookup(ifname=nic)
        ipr.link("set", index=idx, mtu=1400, ifalias="knd-e2e uplink-less NIC")
        ipr.addr("add", index=idx, address="10.231.30.2", prefixlen=24)
        ipr.route("add", dst="10.231.50.0/24", gateway="10.231.30.1", oif=idx)
        ipr.route("add", dst="10.231.40.0/24", gateway="10.231.30.1", oif=idx, table=RT_TABLE)
        ipr.rule("add", src="10.231.30.0", src_len=24, table=RT_TABLE, priority=500)
        ipr.neigh("add", dst="10.231.30.9", lladdr="02:00:00:00:00:cc", ifindex=idx, state=0x80)
    try:
        yield lab, nic
    finally:
        with IPRoute() as ipr:
            for r in ipr.get_rules(family=2):
                if r.get("FRA_PRIORITY") == 500 and r.get("FRA_TABLE") == RT_TABLE:
                    ipr.rule("del", src="10.231.30.0", src_len=24, table=RT_TABLE, priority=500)
            for idx in ipr.link_lookup(ifname=nic):
                for table in (RT_TABLE, 254):
                    ipr.flush_routes(table=table, oif=idx)
                ipr.link("set", index=idx, mtu=1500, ifalias="")
                ipr.flush_addr(index=idx)


def test_host_state_copied_into_the_pod_and_restored_after_delete(
    host_state: tuple[Lab, str],
) -> None:
    """With no config but a name, the pod gets the host's address, routes (main and table
    100), the rule and the neighbour; after the pod is deleted the host has all of it back,
    with the NIC's MTU, MAC and alias, and the kubelet counted the NodeUnprepareResources."""
    lab, nic = host_state
    before = _link(nic)
    unprepares = sum(dra_calls(kubelet_metrics(lab), "dra.net", "NodeUnprepareResources").values())
    c, name = uniq("host"), uniq("p")
    p = start(
        lab,
        claim_of(c, [nic_request("nic", nic)], {"nic": {"interface": {"name": "eth5"}}}),
        pod(lab, name, {"nic": c}),
    )
    assert "inet 10.231.30.2/24" in sh(lab, p, "ip", "-o", "addr", "show", "dev", "eth5")
    assert "10.231.50.0/24 via 10.231.30.1 dev eth5" in sh(lab, p, "ip", "route")
    table = sh(lab, p, "ip", "route", "show", "table", str(RT_TABLE))
    assert "10.231.40.0/24 via 10.231.30.1 dev eth5" in table, table
    assert f"from 10.231.30.0/24 lookup {RT_TABLE}" in sh(lab, p, "ip", "rule")
    neigh = sh(lab, p, "ip", "neigh", "show", "dev", "eth5")
    assert "10.231.30.9 lladdr 02:00:00:00:00:cc" in neigh and "PERMANENT" in neigh, neigh
    assert sh(lab, p, "cat", "/sys/class/net/eth5/mtu").strip() == "1400"
    assert nic not in _host_nics(lab)
    delete_pod(lab, name)
    _wait(lambda: nic in _host_nics(lab), 60, f"{nic} back on the host")
    after = _link(nic)
    for attr in ("IFLA_MTU", "IFLA_ADDRESS", "IFLA_IFALIAS"):
        assert after.get_attr(attr) == before.get_attr(attr), attr
    with IPRoute() as ipr:
        idx = after["index"]
        addrs = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=2)}
        assert "10.231.30.2" in addrs
        main = {r.get_attr("RTA_DST") for r in ipr.get_routes(oif=idx, family=2)}
        assert "10.231.50.0" in main, main
        t100 = {r.get_attr("RTA_DST") for r in ipr.get_routes(oif=idx, table=RT_TABLE)}
        assert "10.231.40.0" in t100, t100
        assert any(
            r.get("FRA_PRIORITY") == 500 and r.get("FRA_TABLE") == RT_TABLE
            for r in ipr.get_rules(family=2)
        )
        neighs = {n.get_attr("NDA_DST"): n for n in ipr.get_neighbours(ifindex=idx)}
        assert neighs["10.231.30.9"].get_attr("NDA_LLADDR") == "02:00:00:00:00:cc"
        assert neighs["10.231.30.9"]["state"] == 0x80  # NUD_PERMANENT
    after_unprepares = dra_calls(kubelet_metrics(lab), "dra.net", "NodeUnprepareResources")
    assert sum(after_unprepares.values()) > unprepares


# -- DHCP from dnsmasq on the lab fabric -------------------------------------------------------
DHCP_NET = "10.33.0"


def _leases(path: Path) -> dict[str, str]:
    """dnsmasq's lease file: ip → MAC (lines: expiry mac ip host client-id)."""
    if not path.exists():
        return {}
    return {f[2]: f[1] for f in (ln.split() for ln in path.read_text().splitlines()) if len(f) >= 3}


@pytest.fixture
def dnsmasq(clean: Lab, tmp_path: Path) -> Iterator[tuple[Lab, Path]]:
    """A real dnsmasq on the lab fabric's bridge (every lab NIC's L2 segment)."""
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq not installed (scripts/system-deps installs dnsmasq-base)")
    lab = clean
    nics = lab.cfg.nics
    leases = tmp_path / "leases"
    with NetNS(nics.fabric) as ns:
        (br,) = ns.link_lookup(ifname=nics.bridge)
        ns.addr("add", index=br, address=f"{DHCP_NET}.1", prefixlen=24)
    proc = subprocess.Popen(
        [
            "ip", "netns", "exec", nics.fabric, "dnsmasq", "--no-daemon", "--port=0",
            "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
            f"--interface={nics.bridge}",
            f"--dhcp-range={DHCP_NET}.50,{DHCP_NET}.60,255.255.255.0,1h",
            "--dhcp-authoritative", "--no-ping",
            f"--dhcp-option=121,198.51.100.0/24,{DHCP_NET}.253",
            f"--dhcp-leasefile={leases}", "--pid-file=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait(lambda: proc.poll() is not None or leases.exists(), 10, "dnsmasq's lease file")
        assert proc.poll() is None, (
            f"dnsmasq exited: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
        yield lab, leases
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        with NetNS(nics.fabric) as ns:
            ns.flush_addr(index=ns.link_lookup(ifname=nics.bridge)[0])


def test_dhcp_address_from_dnsmasq_and_released_on_delete(dnsmasq: tuple[Lab, Path]) -> None:
    """`interface.dhcp`: knd leases an address from the real dnsmasq at prepare; the pod's NIC
    has it, with the lease's classless route (option 121); dnsmasq's lease names the NIC's MAC;
    deleting the pod releases the lease (DHCPRELEASE) and brings the NIC home without it."""
    lab, leases = dnsmasq
    nic = lab.nic(4)
    mac = _link(nic).get_attr("IFLA_ADDRESS")
    c, name = uniq("dhcp"), uniq("p")
    params = {"interface": {"name": "net1", "dhcp": True}}
    p = start(
        lab, claim_of(c, [nic_request("nic", nic)], {"nic": params}), pod(lab, name, {"nic": c})
    )
    addr = sh(lab, p, "ip", "-o", "-4", "addr", "show", "dev", "net1").split()
    got = next(addr[i + 1] for i, w in enumerate(addr) if w == "inet")
    ip, prefix = got.split("/")
    assert prefix == "24" and ip.startswith(f"{DHCP_NET}.") and 50 <= int(ip.rsplit(".")[-1]) <= 60
    assert f"198.51.100.0/24 via {DHCP_NET}.253 dev net1" in sh(lab, p, "ip", "route")
    assert _leases(leases).get(ip) == mac, _leases(leases)
    # the leased address is reachable over the fabric: dnsmasq's side answers a ping
    out = sh(lab, p, "ping", "-c", "1", "-W", "5", f"{DHCP_NET}.1")
    assert "1 packets received" in out, out
    delete_pod(lab, name)
    _wait(lambda: nic in _host_nics(lab), 60, f"{nic} back on the host")
    _wait(lambda: ip not in _leases(leases), 30, "dnsmasq to drop the released lease")
    with IPRoute() as ipr:
        (idx,) = ipr.link_lookup(ifname=nic)
        assert not [a for a in ipr.get_addr(index=idx, family=2)], "leased address left on host"


# -- RDMA on a kernel without RDMA -------------------------------------------------------------
def _rdma_devices() -> list[str]:
    path = Path("/sys/class/infiniband")
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def test_rdma_claim_refused_cleanly_without_rdma(clean: Lab, tmp_path: Path) -> None:
    """No lab NIC has RDMA (this kernel has no RDMA device), so a claim of the chart's
    `dra.net-rdma` class cannot be allocated: the real scheduler leaves the pod Pending and
    Unschedulable with its reason, `knd explain` says UNSATISFIABLE for the same reason, the
    claim stays unallocated, the kubelet never calls knd, no NIC leaves the host, and deleting
    pod and claim leaves nothing behind."""
    lab = clean
    if _rdma_devices():
        pytest.skip(f"this host has RDMA devices {_rdma_devices()}: the scenario needs none")
    rdma_published = [
        d["name"]
        for s in lab.api.list("ResourceSlice")
        if s["spec"]["driver"] == "dra.net"
        for d in s["spec"]["devices"]
        if (d.get("attributes") or {}).get("dra.net/rdma", {}).get("bool")
    ]
    assert rdma_published == [], "a lab NIC claims RDMA"
    prepares = sum(dra_calls(kubelet_metrics(lab), "dra.net", "NodePrepareResources").values())
    c, name = uniq("rdma"), uniq("p")
    claim = claim_of(c, [nic_request("nic", lab.nic(5), device_class="dra.net-rdma")], {})
    claim_file = tmp_path / "claim.yaml"
    claim_file.write_text(json.dumps(claim))
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = knd_main(
            ["explain", str(claim_file), "--lab", "--lab-state-dir", str(lab.cfg.state_dir), "-v"]
        )
    assert rc == 1, buf.getvalue()
    assert "UNSATISFIABLE" in buf.getvalue()
    assert "rdma" in buf.getvalue(), buf.getvalue()
    lab.api.create(claim)
    lab.api.create(pod(lab, name, {"nic": c}))

    def unschedulable() -> dict[str, Any] | None:
        got = lab.api.get("Pod", name, "default") or {}
        for cond in (got.get("status") or {}).get("conditions") or []:
            if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return dict(cond)
        return None

    cond = _wait(unschedulable, 60, "the real scheduler to mark the pod Unschedulable")
    assert "cannot allocate all claims" in cond["message"], cond["message"]
    got = lab.api.get("Pod", name, "default")
    assert got is not None and got["status"]["phase"] == "Pending"
    assert not got["spec"].get("nodeName")
    stored = lab.api.get("ResourceClaim", c, "default")
    assert stored is not None and not (stored.get("status") or {}).get("allocation")
    assert len(_host_nics(lab)) == 8
    delete_pod(lab, name)
    lab.api.delete("ResourceClaim", c, "default")
    _wait(lambda: lab.api.get("ResourceClaim", c, "default") is None, 60, "claim deleted")
    after = sum(dra_calls(kubelet_metrics(lab), "dra.net", "NodePrepareResources").values())
    assert after == prepares, "the kubelet called knd for a claim that was never allocated"
    assert len(_host_nics(lab)) == 8
