"""DraNet's e2e scenarios that test_k8s_lab / test_k8s_network do not already cover, on real
Kubernetes (upstream kube-apiserver, controller-manager, scheduler and kubelet; containerd 2).

These ran on the emulated lab (scheduler + kubelet emulators) until that lab was removed; the
mapping of every old scenario to its test is in docs/lab.md. Here: link-scope routes; ethtool
features, big TCP sizes and ARP sysctls (read in the pod's netns, tools busybox lacks run by
nsenter); an IPv6 subnet route without duplicates; IPv4 and IPv6 permanent neighbours copied
from the host; a template without config copying the host's address; a pod re-created on the
same claim; policy routing through a router pod (client ⇄ router ⇄ server, busybox ping); VRF
(this kernel has no CONFIG_NET_VRF: the real kubelet's sandbox fails cleanly and the NIC stays
home; the success path runs in tests/vm/test_vrf.py); knd's metrics endpoint; knd down while a
pod is deleted; `knd explain --lab` with devices held by running pods; a ResourceSlice the real
API server rejects; nine aligned GPU+NIC pods on eight roots; `knd lab apply` / `status` output.

Every assertion reads the kernel (in the pod via CRI exec or nsenter, or the host's links), the
real API server or the real kubelet (its metrics and log) — never knd's own memory. One lab per
module (tests/e2e/k8s_support.py); skips as that module says.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import urllib.request
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from knd.cli.main import main as knd_main
from knd.lab import lab as labmod
from knd.lab.cri import CriClient
from knd.lab.restapi import RestError
from tests.e2e.k8s_support import (
    NODE,
    ROOT,
    Lab,
    _host_nics,
    _wait,
    claim_of,
    clean,
    dra_calls,
    events_of,
    kubelet_metrics,
    lab_fixture,
    nic_claim,
    nic_request,
    pod,
    recreate_lost_nics,
    running,
    sh,
    start,
    uniq,
)

pytestmark = pytest.mark.e2e
lab = lab_fixture()
__all__ = ["clean"]  # fixtures used by name

SANDBOX_READY = 0  # runtime.v1.PodSandboxState


def netns_of(lab: Lab, p: dict[str, Any]) -> str:
    """The pod's network namespace path, from containerd's ready sandbox of the pod's uid."""
    cri = CriClient(lab.state["runtime"]["socket"])
    try:
        for sb in cri.list_pods():
            if sb.metadata.uid == p["metadata"]["uid"] and sb.state == SANDBOX_READY:
                path = cri.pod_netns(sb.id)
                if path:
                    return path
    finally:
        cri.close()
    raise AssertionError(f"no ready sandbox with a netns for pod {p['metadata']['name']}")


def in_netns(netns: str, *cmd: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net={netns}", *cmd], check=True, capture_output=True, text=True
    ).stdout


def one_nic(lab: Lab, i: int, params: dict[str, Any] | None) -> dict[str, Any]:
    """A claim for lab NIC i and a pod using it; returns the running pod."""
    c = uniq("c")
    return start(lab, nic_claim(c, lab.nic(i), params), pod(lab, uniq("p"), {"nic": c}))


# -- interface and route settings --------------------------------------------------------------
def test_routes_with_a_gateway_and_link_scope(clean: Lab) -> None:
    lab = clean
    params = {
        "interface": {"addresses": ["192.0.2.10/24"]},
        "routes": [
            {"destination": "198.51.100.0/24", "gateway": "192.0.2.1"},
            {"destination": "203.0.113.0/24", "scope": 253},
        ],
    }
    p = one_nic(lab, 1, params)
    routes = sh(lab, p, "ip", "route")
    assert f"198.51.100.0/24 via 192.0.2.1 dev {lab.nic(1)}" in routes, routes
    assert f"203.0.113.0/24 dev {lab.nic(1)} scope link" in routes, routes


def test_ethtool_features_mtu_and_mac(clean: Lab) -> None:
    lab = clean
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
    p = one_nic(lab, 2, params)
    assert sh(lab, p, "cat", "/sys/class/net/dranet0/mtu").strip() == "4321"
    assert sh(lab, p, "cat", "/sys/class/net/dranet0/address").strip() == "00:11:22:33:44:55"
    features = in_netns(netns_of(lab, p), "ethtool", "-k", "dranet0")
    assert "tcp-segmentation-offload: off" in features, features
    assert "generic-receive-offload: off" in features, features


# Neither this iproute2 nor pyroute2 decodes the IPv4 big-TCP sizes: a raw RTM_GETLINK in the
# pod's netns reads IFLA_MTU (4), GSO_MAX_SIZE (41), GRO_MAX_SIZE (58) and
# GSO/GRO_IPV4_MAX_SIZE (63/64).
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


def test_big_tcp_sizes(clean: Lab) -> None:
    lab = clean
    params = {
        "interface": {
            "mtu": 8896,
            "gsoMaxSize": 65536,
            "groMaxSize": 65536,
            "gsoIPv4MaxSize": 65536,
            "groIPv4MaxSize": 65536,
        }
    }
    p = one_nic(lab, 3, params)
    got = json.loads(in_netns(netns_of(lab, p), sys.executable, "-c", _RAW_GETLINK, lab.nic(3)))
    assert got == {"4": 8896, "41": 65536, "58": 65536, "63": 65536, "64": 65536}, got


def test_arp_sysctls(clean: Lab) -> None:
    lab = clean
    p = one_nic(lab, 4, {"interface": {"name": "dranet-arp", "arpIgnore": 1, "arpAnnounce": 2}})
    conf = "/proc/sys/net/ipv4/conf/dranet-arp"
    assert sh(lab, p, "cat", f"{conf}/arp_ignore").strip() == "1"
    assert sh(lab, p, "cat", f"{conf}/arp_announce").strip() == "2"


def test_ipv6_subnet_route_without_duplicates(clean: Lab) -> None:
    lab = clean
    p = one_nic(lab, 5, {"interface": {"addresses": ["2001:db8:1::10/64"]}})
    routes = [
        line
        for line in sh(lab, p, "ip", "-6", "route").splitlines()
        if line.startswith("2001:db8:1::/64")
    ]
    assert len(routes) == 1, routes


# -- host state copied into the pod ------------------------------------------------------------
def test_permanent_neighbours_copied_from_the_host(clean: Lab) -> None:
    lab, nic = clean, clean.nic(0)
    with IPRoute() as ipr:
        (idx,) = ipr.link_lookup(ifname=nic)
        ipr.addr("add", index=idx, address="192.0.2.30", prefixlen=24)
        ipr.addr("add", index=idx, address="2001:db8:7::30", prefixlen=64, family=10)
        for dst, family in (("192.0.2.1", 2), ("2001:db8:7::1", 10)):
            ipr.neigh(
                "add",
                dst=dst,
                lladdr="02:00:00:00:00:aa",
                ifindex=idx,
                state=0x80,  # NUD_PERMANENT
                family=family,
            )
    p = one_nic(lab, 0, {"interface": {"name": "eth99"}})
    neigh = sh(lab, p, "ip", "neigh", "show", "dev", "eth99")
    for dst in ("192.0.2.1", "2001:db8:7::1"):
        assert re.search(rf"^{dst} lladdr 02:00:00:00:00:aa .*PERMANENT$", neigh, re.M), neigh


def test_template_without_config_copies_the_host_address(clean: Lab) -> None:
    """DraNet's template scenario: no config at all; the host NIC's address moves with it and is
    the networkData knd writes to the claim the controller-manager made from the template."""
    lab, nic = clean, clean.nic(6)
    with IPRoute() as ipr:
        (idx,) = ipr.link_lookup(ifname=nic)
        ipr.addr("add", index=idx, address="169.254.169.14", prefixlen=32)
    tname = uniq("plain")
    template: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": tname, "namespace": "default"},
        "spec": {"spec": {"devices": {"requests": [nic_request("nic", nic)]}}},
    }
    p = start(lab, template, pod(lab, uniq("p"), {"nic": tname}, template=True))
    assert "inet 169.254.169.14/32" in sh(lab, p, "ip", "-o", "addr", "show", "dev", nic)
    (status,) = p["status"]["resourceClaimStatuses"]

    def ips() -> list[str] | None:
        c = lab.api.get("ResourceClaim", status["resourceClaimName"], "default") or {}
        for d in (c.get("status") or {}).get("devices") or []:
            if d.get("driver") == "dra.net" and d.get("networkData"):
                return list(d["networkData"].get("ips") or [])
        return None

    assert _wait(ips, 30, "networkData of the template's claim") == ["169.254.169.14/32"]


# -- pods and claims ---------------------------------------------------------------------------
def _first_result(lab: Lab, claim: str) -> dict[str, Any]:
    c = lab.api.get("ResourceClaim", claim, "default")
    assert c is not None
    return dict(c["status"]["allocation"]["devices"]["results"][0])


def test_pod_recreated_on_the_same_claim_gets_the_nic_again(clean: Lab) -> None:
    """A Deployment-style re-creation: the same claim, a new pod; the real scheduler allocates
    the same NIC again and knd configures it again."""
    lab, c, nic = clean, uniq("again"), clean.nic(7)
    params = {"interface": {"name": "net1", "addresses": ["10.90.0.5/24"]}}
    first = uniq("p")
    p = start(lab, nic_claim(c, nic, params), pod(lab, first, {"nic": c}))
    device = _first_result(lab, c)["device"]
    lab.api.delete("Pod", first, "default")
    _wait(lambda: lab.api.get("Pod", first, "default") is None, 120, "first pod deleted")
    _wait(lambda: nic in _host_nics(lab), 60, "NIC back on the host")
    second = start(lab, pod(lab, uniq("p"), {"nic": c}))
    assert "inet 10.90.0.5/24" in sh(lab, second, "ip", "-o", "addr", "show", "dev", "net1")
    assert _first_result(lab, c)["device"] == device
    assert p["metadata"]["uid"] != second["metadata"]["uid"]
    assert nic not in _host_nics(lab)


def test_policy_routing_through_a_router_pod(clean: Lab) -> None:
    """client (10.1.0.2, rule → table 100 via the router) ⇄ router (forwarding on both NICs) ⇄
    server (10.2.0.2, the same back): all lab NICs share one L2 segment, so the ping crosses
    only because of the rules and table-100 routes knd put in the pods."""
    lab = clean
    rtr, left, right = uniq("router"), uniq("left"), uniq("right")
    router_configs = {
        "a": {"interface": {"name": "left0", "addresses": ["10.1.0.1/24"], "forwarding": True}},
        "b": {"interface": {"name": "right0", "addresses": ["10.2.0.1/24"], "forwarding": True}},
    }
    lab.api.create(
        claim_of(rtr, [nic_request("a", lab.nic(3)), nic_request("b", lab.nic(4))], router_configs)
    )
    for name, nic, own, other, gw in (
        (left, lab.nic(5), "10.1.0.2", "10.2.0.0/24", "10.1.0.1"),
        (right, lab.nic(6), "10.2.0.2", "10.1.0.0/24", "10.2.0.1"),
    ):
        params = {
            "interface": {"name": "net1", "addresses": [f"{own}/24"]},
            "routes": [{"destination": other, "gateway": gw, "table": 100}],
            "rules": [{"priority": 100, "source": f"{own}/32", "table": 100}],
        }
        lab.api.create(nic_claim(name, nic, params))
    start(lab, pod(lab, uniq("router"), {"nics": rtr}))
    server = start(lab, pod(lab, uniq("server"), {"nic": right}))
    client = start(lab, pod(lab, uniq("client"), {"nic": left}))
    assert "lookup 100" in sh(lab, client, "ip", "rule")
    assert "inet 10.2.0.2/24" in sh(lab, server, "ip", "-o", "addr", "show", "dev", "net1")
    # Any reply proves the path (the first request may wait for two ARP resolutions).
    out = sh(lab, client, "ping", "-c", "3", "-W", "3", "-I", "10.1.0.2", "10.2.0.2")
    received = re.search(r"(\d+) packets received", out)
    assert received is not None and int(received.group(1)) >= 1, out


def _vrf_supported() -> bool:
    r = subprocess.run(
        ["ip", "link", "add", "kk8vrfprobe", "type", "vrf", "table", "10"],
        check=False,
        capture_output=True,
    )
    if r.returncode == 0:
        subprocess.run(["ip", "link", "del", "kk8vrfprobe"], check=False, capture_output=True)
    return r.returncode == 0


def test_vrf_enslaves_the_nic_or_the_sandbox_fails_cleanly(clean: Lab) -> None:
    """With CONFIG_NET_VRF the pod's NIC is enslaved to the VRF. Without it (this machine's
    kernel; the success path with traffic runs in tests/vm/test_vrf.py) knd's attach fails: the
    real kubelet reports FailedCreatePodSandBox naming the VRF, the pod stays Pending, and the
    NIC is back on the host."""
    lab, c, nic = clean, uniq("vrf"), clean.nic(7)
    params = {
        "interface": {"name": "left0", "addresses": ["10.1.0.1/24"], "vrf": {"name": "test-vrf"}}
    }
    name = uniq("vrfpod")
    lab.api.create(nic_claim(c, nic, params))
    lab.api.create(pod(lab, name, {"nic": c}))
    if _vrf_supported():
        p = running(lab, name)
        assert "master test-vrf" in sh(lab, p, "ip", "link", "show", "left0")
        return
    events = _wait(
        lambda: events_of(lab, name, "FailedCreatePodSandBox"), 90, "FailedCreatePodSandBox"
    )
    assert "vrf" in events[0]["message"].lower(), events[0]["message"]
    got = lab.api.get("Pod", name, "default")
    assert got is not None and got["status"]["phase"] == "Pending"
    _wait(lambda: nic in _host_nics(lab), 60, "the NIC back on the host")


# -- knd itself --------------------------------------------------------------------------------
def test_metrics_endpoint(lab: Lab) -> None:
    """knd's /metrics: its process metrics, and the published-device gauges (knd's own and
    DraNet's name) equal to the dra.net devices in the real API server's slices."""
    with urllib.request.urlopen(lab.state["metrics"] + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert "process_start_time_seconds" in text
    in_api = sum(
        len(s["spec"].get("devices") or [])
        for s in lab.api.list("ResourceSlice")
        if s["spec"]["driver"] == "dra.net"
    )
    assert in_api == 8
    for pattern in (
        r"^knd_driver_published_devices (\S+)$",
        r'^dranet_driver_published_devices_total\{feature="total"\} (\S+)$',
    ):
        found = re.search(pattern, text, re.M)
        assert found and float(found.group(1)) == in_api, (pattern, text[-2000:])


def _unprepares(lab: Lab) -> int:
    """NodeUnprepareResources calls that knd answered (the kubelet also counts the ones it
    tried while knd was down: its socket refused them)."""
    calls = dra_calls(kubelet_metrics(lab), "dra.net", "NodeUnprepareResources", status="OK")
    return sum(calls.values())


def test_knd_down_while_a_pod_is_deleted(clean: Lab) -> None:
    """knd is stopped, then its pod is deleted: the real kubelet stops the container but cannot
    unprepare the claim, so the pod stays in the API server (terminating) and the claim stays
    reserved for it. Once knd is back the kubelet unprepares through it, the pod is gone and
    the claim is released."""
    lab, c, name, nic = clean, uniq("down"), uniq("p"), clean.nic(0)
    start(lab, nic_claim(c, nic, {"interface": {"name": "net1"}}), pod(lab, name, {"nic": c}))
    before = _unprepares(lab)
    labmod.stop_driver(lab.cfg)
    restarted = False
    try:
        lab.api.delete("Pod", name, "default")

        def container_stopped() -> bool:
            p = lab.api.get("Pod", name, "default") or {}
            statuses = (p.get("status") or {}).get("containerStatuses") or []
            return bool(statuses) and all("terminated" in (s.get("state") or {}) for s in statuses)

        _wait(container_stopped, 90, "the kubelet to stop the pod's container")
        still = lab.api.get("Pod", name, "default")
        assert still is not None and still["metadata"].get("deletionTimestamp"), still
        claim = lab.api.get("ResourceClaim", c, "default")
        assert claim is not None
        assert [u["name"] for u in claim["status"].get("reservedFor") or []] == [name]
        assert _unprepares(lab) == before, "the kubelet unprepared through a stopped knd"
        labmod.start_driver(lab.cfg)
        restarted = True
        _wait(lambda: lab.api.get("Pod", name, "default") is None, 120, "pod finished")

        def released() -> bool:
            cl = lab.api.get("ResourceClaim", c, "default") or {}
            return not (cl.get("status") or {}).get("reservedFor")

        _wait(released, 60, "the claim released")
        assert _unprepares(lab) > before
    finally:
        if not restarted:
            labmod.start_driver(lab.cfg)
    # A real NIC returns to the host when its netns goes; a lab veth dies with it.
    try:
        _wait(lambda: nic in _host_nics(lab), 30, f"{nic} back on the host")
    except AssertionError:
        print(f"{nic} died with the pod's netns (veth): {recreate_lost_nics(lab)} re-created")


# -- explain, the API server's validation, alignment, the lab CLI ------------------------------
def _explain(lab: Lab, path: Path) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = knd_main(["explain", str(path), "--lab", "--lab-state-dir", str(lab.cfg.state_dir)])
    return code, buf.getvalue()


def test_explain_on_the_lab_counts_devices_held_by_running_pods(clean: Lab) -> None:
    lab = clean
    examples = ROOT / "examples" / "lab"
    code, out = _explain(lab, examples / "claim-nic-numa1.yaml")
    assert code == 0, out
    assert "4 of 16 devices kept" in out and "(pcieRoot pci0000:8d)" in out, out
    code, out = _explain(lab, examples / "claim-two-gpus-one-root.yaml")
    assert code == 1, out
    assert "UNSATISFIABLE" in out and "matchAttribute resource.kubernetes.io/pcieRoot" in out
    one_nic(lab, 4, None)  # the real scheduler allocates lab NIC 4 to a running pod
    code, out = _explain(lab, examples / "claim-nic-numa1.yaml")
    assert code == 0, out
    code, out = _explain(lab, examples / "claim-two-gpus-one-root.yaml")
    assert "already allocated to another claim" in out, out


def test_a_resource_slice_the_schema_rejects_is_refused_by_the_api_server(lab: Lab) -> None:
    """The real kube-apiserver refuses an attribute with two values and a string over the 64
    bytes DRA allows (422 Invalid, the limit knd's publisher keeps); nothing is stored."""
    bad: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": uniq("bad-slice")},
        "spec": {
            "driver": "dra.net",
            "nodeName": NODE,
            "pool": {"name": "bad-pool", "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": "ok", "attributes": {"x": {"int": 1, "string": "y"}}}],
        },
    }
    for attrs in ({"x": {"int": 1, "string": "y"}}, {"x": {"string": "y" * 65}}):
        bad["spec"]["devices"][0]["attributes"] = attrs
        with pytest.raises(RestError) as err:
            lab.api.create(bad)
        assert err.value.code == 422 and "is invalid" in err.value.message, err.value
    assert lab.api.get("ResourceSlice", bad["metadata"]["name"]) is None


def _pcie_roots(lab: Lab) -> dict[tuple[str, str], str]:
    return {
        (s["spec"]["driver"], d["name"]): d["attributes"]["resource.kubernetes.io/pcieRoot"][
            "string"
        ]
        for s in lab.api.list("ResourceSlice")
        for d in s["spec"]["devices"]
        if "resource.kubernetes.io/pcieRoot" in (d.get("attributes") or {})
    }


def test_nine_aligned_pods_on_eight_roots(clean: Lab) -> None:
    """The paper's mechanism on the real scheduler: nine pods, each with a GPU and a NIC under
    `matchAttribute: pcieRoot`; eight run, each pair on its own root, the ninth is
    Unschedulable because no aligned pair is left."""
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
    names = [uniq(f"aligned{i}") for i in range(9)]
    for n in names:
        lab.api.create(pod(lab, n, {"gpu-nic": "aligned"}, template=True))

    def phase(n: str) -> str:
        return str(((lab.api.get("Pod", n, "default") or {}).get("status") or {}).get("phase"))

    def unschedulable(n: str) -> str | None:
        p = lab.api.get("Pod", n, "default") or {}
        for cond in (p.get("status") or {}).get("conditions") or []:
            if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return str(cond.get("message"))
        return None

    def settled() -> bool:
        up = [n for n in names if phase(n) == "Running"]
        return len(up) == 8 and any(unschedulable(n) for n in names if n not in up)

    _wait(settled, 180, "8 aligned pods running and the 9th Unschedulable")
    roots = _pcie_roots(lab)
    allocated = [
        c
        for c in lab.api.list("ResourceClaim", "default")
        if (c.get("status") or {}).get("allocation")
    ]
    assert len(allocated) == 8
    used = set()
    for c in allocated:
        results = c["status"]["allocation"]["devices"]["results"]
        by = {r["request"]: roots[(r["driver"], r["device"])] for r in results}
        assert by["gpu"] == by["nic"], results
        used.add(by["gpu"])
    assert len(used) == 8
    (pending,) = [n for n in names if phase(n) != "Running"]
    msg = unschedulable(pending)
    assert msg and "cannot allocate all claims" in msg, msg


def test_knd_lab_apply_and_status_show_the_pods_nics_and_claim_status(
    clean: Lab, tmp_path: Path
) -> None:
    lab, c = clean, uniq("cli")
    manifest = tmp_path / "m.yaml"
    docs = [
        nic_claim(c, lab.nic(6), {"interface": {"name": "net7", "addresses": ["10.97.0.7/24"]}}),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": uniq("p"), "namespace": "default"},
            "spec": {
                "nodeName": NODE,
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": ["sleep", "100000"],
                        "resources": {"claims": [{"name": "nic"}]},
                    }
                ],
                "resourceClaims": [{"name": "nic", "resourceClaimName": c}],
            },
        },
    ]
    manifest.write_text("---\n".join(json.dumps(d) + "\n" for d in docs))
    base = ["lab", "--state-dir", str(lab.cfg.state_dir)]
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = knd_main([*base, "apply", str(manifest), "--timeout", "120"])
    out = buf.getvalue()
    assert code == 0, out
    device = _first_result(lab, c)["device"]
    assert "Running" in out and "NICs inside the pod" in out, out
    assert "net7 inet 10.97.0.7/24" in out, out
    assert f"allocated nic -> dra.net/{NODE}/{device}" in out, out
    assert "interfaceName: net7" in out, out
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert knd_main([*base, "status"]) == 0
    assert f"claim default/{c}: ['{device}']" in buf.getvalue(), buf.getvalue()
