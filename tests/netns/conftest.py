"""Fixtures for the netns tests: throwaway network namespaces ("pods", "wires") and veth
"NICs" whose host end stays in the test's netns and whose peer sits in a wire netns.
All names carry the `kn` prefix and a random part so parallel runs do not collide; every
fixture removes what it created."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pyroute2 import IPRoute, netns

NETNS_DIR = "/run/netns"


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("netns tests need root (real network namespaces and veths)")


def unique(prefix: str = "kn") -> str:
    return f"{prefix}{secrets.token_hex(3)}"


@dataclass
class Nic:
    name: str
    ifindex: int
    wire_ns: str
    peer: str


class Lab:
    """Creates namespaces and veth NICs; `cleanup()` removes them all."""

    def __init__(self) -> None:
        self.namespaces: list[str] = []
        self.links: list[str] = []

    def netns(self) -> tuple[str, str]:
        name = unique("kn-ns")
        netns.create(name)
        self.namespaces.append(name)
        return name, f"{NETNS_DIR}/{name}"

    def nic(self, up: bool = True) -> Nic:
        wire, _ = self.netns()
        name = unique("kn")
        peer = name + "p"
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer, "net_ns_fd": wire})
            index = ipr.link_lookup(ifname=name)[0]
            if up:
                ipr.link("set", index=index, state="up")
        sh("ip", "-n", wire, "link", "set", peer, "up")
        self.links.append(name)
        return Nic(name, index, wire, peer)

    def cleanup(self) -> None:
        with IPRoute() as ipr:
            for name in self.links:
                for idx in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=idx)
        for name in self.namespaces:
            with contextlib.suppress(OSError):
                netns.remove(name)


@pytest.fixture
def lab() -> Iterator[Lab]:
    the_lab = Lab()
    try:
        yield the_lab
    finally:
        the_lab.cleanup()


def sh(*args: str) -> str:
    """Run a command (iproute2/ethtool for independent read-back); fail the test on error."""
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def ipj(ns: str | None, *args: str) -> Any:
    """`ip -json [-n ns] args...` parsed."""
    base = ["ip", "-json"] + (["-n", ns] if ns else [])
    out = sh(*base, *args)
    return json.loads(out) if out.strip() else []


def addrs(ns: str | None, dev: str) -> set[str]:
    data = ipj(ns, "addr", "show", "dev", dev)
    return {
        f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"] if a.get("scope") == "global"
    }


def routes(ns: str | None, dev: str) -> list[dict[str, Any]]:
    return [r for r in ipj(ns, "route", "show", "table", "all") if r.get("dev") == dev] + [
        r for r in ipj(ns, "-6", "route", "show", "table", "all") if r.get("dev") == dev
    ]


def link(ns: str | None, dev: str) -> dict[str, Any]:
    return ipj(ns, "-d", "link", "show", "dev", dev)[0]  # type: ignore[no-any-return]


def link_absent(ns: str | None, dev: str) -> bool:
    base = ["ip"] + (["-n", ns] if ns else [])
    return (
        subprocess.run(
            [*base, "link", "show", "dev", dev], check=False, capture_output=True
        ).returncode
        != 0
    )


def in_ns(ns: str, *args: str) -> str:
    return sh("ip", "netns", "exec", ns, *args)


NicFactory = Callable[..., Nic]
