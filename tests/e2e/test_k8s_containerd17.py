"""The real lab's second run: the kubelet on containerd 1.7 (scripts/runtime's 1.7.24) instead
of 2.x — the runtime DraNet users still run most. The basic attach scenario, read from the
real API server (the Node's runtime version, the pod) and the kernel (in the pod and on the host).
"""

from __future__ import annotations

import pytest
from pyroute2 import IPRoute

from tests.e2e.k8s_support import (
    NODE,
    Lab,
    _host_nics,
    _wait,
    clean,
    delete_pod,
    lab_fixture,
    nic_claim,
    pod,
    sh,
    start,
    uniq,
)

pytestmark = pytest.mark.e2e
lab = lab_fixture("1.7")
__all__ = ["clean"]  # fixtures used by name


def test_kubelet_runs_on_containerd_1_7(lab: Lab) -> None:
    node = lab.api.get("Node", NODE)
    assert node is not None
    runtime = node["status"]["nodeInfo"]["containerRuntimeVersion"]
    assert runtime.startswith("containerd://1.7."), runtime


def test_nic_attached_and_returned_on_containerd_1_7(clean: Lab) -> None:
    lab, c, name = clean, uniq("c17"), uniq("p")
    nic = lab.nic(0)
    params = {
        "interface": {
            "name": "eth99",
            "addresses": ["192.0.2.40/24"],
            "mtu": 4321,
            "hardwareAddr": "00:11:22:33:44:17",
        },
        "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}],
    }
    with IPRoute() as ipr:
        (idx,) = ipr.link_lookup(ifname=nic)
        mac = ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")
    p = start(lab, nic_claim(c, nic, params), pod(lab, name, {"nic": c}))
    assert "inet 192.0.2.40/24" in sh(lab, p, "ip", "-o", "addr", "show", "dev", "eth99")
    assert sh(lab, p, "cat", "/sys/class/net/eth99/mtu").strip() == "4321"
    assert sh(lab, p, "cat", "/sys/class/net/eth99/address").strip() == "00:11:22:33:44:17"
    assert "198.51.100.0/24 via 192.0.2.1 dev eth99" in sh(lab, p, "ip", "route")
    assert nic not in _host_nics(lab)
    delete_pod(lab, name)
    _wait(lambda: nic in _host_nics(lab), 60, f"{nic} back on the host")
    with IPRoute() as ipr:
        (idx,) = ipr.link_lookup(ifname=nic)
        link = ipr.get_links(idx)[0]
    assert link.get_attr("IFLA_ADDRESS") == mac
    assert link.get_attr("IFLA_MTU") == 1500
