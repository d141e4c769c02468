"""The lab end to end: `knd lab` (API server emulator, scheduler + kubelet emulators — EMULATED)
around the real pieces (containerd 2, knd's daemon as a process, veth NICs, pod netns).

Scenarios equivalent to DraNet's e2e suite (tests/e2e.bats), each driven through the API
server like a user would: claims/templates and pods are created, the controller allocates,
the kubelet emulator prepares and runs the pod through CRI, and the assertions look inside the
pod (ExecSync, or nsenter into its netns for tools busybox lacks) and at the claim's status.
Plus: `knd explain --lab`, schema rejection, and the aligned GPU+NIC allocation.

One lab per module (~5 s to start); NICs are `klt0..7` in a fabric netns of their own.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from knd.cli.main import main as knd_main
from knd.driver.store import StateStore
from knd.lab import lab as labmod
from knd.lab.controller import ANN_SANDBOX
from knd.lab.cri import CriClient
from knd.lab.restapi import RestClient, RestError
from tests.e2e.conftest import _skip_reason

pytestmark = pytest.mark.e2e
PREFIX = "klt"
NODE = "knd-lab"


@dataclass
class Lab:
    cfg: labmod.LabConfig
    api: RestClient
    state: dict[str, Any]

    def nic(self, i: int) -> str:
        return f"{PREFIX}{i}"


def must(obj: dict[str, Any] | None) -> dict[str, Any]:
    """An object the test knows exists (the emulator's `get` answers None when absent)."""
    assert obj is not None
    return obj


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = _skip_reason()
    if reason:
        print(f"SKIP e2e: {reason}")
        pytest.skip(reason)
    cfg = labmod.LabConfig(
        state_dir=tmp_path_factory.mktemp("lab") / "state",
        nic_prefix=PREFIX,
        fabric=f"klt-fabric-{os.getpid()}",
        emulated=True,
    )
    try:
        state = labmod.up(cfg, out=io.StringIO())
        yield Lab(cfg, RestClient(state["apiserver"]), state)
    finally:
        for log in ("driver", "controller"):
            path = cfg.state_dir / f"{log}.log"
            if path.exists():
                print(f"--- {log}.log (tail)\n" + "\n".join(path.read_text().splitlines()[-40:]))
        labmod.down(cfg, out=io.StringIO())


def _wait(cond: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    value = cond()
    assert value, f"timed out waiting for {what}"
    return value


def _host_nics(lab: Lab) -> set[str]:
    with IPRoute() as ipr:
        return {lab.nic(i) for i in range(8) if ipr.link_lookup(ifname=lab.nic(i))}


@pytest.fixture
def clean(lab: Lab) -> Iterator[Lab]:
    """Each scenario starts and ends with no pods, no claims and all 8 NICs on the host."""
    yield lab
    for pod in lab.api.list("Pod"):
        lab.api.delete("Pod", pod["metadata"]["name"], pod["metadata"]["namespace"])

    def settled() -> bool:
        claims = lab.api.list("ResourceClaim")
        return (
            not any((c.get("status") or {}).get("reservedFor") for c in claims)
            and len(_host_nics(lab)) == 8
        )

    _wait(settled, 60, "pod teardown")
    for claim in lab.api.list("ResourceClaim"):
        lab.api.delete("ResourceClaim", claim["metadata"]["name"], "default")
    with IPRoute() as ipr:  # host state a scenario set up on a NIC must not leak into the next
        for i in range(8):
            for idx in ipr.link_lookup(ifname=lab.nic(i)):
                ipr.flush_addr(index=idx)
    for tmpl in lab.api.list("ResourceClaimTemplate"):
        lab.api.delete("ResourceClaimTemplate", tmpl["metadata"]["name"], "default")


def nic_request(name: str, ifname: str | None = None, cls: str = "dra.net") -> dict[str, Any]:
    exact: dict[str, Any] = {"deviceClassName": cls}
    if ifname:
        exact["selectors"] = [
            {"cel": {"expression": f'device.attributes["dra.net"].ifName == "{ifname}"'}}
        ]
    return {"name": name, "exactly": exact}


def claim(
    name: str,
    params: dict[str, Any] | None,
    ifname: str | None = None,
    requests: list[dict[str, Any]] | None = None,
    configs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    devices: dict[str, Any] = {"requests": requests or [nic_request("nic", ifname)]}
    if params is not None:
        devices["config"] = [{"opaque": {"driver": "dra.net", "parameters": params}}]
    if configs:
        devices["config"] = configs
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"devices": devices},
    }


def pod(name: str, claims: dict[str, str], template: bool = False) -> dict[str, Any]:
    key = "resourceClaimTemplateName" if template else "resourceClaimName"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["/bin/busybox", "sleep", "100000"],
                    "resources": {"claims": [{"name": n} for n in claims]},
                }
            ],
            "resourceClaims": [{"name": n, key: c} for n, c in claims.items()],
        },
    }


def running(lab: Lab, name: str, timeout: float = 60) -> dict[str, Any]:
    def get() -> dict[str, Any] | None:
        p = lab.api.get("Pod", name, "default")
        return p if p and (p.get("status") or {}).get("phase") == "Running" else None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := get()) is not None:
            return got
        time.sleep(0.1)
    raise AssertionError(f"pod {name} not running: {lab.api.get('Pod', name, 'default')}")


def start(lab: Lab, *objs: dict[str, Any]) -> dict[str, Any]:
    """Create the objects; wait for the (last) pod to run and return it."""
    for obj in objs:
        lab.api.create(obj)
    pods = [o for o in objs if o["kind"] == "Pod"]
    return running(lab, pods[-1]["metadata"]["name"]) if pods else {}


def sh(lab: Lab, p: dict[str, Any], *cmd: str) -> str:
    code, out = labmod.pod_exec(lab.cfg, p, ["/bin/busybox", *cmd])
    assert code == 0, (cmd, out)
    return out


def netns_of(lab: Lab, p: dict[str, Any]) -> str:
    cri = CriClient(lab.state["runtime"]["socket"])
    try:
        path = cri.pod_netns(p["metadata"]["annotations"][ANN_SANDBOX])
    finally:
        cri.close()
    assert path
    return path


def in_netns(netns: str, *cmd: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net={netns}", *cmd], check=True, capture_output=True, text=True
    ).stdout


def devices_status(lab: Lab, name: str) -> list[dict[str, Any]]:
    def entries() -> list[dict[str, Any]] | None:
        c = lab.api.get("ResourceClaim", name, "default") or {}
        devs = [d for d in (c.get("status") or {}).get("devices") or [] if d.get("networkData")]
        return devs or None

    got: list[dict[str, Any]] = _wait(entries, 15, f"status.devices of {name}")
    return got


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


_RAW_GETLINK = """
import json, socket, struct, sys
name = sys.argv[1].encode() + b"\\0"
attr = struct.pack("HH", 4 + len(name), 3) + name + b"\\0" * (-len(name) % 4)
body = struct.pack("BxHiII", 0, 0, 0, 0, 0) + attr
msg = struct.pack("IHHII", 16 + len(body), 18, 1, 1, 0) + body
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.send(msg)
data = s.recv(65536)
off, out = 32, {}
while off + 4 <= len(data):
    length, kind = struct.unpack_from("HH", data, off)
    if length < 4:
        break
    if kind in (4, 41, 58, 63, 64):
        out[str(kind)] = struct.unpack_from("I", data, off + 4)[0]
    off += (length + 3) & ~3
print(json.dumps(out))
"""


# -- DraNet e2e equivalents ---------------------------------------------------------------------
def test_static_ip_rename_eth99_and_network_data(clean: Lab) -> None:
    lab, c = clean, uniq("static")
    p = start(
        lab,
        claim(c, {"interface": {"name": "eth99", "addresses": ["169.254.169.13/24"]}}, lab.nic(0)),
        pod(uniq("p"), {"nic": c}),
    )
    assert "inet 169.254.169.13/24" in sh(lab, p, "ip", "-o", "addr", "show", "dev", "eth99")
    assert lab.nic(0) not in _host_nics(lab)
    (entry,) = devices_status(lab, c)
    assert entry["networkData"]["interfaceName"] == "eth99"
    assert entry["networkData"]["ips"] == ["169.254.169.13/24"]


def test_routes(clean: Lab) -> None:
    lab, c = clean, uniq("routes")
    params = {
        "interface": {"addresses": ["192.0.2.10/24"]},
        "routes": [
            {"destination": "198.51.100.0/24", "gateway": "192.0.2.1"},
            {"destination": "203.0.113.0/24", "scope": 253},
        ],
    }
    p = start(lab, claim(c, params, lab.nic(1)), pod(uniq("p"), {"nic": c}))
    routes = sh(lab, p, "ip", "route")
    assert f"198.51.100.0/24 via 192.0.2.1 dev {lab.nic(1)}" in routes
    assert f"203.0.113.0/24 dev {lab.nic(1)} scope link" in routes


def test_mtu_mac_ethtool(clean: Lab) -> None:
    lab, c = clean, uniq("adv")
    params = {
        "interface": {
            "name": "dranet0",
            "addresses": ["192.168.50.10/24"],
            "mtu": 4321,
            "hardwareAddr": "00:11:22:33:44:55",
        },
        "ethtool": {
            "features": {"tcp-segmentation-offload": False, "generic-receive-offload": False}
        },
    }
    p = start(lab, claim(c, params, lab.nic(2)), pod(uniq("p"), {"nic": c}))
    assert sh(lab, p, "cat", "/sys/class/net/dranet0/mtu").strip() == "4321"
    assert sh(lab, p, "cat", "/sys/class/net/dranet0/address").strip() == "00:11:22:33:44:55"
    features = in_netns(netns_of(lab, p), "ethtool", "-k", "dranet0")
    assert "tcp-segmentation-offload: off" in features
    assert "generic-receive-offload: off" in features


def test_big_tcp_sizes(clean: Lab) -> None:
    lab, c = clean, uniq("bigtcp")
    params = {
        "interface": {
            "mtu": 8896,
            "gsoMaxSize": 65536,
            "groMaxSize": 65536,
            "gsoIPv4MaxSize": 65536,
            "groIPv4MaxSize": 65536,
        }
    }
    p = start(lab, claim(c, params, lab.nic(3)), pod(uniq("p"), {"nic": c}))
    # Neither this iproute2 nor pyroute2 decodes the IPv4 sizes: a raw RTM_GETLINK in the pod
    # netns reads IFLA_MTU (4), GSO_MAX_SIZE (41), GRO_MAX_SIZE (58), GSO/GRO_IPV4_MAX_SIZE (63/64).
    got = json.loads(in_netns(netns_of(lab, p), sys.executable, "-c", _RAW_GETLINK, lab.nic(3)))
    assert got == {"4": 8896, "41": 65536, "58": 65536, "63": 65536, "64": 65536}, got


def test_arp_sysctls(clean: Lab) -> None:
    lab, c = clean, uniq("arp")
    params = {"interface": {"name": "dranet-arp", "arpIgnore": 1, "arpAnnounce": 2}}
    p = start(lab, claim(c, params, lab.nic(4)), pod(uniq("p"), {"nic": c}))
    conf = "/proc/sys/net/ipv4/conf/dranet-arp"
    assert sh(lab, p, "cat", f"{conf}/arp_ignore").strip() == "1"
    assert sh(lab, p, "cat", f"{conf}/arp_announce").strip() == "2"


def test_two_nics_in_one_pod(clean: Lab) -> None:
    lab, c = clean, uniq("two")
    requests = [nic_request("a", lab.nic(5)), nic_request("b", lab.nic(6))]
    configs = [
        {
            "requests": ["a"],
            "opaque": {
                "driver": "dra.net",
                "parameters": {"interface": {"name": "neta", "addresses": ["10.88.0.1/24"]}},
            },
        },
        {
            "requests": ["b"],
            "opaque": {
                "driver": "dra.net",
                "parameters": {"interface": {"name": "netb", "addresses": ["10.89.0.1/24"]}},
            },
        },
    ]
    p = start(lab, claim(c, None, requests=requests, configs=configs), pod(uniq("p"), {"nics": c}))
    addrs = sh(lab, p, "ip", "-o", "addr")
    assert "neta    inet 10.88.0.1/24" in " ".join([addrs]) or "neta inet 10.88.0.1/24" in " ".join(
        addrs.split()
    )
    assert "netb inet 10.89.0.1/24" in " ".join(addrs.split())

    def both() -> list[dict[str, Any]] | None:
        got = devices_status(lab, c)
        return got if len(got) == 2 else None

    names = sorted(e["networkData"]["interfaceName"] for e in _wait(both, 15, "two entries"))
    assert names == ["neta", "netb"]


def test_pod_recreated_on_the_same_nic(clean: Lab) -> None:
    """A Deployment-style re-creation: the same claim, a new pod, the NIC comes back to it."""
    lab, c = clean, uniq("reapply")
    params = {"interface": {"name": "net1", "addresses": ["10.90.0.5/24"]}}
    first = uniq("p")
    p = start(lab, claim(c, params, lab.nic(7)), pod(first, {"nic": c}))
    device = must(lab.api.get("ResourceClaim", c, "default"))["status"]["allocation"]["devices"][
        "results"
    ][0]
    lab.api.delete("Pod", first, "default")
    _wait(lambda: lab.nic(7) in _host_nics(lab), 30, "NIC back on the host")
    second = start(lab, pod(uniq("p"), {"nic": c}))
    assert "inet 10.90.0.5/24" in sh(lab, second, "ip", "-o", "addr", "show", "dev", "net1")
    again = must(lab.api.get("ResourceClaim", c, "default"))["status"]["allocation"]["devices"][
        "results"
    ][0]
    assert again["device"] == device["device"]
    assert p["metadata"]["uid"] != second["metadata"]["uid"]


def test_permanent_neighbours_copied(clean: Lab) -> None:
    lab, c, nic = clean, uniq("neigh"), clean.nic(0)
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=nic)[0]
        ipr.addr("add", index=idx, address="192.0.2.30", prefixlen=24)
        ipr.addr("add", index=idx, address="2001:db8:7::30", prefixlen=64, family=10)
        ipr.neigh("add", dst="192.0.2.1", lladdr="02:00:00:00:00:aa", ifindex=idx, state=0x80)
        ipr.neigh(
            "add",
            dst="2001:db8:7::1",
            lladdr="02:00:00:00:00:aa",
            ifindex=idx,
            state=0x80,
            family=10,
        )
    p = start(lab, claim(c, {"interface": {"name": "eth99"}}, nic), pod(uniq("p"), {"nic": c}))
    neigh = sh(lab, p, "ip", "neigh", "show", "dev", "eth99")
    for dst in ("192.0.2.1", "2001:db8:7::1"):
        assert re.search(rf"^{dst} lladdr 02:00:00:00:00:aa .*PERMANENT$", neigh, re.M), neigh


def test_rules_and_non_main_tables_copied(clean: Lab) -> None:
    lab, c, nic = clean, uniq("rules"), clean.nic(1)
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=nic)[0]
        ipr.addr("add", index=idx, address="10.231.30.2", prefixlen=24)
        ipr.route("add", dst="10.231.40.0/24", gateway="10.231.30.1", oif=idx, table=100)
        ipr.rule("add", src="10.231.30.0", src_len=24, table=100, priority=500)
    try:
        name = uniq("p")
        p = start(lab, claim(c, None, nic), pod(name, {"nic": c}))
        assert "from 10.231.30.0/24 lookup 100" in sh(lab, p, "ip", "rule")
        table = sh(lab, p, "ip", "route", "show", "table", "100")
        assert f"10.231.40.0/24 via 10.231.30.1 dev {nic}" in table
        lab.api.delete("Pod", name, "default")
        _wait(lambda: nic in _host_nics(lab), 30, "NIC back on the host")
        with IPRoute() as ipr:  # knd restored the host's rule with the NIC
            assert any(r.get("FRA_PRIORITY") == 500 for r in ipr.get_rules(family=2))
    finally:
        with IPRoute() as ipr:
            for r in ipr.get_rules(family=2):
                if r.get("FRA_PRIORITY") == 500 and r.get("FRA_TABLE") == 100:
                    ipr.rule("del", src="10.231.30.0", src_len=24, table=100, priority=500)
            for idx in ipr.link_lookup(ifname=nic):
                for _ in ipr.get_routes(table=100, oif=idx):
                    ipr.route("del", dst="10.231.40.0/24", table=100, oif=idx)


def test_ipv6_subnet_route_without_duplicates(clean: Lab) -> None:
    lab, c = clean, uniq("v6")
    params = {"interface": {"addresses": ["2001:db8:1::10/64"]}}
    p = start(lab, claim(c, params, lab.nic(2)), pod(uniq("p"), {"nic": c}))
    routes = [
        line
        for line in sh(lab, p, "ip", "-6", "route").splitlines()
        if line.startswith("2001:db8:1::/64")
    ]
    assert len(routes) == 1, routes


def test_policy_routing_through_a_router_pod(clean: Lab) -> None:
    """client (10.1.0.2, rule → table 100 via the router) ⇄ router (forwarding) ⇄ server."""
    lab = clean

    def cfg(req: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"requests": [req], "opaque": {"driver": "dra.net", "parameters": params}}

    left, right, rtr = uniq("left"), uniq("right"), uniq("router")
    lab.api.create(
        claim(
            rtr,
            None,
            requests=[nic_request("a", lab.nic(3)), nic_request("b", lab.nic(4))],
            configs=[
                cfg(
                    "a",
                    {
                        "interface": {
                            "name": "left0",
                            "addresses": ["10.1.0.1/24"],
                            "forwarding": True,
                        }
                    },
                ),
                cfg(
                    "b",
                    {
                        "interface": {
                            "name": "right0",
                            "addresses": ["10.2.0.1/24"],
                            "forwarding": True,
                        }
                    },
                ),
            ],
        )
    )
    lab.api.create(
        claim(
            left,
            {
                "interface": {"name": "net1", "addresses": ["10.1.0.2/24"]},
                "routes": [{"destination": "10.2.0.0/24", "gateway": "10.1.0.1", "table": 100}],
                "rules": [{"priority": 100, "source": "10.1.0.2/32", "table": 100}],
            },
            lab.nic(5),
        )
    )
    lab.api.create(
        claim(
            right,
            {
                "interface": {"name": "net1", "addresses": ["10.2.0.2/24"]},
                "routes": [{"destination": "10.1.0.0/24", "gateway": "10.2.0.1", "table": 100}],
                "rules": [{"priority": 100, "source": "10.2.0.2/32", "table": 100}],
            },
            lab.nic(6),
        )
    )
    start(lab, pod(uniq("router"), {"nics": rtr}))
    server = start(lab, pod(uniq("server"), {"nic": right}))
    client = start(lab, pod(uniq("client"), {"nic": left}))
    assert "lookup 100" in sh(lab, client, "ip", "rule")
    out = sh(lab, client, "ping", "-c", "2", "-W", "3", "-I", "10.1.0.2", "10.2.0.2")
    assert "2 packets received" in out, out
    assert sh(lab, server, "ip", "-o", "addr", "show", "dev", "net1")


def _vrf_supported() -> bool:
    r = subprocess.run(
        ["ip", "link", "add", "kltvrfprobe", "type", "vrf", "table", "10"],
        check=False,
        capture_output=True,
    )
    if r.returncode == 0:
        subprocess.run(["ip", "link", "del", "kltvrfprobe"], check=False, capture_output=True)
    return r.returncode == 0


def test_vrf_through_a_router_pod_or_a_clean_failure(clean: Lab) -> None:
    """With CONFIG_NET_VRF the router's NIC is enslaved to the VRF; without it (this kernel)
    the attach fails cleanly: the sandbox fails with the reason, the NIC is back on the host."""
    lab, c = clean, uniq("vrf")
    params = {
        "interface": {"name": "left0", "addresses": ["10.1.0.1/24"], "vrf": {"name": "test-vrf"}}
    }
    lab.api.create(claim(c, params, lab.nic(7)))
    name = uniq("vrfpod")
    lab.api.create(pod(name, {"nic": c}))
    if _vrf_supported():
        p = running(lab, name)
        assert "master test-vrf" in sh(lab, p, "ip", "link", "show", "left0")
        return

    def failed() -> list[dict[str, Any]]:
        return [
            e
            for e in lab.api.list("Event", "default")
            if e["involvedObject"]["name"] == name and e["reason"] == "FailedCreatePodSandBox"
        ]

    events = _wait(failed, 30, "FailedCreatePodSandBox event")
    assert "vrf" in events[0]["message"].lower(), events[0]["message"]
    got = must(lab.api.get("Pod", name, "default"))
    assert got["status"]["phase"] == "Pending"
    assert lab.nic(7) in _host_nics(lab), "the NIC went back to the host"


def test_metrics_endpoint(clean: Lab) -> None:
    lab = clean
    with urllib.request.urlopen(lab.state["metrics"] + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert "process_start_time_seconds" in text
    assert "published_devices" in text


def test_driver_restart_while_a_pod_is_deleted(clean: Lab) -> None:
    """Pod deleted while knd is down: the kubelet's unprepare fails until knd is back, then
    succeeds; knd's state forgets the claim only then."""
    lab, c = clean, uniq("restart")
    name = uniq("p")
    start(lab, claim(c, {"interface": {"name": "net1"}}, lab.nic(0)), pod(name, {"nic": c}))
    claim_uid = must(lab.api.get("ResourceClaim", c, "default"))["metadata"]["uid"]
    db = lab.cfg.state_dir / "knd.db"
    labmod.stop_driver(lab.cfg)
    lab.api.delete("Pod", name, "default")
    cri = CriClient(lab.state["runtime"]["socket"])
    try:
        # The kubelet stops the sandbox, then unprepares (which fails while knd is down).
        _wait(
            lambda: [p for p in cri.list_pods() if p.metadata.name == name and p.state == 1],
            30,
            "sandbox stopped",
        )
    finally:
        cri.close()
    time.sleep(1.0)
    still = must(lab.api.get("ResourceClaim", c, "default"))
    assert still["status"].get("reservedFor"), "released before knd unprepared it"
    store = StateStore(db)
    try:
        assert claim_uid in {x.uid for x in store.claims()}
    finally:
        store.close()
    labmod.start_driver(lab.cfg)
    _wait(
        lambda: (
            not (lab.api.get("ResourceClaim", c, "default") or {})
            .get("status", {})
            .get("reservedFor")
        ),
        60,
        "unprepare after restart",
    )
    store = StateStore(db)
    try:
        assert claim_uid not in {x.uid for x in store.claims()}
    finally:
        store.close()
    _wait(lambda: len(_host_nics(lab)) == 8, 30, "lab NICs")


# -- explain, schema, alignment -------------------------------------------------------------------
def _explain(lab: Lab, path: Path) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = knd_main(["explain", str(path), "--lab", "--lab-state-dir", str(lab.cfg.state_dir)])
    return code, buf.getvalue()


def test_explain_on_the_lab(clean: Lab, tmp_path: Path) -> None:
    lab = clean
    examples = Path(__file__).resolve().parents[2] / "examples" / "lab"
    code, out = _explain(lab, examples / "claim-nic-numa1.yaml")
    assert code == 0, out
    assert "4 of 16 devices kept" in out and "(pcieRoot pci0000:8d)" in out
    code, out = _explain(lab, examples / "claim-two-gpus-one-root.yaml")
    assert code == 1
    assert "UNSATISFIABLE" in out and "matchAttribute resource.kubernetes.io/pcieRoot" in out
    # Devices held by running pods count as taken.
    c = uniq("held")
    start(lab, claim(c, None), pod(uniq("p"), {"nic": c}))
    code, out = _explain(lab, examples / "claim-nic-numa1.yaml")
    assert code == 0
    code, out = _explain(lab, examples / "claim-two-gpus-one-root.yaml")
    assert "already allocated to another claim" in out


def test_bad_resource_slice_is_rejected(lab: Lab) -> None:
    bad: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": "bad-slice"},
        "spec": {
            "driver": "dra.net",
            "nodeName": NODE,
            "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": "ok", "attributes": {"x": {"integer": 1}}}],
        },
    }
    with pytest.raises(RestError) as err:
        lab.api.create(bad)
    assert err.value.code == 422 and "is invalid" in err.value.message
    bad["spec"]["devices"] = [{"name": "ok", "attributes": {"x": {"string": "y" * 65}}}]
    with pytest.raises(RestError) as err:
        lab.api.create(bad)
    assert err.value.code == 422
    assert lab.api.get("ResourceSlice", "bad-slice") is None


def test_aligned_allocation_is_always_aligned(clean: Lab) -> None:
    lab = clean
    template = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "aligned", "namespace": "default"},
        "spec": {
            "spec": {
                "devices": {
                    "requests": [
                        {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}},
                        {"name": "nic", "exactly": {"deviceClassName": "dra.net"}},
                    ],
                    "constraints": [
                        {
                            "requests": ["gpu", "nic"],
                            "matchAttribute": "resource.kubernetes.io/pcieRoot",
                        }
                    ],
                }
            }
        },
    }
    lab.api.create(template)
    names = [f"aligned-{i}" for i in range(9)]
    for n in names:
        lab.api.create(pod(n, {"gpu-nic": "aligned"}, template=True))
    _wait(
        lambda: (
            sum(
                (lab.api.get("Pod", n, "default") or {}).get("status", {}).get("phase") == "Running"
                for n in names
            )
            == 8
        ),
        90,
        "8 aligned pods",
    )
    roots: dict[tuple[str, str], str] = {}
    for s in lab.api.list("ResourceSlice"):
        for d in s["spec"]["devices"]:
            roots[(s["spec"]["driver"], d["name"])] = d["attributes"][
                "resource.kubernetes.io/pcieRoot"
            ]["string"]
    pairs = set()
    allocated = [
        c for c in lab.api.list("ResourceClaim") if (c.get("status") or {}).get("allocation")
    ]
    assert len(allocated) == 8
    for c in allocated:
        results = c["status"]["allocation"]["devices"]["results"]
        by = {r["request"]: roots[(r["driver"], r["device"])] for r in results}
        assert by["gpu"] == by["nic"], results
        pairs.add(by["gpu"])
    assert len(pairs) == 8
    pending = [
        n
        for n in names
        if must(lab.api.get("Pod", n, "default"))["status"].get("phase") != "Running"
    ]
    assert len(pending) == 1
    cond = must(lab.api.get("Pod", pending[0], "default"))["status"]["conditions"][0]
    assert cond["reason"] == "Unschedulable" and "cannot allocate" in cond["message"]


def test_template_without_config_copies_the_host_address(clean: Lab) -> None:
    lab, nic = clean, clean.nic(5)
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=nic)[0]
        ipr.addr("add", index=idx, address="169.254.169.14", prefixlen=32)
    lab.api.create(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "plain", "namespace": "default"},
            "spec": {"spec": {"devices": {"requests": [nic_request("nic", nic)]}}},
        }
    )
    p = start(lab, pod(uniq("p"), {"nic": "plain"}, template=True))
    assert "inet 169.254.169.14/32" in sh(lab, p, "ip", "-o", "addr", "show", "dev", nic)
    (status,) = p["status"]["resourceClaimStatuses"]
    assert devices_status(lab, status["resourceClaimName"])[0]["networkData"]["ips"] == [
        "169.254.169.14/32"
    ]


def test_knd_lab_apply_shows_the_pods_nics_and_claim_status(clean: Lab, tmp_path: Path) -> None:
    lab = clean
    manifest = tmp_path / "m.yaml"
    c = uniq("cli")
    docs = [
        claim(c, {"interface": {"name": "net7", "addresses": ["10.97.0.7/24"]}}, lab.nic(6)),
        pod(uniq("p"), {"nic": c}),
    ]
    manifest.write_text("---\n".join(json.dumps(d) + "\n" for d in docs))
    base = ["lab", "--state-dir", str(lab.cfg.state_dir)]
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = knd_main([*base, "apply", str(manifest)])
    out = buf.getvalue()
    assert code == 0, out
    assert "Running" in out and "NICs inside the pod" in out
    assert "net7 inet 10.97.0.7/24" in out
    assert f"allocated nic -> dra.net/{NODE}/pci-0000-b1-00-0" in out  # klt6 is on pci0000:ad
    assert "interfaceName: net7" in out
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert knd_main([*base, "status"]) == 0
    assert f"claim default/{c}: ['pci-0000-b1-00-0']" in buf.getvalue()
