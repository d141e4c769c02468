"""TC eBPF filter names reach the published attributes (`dra.net/tcFilterNames`, `ebpf`):
a real SCHED_CLS program (loaded with bpf(2)) attached as a named direct-action cls_bpf filter
on a veth in a throwaway netns, then `knd inventory -o json` run inside that netns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from knd.netns import ebpf
from knd.netns.nsfd import NetnsWorker, open_netns
from tests.netns.conftest import unique

KND = [sys.executable, "-m", "knd.cli.main"]


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
    out = subprocess.run(
        ["ip", "netns", "exec", ns, *KND, "inventory", "-o", "json", "--filter", ""],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    devices = {d["name"]: d["attributes"] for d in json.loads(out)}
    assert devices["kitc0"]["dra.net/tcFilterNames"] == {"string": "knd_2,knd_3"}
    assert devices["kitc0"]["dra.net/ebpf"] == {"bool": True}
    assert devices["kitc1"]["dra.net/ebpf"] == {"bool": False}
    assert "dra.net/tcFilterNames" not in devices["kitc1"]
