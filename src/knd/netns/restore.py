"""Give an interface back to the host and restore its captured host state.

Used by detach (StopPodSandbox) and by the attach rollback. Restores, in this order: name,
MTU, MAC (one set-link), GSO/GRO sizes, ethtool features and private flags the pod changed
(they stay with the device across netns moves), alias, admin state, addresses, routes (only
when the link is up: the kernel drops routes of a down link), rules, permanent neighbours.
Every addition treats EEXIST as success, so restoring twice is harmless. Errors do not stop
the remaining steps: they are returned as "step: message" strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from knd.netns.ethtool_apply import apply_features
from knd.netns.plan import SIZE_FIELDS, HostSide
from knd.netns.privflags import apply_private_flags
from knd.netns.rawlink import SIZE_ATTRS, LinkFacts, LinkSocket
from knd.netns.rtnl import add_neighbor, add_rule
from knd.netns.steps import RestoreStep, StepObserver

#: Returns a pyroute2 IPRoute in the host netns, opened on first use by the caller's session.
IprSource = Callable[[], Any]


#: The names the kernel gives a physical NIC it hands back from a destroyed netns when its
#: pod-side name is taken in the host.
_KERNEL_NAME = re.compile(r"^dev[0-9]+$")


def mac_change(current: LinkFacts | None, wanted: str | None) -> str | None:
    """`wanted` when the link's MAC differs from it, else None: a link that cannot set its MAC
    (ipvlan shares its lower device's) refuses any IFLA_ADDRESS with EOPNOTSUPP, even an
    unchanged one, and the whole request with it."""
    if wanted is None or (current is not None and (current.mac or "").lower() == wanted.lower()):
        return None
    return wanted


def same_device(facts: LinkFacts, host: HostSide, pod_mac: str | None = None) -> bool:
    """Whether the link `facts` is the device `host` was captured from.

    Strong identity first: the permanent MAC, then the PCI address (the link's parent
    device), when the plan has one; a device that has a strong identity never matches on its
    (changeable) name or current MAC. Without one (veth, dummy: no permanent MAC, no parent),
    the current MAC must be the host's or the pod-side one."""
    if host.perm_mac:
        return (facts.perm_mac or "") == host.perm_mac
    if host.pci_address:
        return (facts.parent_dev or "") == host.pci_address
    macs = {m for m in (host.mac, pod_mac) if m}
    return (facts.mac or "").lower() in macs


def find_host_link(
    lsock: LinkSocket, host: HostSide, pod_name: str | None = None, pod_mac: str | None = None
) -> int | None:
    """The ifindex of the device `host` in the host, found by identity, never by name alone.

    First its captured name (one raw request; accepted only if `same_device`), then one link
    dump: a link with the same permanent MAC or PCI address under any name; for a device
    without either, a link with the right MAC named as captured, as in the pod (`pod_name`)
    or `devN` (what the kernel names a NIC it hands back from a destroyed netns)."""
    facts = lsock.link(ifname=host.name)
    if facts is not None and same_device(facts, host, pod_mac):
        return facts.index
    return match_link(lsock.links(), host, pod_name, pod_mac)


def match_link(
    links: Iterable[LinkFacts],
    host: HostSide,
    pod_name: str | None = None,
    pod_mac: str | None = None,
) -> int | None:
    """`find_host_link`'s search over a link dump (see there)."""
    strong = bool(host.perm_mac or host.pci_address)
    names = {host.name, pod_name}
    best: int | None = None
    for link in links:
        if not same_device(link, host, pod_mac):
            continue
        if strong:
            return link.index
        if link.name in names or _KERNEL_NAME.match(link.name):
            if link.index == host.ifindex:
                return link.index
            best = link.index if best is None else best
    return best


def restore_host(
    ipr: IprSource,
    lsock: LinkSocket,
    host: HostSide,
    index: int,
    observer: StepObserver | None = None,
) -> list[str]:
    """Restore name/MTU/MAC/sizes/ethtool/alias/admin state/addresses/routes/rules/neighbours
    of `index`; returns one `"STEP: why"` per failed step (each step runs on its own).
    `observer` (tests only; knd.netns.steps) is called before each step; raising fails it."""
    errors: list[str] = []

    def attempt(step: RestoreStep, fn: Any, *args: Any) -> None:
        try:
            if observer is not None:
                observer.on_step(step, host.name)
            fn(*args)
        except Exception as exc:
            errors.append(f"{step}: {exc}")

    info = lsock.link(index)
    if info is not None and info.name != host.name:
        attempt(RestoreStep.RENAME, lambda: lsock.setlink(index, up=False))
        attempt(RestoreStep.RENAME, lambda: lsock.setlink(index, ifname=host.name))
    mac = mac_change(lsock.link(index), host.mac)
    attempt(RestoreStep.LINK, lambda: lsock.setlink(index, mtu=host.mtu, mac=mac))
    sizes = {
        kind: value
        for kind, name in zip(SIZE_ATTRS, SIZE_FIELDS, strict=True)
        if (value := getattr(host, name)) is not None
    }
    if sizes:
        attempt(RestoreStep.SIZES, lambda: lsock.setlink(index, u32=sizes))
    if host.features or host.private_flags:
        current = lsock.link(index)
        ifname = current.name if current is not None else host.name
        if host.features:
            attempt(RestoreStep.ETHTOOL, apply_features, ifname, host.features)
        if host.private_flags:
            attempt(RestoreStep.PRIVATE_FLAGS, apply_private_flags, ifname, host.private_flags)
    if host.alias:
        attempt(RestoreStep.ALIAS, lambda: lsock.setlink(index, alias=host.alias))
    for cidr in host.addresses:
        attempt(RestoreStep.ADDRESS, lsock.add_address, index, cidr)
    if host.up:
        attempt(RestoreStep.UP, lambda: lsock.setlink(index, up=True))
        for route in sorted(host.routes, key=lambda r: 0 if r.scope == 253 else 1):
            attempt(RestoreStep.ROUTE, lsock.add_route, index, route)
    for rule in host.rules:
        attempt(RestoreStep.RULE, lambda r=rule: add_rule(ipr(), r))
    for neigh in host.neighbors:
        attempt(RestoreStep.NEIGHBOR, lambda n=neigh: add_neighbor(ipr(), index, n))
    return errors
