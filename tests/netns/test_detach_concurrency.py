"""Detach when the pod netns is gone, VRF, eBPF detach, and 16 pods attaching at once.

Veths die with their netns here; a NIC that the kernel hands back (virtio-net) is tested on a
Debian kernel by tests/vm/test_nic_return.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from pyroute2 import netns

from knd.netns.attach import attach
from knd.netns.detach import detach
from knd.netns.errors import AttachError

from .conftest import Lab, addrs, ipj, link, link_absent, routes, sh
from .helpers import plan_for

pytestmark = pytest.mark.netns


def test_detach_after_netns_deleted_reports_gone_for_virtual_nic(lab: Lab) -> None:
    """A veth is destroyed with its netns (a physical NIC would come back): detach reports
    `gone` and does not raise."""
    nic = lab.nic()
    plan = plan_for(nic, {"interface": {"addresses": ["10.20.0.2/24"]}})
    pod, path = lab.netns()
    attach([plan], path)
    netns.remove(pod)
    out = detach([plan], path)
    assert out[0].outcome == "gone"
    out = detach([plan], None)
    assert out[0].outcome == "gone"


def test_detach_finds_nic_returned_by_kernel_under_dev_name(lab: Lab) -> None:
    """Emulates the kernel returning a physical NIC from a destroyed netns under `devN` (veths
    are destroyed instead, so the return is done here by hand): detach without a netns finds it
    by ifindex + MAC, renames it back and restores its addresses and routes."""
    nic = lab.nic()
    sh("ip", "addr", "add", "10.21.0.1/24", "dev", nic.name)
    sh("ip", "route", "add", "10.121.0.0/16", "via", "10.21.0.254", "dev", nic.name)
    plan = plan_for(nic, {"interface": {"name": "eth5", "mtu": 1300}})
    pod, path = lab.netns()
    attach([plan], path)
    sh("ip", "-n", pod, "link", "set", "eth5", "down")
    sh("ip", "-n", pod, "link", "set", "eth5", "netns", "1", "name", "dev7")  # pid 1's netns
    lab.links.append("dev7")
    assert not link_absent(None, "dev7")
    out = detach([plan], None)
    assert out[0].outcome == "restored", out
    assert out[0].errors == ()
    assert link_absent(None, "dev7")
    info = link(None, nic.name)
    assert info["mtu"] == 1500 and "UP" in info["flags"]
    assert addrs(None, nic.name) == {"10.21.0.1/24"}
    assert any(r.get("dst") == "10.121.0.0/16" for r in routes(None, nic.name))


def _kernel_has_vrf() -> bool:
    try:
        with open("/proc/config.gz", "rb") as fh:
            import gzip

            return b"CONFIG_NET_VRF=y" in gzip.decompress(fh.read())
    except OSError:
        return True  # unknown: try for real


def test_vrf(lab: Lab) -> None:
    nic = lab.nic()
    plan = plan_for(
        nic,
        {
            "interface": {"addresses": ["10.22.0.2/24"], "vrf": {"name": "red"}},
            "routes": [{"destination": "10.122.0.0/16", "gateway": "10.22.0.1"}],
        },
    )
    assert plan.pod is not None and plan.pod.vrf is not None
    table = plan.pod.vrf.table
    assert all(r.table == table for r in plan.pod.routes)
    pod, path = lab.netns()
    if not _kernel_has_vrf():
        # This kernel lacks CONFIG_NET_VRF: the device must fail at step vrf, rolled back.
        # The success path, with traffic, is proven on a Debian kernel: tests/vm/test_vrf.py.
        with pytest.raises(AttachError) as info:
            attach([plan], path)
        assert info.value.step == "vrf"
        assert link(None, nic.name)["ifname"] == nic.name
        return
    attach([plan], path)
    assert link(pod, nic.name)["master"] == "red"
    assert any(
        r.get("dst") == "10.122.0.0/16" for r in ipj(pod, "route", "show", "table", str(table))
    )


def test_ebpf_detach_removes_tc_bpf_filters_in_pod_netns(lab: Lab) -> None:
    """TC state does not survive a netns move (the kernel tears qdiscs down), so filters are
    installed on a link already in the pod netns, then removed through a pod-side handle."""
    import os

    from knd.netns import ebpf
    from knd.netns.nsfd import NetnsWorker, open_netns
    from knd.netns.rtnl import iproute_in, link_index

    pod, path = lab.netns()
    sh("ip", "-n", pod, "link", "add", "kn-bpf0", "type", "veth", "peer", "name", "kn-bpf1")
    sh("tc", "-n", pod, "qdisc", "add", "dev", "kn-bpf0", "clsact")
    for hook in ("ingress", "egress"):
        # a classic-BPF classifier ("accept all"): cls_bpf, no compiler needed
        sh(
            "tc",
            "-n",
            pod,
            "filter",
            "add",
            "dev",
            "kn-bpf0",
            hook,
            "prio",
            "7",
            "bpf",
            "bytecode",
            "1,6 0 0 4294967295,",
        )
    sh(
        "tc",
        "-n",
        pod,
        "filter",
        "add",
        "dev",
        "kn-bpf0",
        "ingress",
        "prio",
        "9",
        "protocol",
        "all",
        "u32",
        "match",
        "u32",
        "0",
        "0",
    )
    fd = open_netns(path)
    try:
        with NetnsWorker(fd) as worker:
            ipr = iproute_in(worker)
            try:
                index = link_index(ipr, "kn-bpf0")
                assert index is not None
                removed = ebpf.detach_tc_programs(ipr, index)
                assert ebpf.detach_tc_programs(ipr, index) == ()  # idempotent
            finally:
                ipr.close()
    finally:
        os.close(fd)
    assert set(removed) == {"tc/ingress/bpf prio 7", "tc/egress/bpf prio 7"}
    for hook in ("ingress", "egress"):
        assert "bpf" not in sh("tc", "-n", pod, "filter", "show", "dev", "kn-bpf0", hook)
    assert "u32" in sh("tc", "-n", pod, "filter", "show", "dev", "kn-bpf0", "ingress")


def test_attach_detaches_tcx_programs_that_came_with_the_nic(lab: Lab) -> None:
    """TCX links survive the netns move: attach with disableEbpfPrograms detaches them in the
    pod and reports what it detached."""
    import os

    from knd.host import bpf
    from knd.netns import ebpf
    from knd.netns.nsfd import NetnsWorker, open_netns
    from knd.netns.rtnl import iproute_in, link_index

    nic = lab.nic()
    prog = ebpf.load_accept_all_sched_cls()
    links = [ebpf.tcx_link_create(prog, nic.ifindex, t) for _h, t in bpf.TCX_HOOKS]
    try:
        plan = plan_for(nic, {"interface": {"name": "net1", "disableEbpfPrograms": True}})
        _pod, path = lab.netns()
        res = attach([plan], path)
        assert sorted(x.split("/")[1] for x in res[0].detached_ebpf) == ["egress", "ingress"]
        assert all(x.startswith("tcx/") for x in res[0].detached_ebpf)
        fd = open_netns(path)
        try:
            with NetnsWorker(fd) as worker:
                ipr = iproute_in(worker)
                index = link_index(ipr, "net1")
                ipr.close()
                assert index is not None
                for _hook, attach_type in bpf.TCX_HOOKS:
                    assert worker.call(bpf.tcx_query, index, attach_type) == []
        finally:
            os.close(fd)
    finally:
        for fd in (*links, prog):
            os.close(fd)


def test_sixteen_pods_two_nics_each_concurrently(lab: Lab) -> None:
    pods = []
    for p in range(16):
        nics = [lab.nic(), lab.nic()]
        plans = [
            plan_for(
                nic,
                {
                    "interface": {
                        "name": f"net{i}",
                        "addresses": [f"10.{100 + p}.{i}.2/24"],
                        "mtu": 1400 + p,
                    },
                    "routes": [
                        {"destination": f"10.{200 + p}.{i}.0/24", "gateway": f"10.{100 + p}.{i}.1"}
                    ],
                },
                pod_uid=f"pod-{p}",
            )
            for i, nic in enumerate(nics)
        ]
        name, path = lab.netns()
        pods.append((name, path, nics, plans))

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda t: attach(t[3], t[1]), pods))

    for p, (name, _path, _nics, _plans) in enumerate(pods):
        links = {x["ifname"] for x in ipj(name, "link")} - {"lo"}
        assert links == {"net0", "net1"}
        for i in range(2):
            assert addrs(name, f"net{i}") == {f"10.{100 + p}.{i}.2/24"}
            assert link(name, f"net{i}")["mtu"] == 1400 + p
            dsts = {r.get("dst") for r in routes(name, f"net{i}")}
            assert f"10.{200 + p}.{i}.0/24" in dsts

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda t: detach(t[3], t[1]), pods))
    for (_name, _path, nics, _plans), res in zip(pods, results, strict=True):
        assert [r.outcome for r in res] == ["returned", "returned"]
        for nic in nics:
            assert link(None, nic.name)["mtu"] == 1500
