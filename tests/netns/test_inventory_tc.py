"""eBPF program names reach the published attributes (`dra.net/tcFilterNames`,
`tcxProgramNames`, `ebpf`): real SCHED_CLS programs (loaded with bpf(2)) attached as named
direct-action cls_bpf filters, or through TCX bpf links, on veths in a throwaway netns, then
`knd inventory -o json` run inside that netns."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from knd.host.bpf import BPF_TCX_EGRESS, BPF_TCX_INGRESS
from knd.host.netlink import LiveNetlink
from knd.netns import ebpf
from knd.netns.nsfd import NetnsWorker, open_netns
from tests.netns.conftest import unique

KND = [sys.executable, "-m", "knd.cli.main"]


def inventory_in(ns: str) -> dict[str, dict[str, object]]:
    """`knd inventory -o json` run inside `ns` (no admin filter): attributes by device name."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, *KND, "inventory", "-o", "json", "--filter", ""],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {d["name"]: d["attributes"] for d in json.loads(out)["items"]}


@pytest.fixture
def ns() -> Iterator[str]:
    name = unique("ki-tc")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_tc_bpf_filter_names_are_published(ns: str) -> None:
    for cmd in (
        ["link", "add", "kitc0", "type", "veth", "peer", "name", "kitc1"],
        ["link", "set", "kitc0", "up"],
    ):
        subprocess.run(["ip", "-n", ns, *cmd], check=True)
    subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", "kitc0", "clsact"], check=True)
    prog = ebpf.load_accept_all_sched_cls()
    fd = open_netns(f"/run/netns/{ns}")
    worker = NetnsWorker(fd)
    try:

        def attach() -> None:
            with IPRoute() as ipr:
                idx = ipr.link_lookup(ifname="kitc0")[0]
                for parent in ("ffff:fff2", "ffff:fff3"):  # ingress, egress
                    ipr.tc(
                        "add-filter",
                        "bpf",
                        index=idx,
                        handle=0,
                        fd=prog,
                        name=f"knd_{parent[-1]}",
                        parent=parent,
                        classid=1,
                        direct_action=True,
                    )

        worker.call(attach)
    finally:
        worker.close()
        os.close(prog)
    devices = inventory_in(ns)
    assert devices["kitc0"]["dra.net/tcFilterNames"] == {"string": "knd_2,knd_3"}
    assert devices["kitc0"]["dra.net/ebpf"] == {"bool": True}
    assert devices["kitc1"]["dra.net/ebpf"] == {"bool": False}
    assert "dra.net/tcFilterNames" not in devices["kitc1"]


def test_tcx_program_names_are_published(ns: str) -> None:
    """TCX (kernel ≥ 6.6, bpf links): a program named like DraNet's e2e one on the ingress hook
    of one veth end, an unnamed one on the egress hook of the other; both ends count as `ebpf`,
    only the named program is listed. Read by `knd inventory` inside the netns and by
    LiveNetlink(netns) from outside it."""
    subprocess.run(
        ["ip", "-n", ns, "link", "add", "kitx0", "type", "veth", "peer", "name", "kitx1"],
        check=True,
    )
    named = ebpf.load_accept_all_sched_cls("handle_ingress")
    unnamed = ebpf.load_accept_all_sched_cls()
    fd = open_netns(f"/run/netns/{ns}")
    worker = NetnsWorker(fd)
    links: list[int] = []
    try:

        def attach() -> None:
            with IPRoute() as ipr:
                idx0 = ipr.link_lookup(ifname="kitx0")[0]
                idx1 = ipr.link_lookup(ifname="kitx1")[0]
            links.append(ebpf.tcx_link_create(named, idx0, BPF_TCX_INGRESS))
            links.append(ebpf.tcx_link_create(unnamed, idx1, BPF_TCX_EGRESS))

        try:
            worker.call(attach)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise  # anything but "no TCX in this kernel" (< 6.6) is a failure
            reason = f"this kernel has no TCX (Linux < 6.6): {exc}"
            print(f"test_tcx_program_names_are_published: skipped, {reason}", file=sys.stderr)
            pytest.skip(reason)
        devices = inventory_in(ns)
        assert devices["kitx0"]["dra.net/tcxProgramNames"] == {"string": "handle_ingress"}
        assert devices["kitx0"]["dra.net/ebpf"] == {"bool": True}
        assert devices["kitx1"]["dra.net/ebpf"] == {"bool": True}  # unnamed, still eBPF
        assert "dra.net/tcxProgramNames" not in devices["kitx1"]
        snap = {link.name: link for link in LiveNetlink(ns).snapshot().links}
        assert snap["kitx0"].tcx_program_names == ("handle_ingress",)
        assert snap["kitx1"].tcx_attached and snap["kitx1"].tcx_program_names == ()
        assert not snap["lo"].tcx_attached
    finally:
        for link_fd in links:
            os.close(link_fd)  # the bpf links (and the attachments) go with their last fd
        worker.close()
        os.close(fd)
        os.close(named)
        os.close(unnamed)
