"""One discovery scan: host facts → publishable devices with DraNet's attributes + standard ones.

Devices: one per bound PCI network function (class 0x02xxxx), one per standalone RDMA device
(its PCI function is not a network function, e.g. eRDMA class 0x00ff or an IB-only HCA), one per
netdev without a PCI network function that is not excluded. Names follow `knd.api.names`.

Two modes:
* live (`snapshot` given): link facts from netlink; uplinks (default route) and their descendants
  are excluded; `type`, `ipv4`, `ipv6`, `tcFilterNames`, `tcxProgramNames`, `ebpf` are published.
* offline (`snapshot=None`, e.g. `--sysfs-root`): link facts from `class/net/<if>/` files only;
  no netlink attributes and no uplink exclusion.

What is not a device: an entry of `class/net` that is not a symlink (the bonding driver's
`bonding_masters` file lives there); an entry under a function's or netdev's `infiniband/` that is
not a directory with content (a real RDMA device directory holds `node_type`, `ports`, ...).
Every device with a netdev carries `dra.net/sriov` and `dra.net/virtual` (false unless known
true), virtual interfaces such as veths included, as DraNet publishes them.

Time budget: ≤ 100 ms for 256 interfaces (one realpath per link; files read only for PCI
network functions and, offline, for netdevs).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from knd.api import attributes as attr
from knd.api.limits import is_dns_label
from knd.api.names import interface_device_name, pci_device_name
from knd.host import sysfs as hs
from knd.host.confined import S32
from knd.host.netlink import Link, Snapshot
from knd.host.pciids import PciIds
from knd.inventory.limits import fit, list_value
from knd.inventory.model import AttrValue, Device, Discovery, Exclusion
from knd.inventory.uplinks import uplinks

log = logging.getLogger(__name__)

#: Interfaces never published, by name (DraNet's list).
SKIP_NAMES = frozenset({"cilium_net", "cilium_host", "docker0"})


#: Extra attributes for a device (device name, discovered attributes) -> attributes to add.
#: The cloud providers plug in here (knd.inventory.cloud.state.CloudState.enrich).
Enricher = Callable[[str, Mapping[str, AttrValue]], Mapping[str, AttrValue]]


@dataclass(frozen=True, slots=True)
class Options:
    move_ib_interfaces: bool = True
    #: DRAListTypeAttributes (DraNet's gate): resource.kubernetes.io/numaNode as an int list
    list_numa: bool = False
    skip_names: frozenset[str] = SKIP_NAMES
    enrich: Enricher | None = None
    #: `--device-shares`: devices with a netdev (a sub-interface parent) are published shareable
    #: by this many claims (consumable capacity; one of the 32 attribute+capacity slots)
    shares: int = 0


@dataclass(slots=True)
class _Draft:
    name: str
    attrs: dict[str, AttrValue] = field(default_factory=dict)
    pci: hs.PciFunction | None = None


def _pci_attrs(fn: hs.PciFunction, ids: PciIds) -> dict[str, AttrValue]:
    attrs: dict[str, AttrValue] = {attr.PCI_ADDRESS: fn.address, attr.STD_PCI_BUS_ID: fn.address}
    attrs[attr.PCI_VENDOR] = ids.vendor(fn.vendor_id) or fn.vendor_id
    attrs[attr.PCI_DEVICE] = ids.device(fn.vendor_id, fn.device_id) or fn.device_id
    if fn.subsystem_vendor_id and fn.subsystem_device_id:
        sub = ids.subsystem(
            fn.vendor_id, fn.device_id, fn.subsystem_vendor_id, fn.subsystem_device_id
        )
        attrs[attr.PCI_SUBSYSTEM] = sub or f"{fn.subsystem_vendor_id}:{fn.subsystem_device_id}"
    if fn.numa_node is not None:
        attrs[attr.NUMA_NODE] = fn.numa_node
        attrs[attr.STD_NUMA_NODE] = fn.numa_node
    if fn.pcie_root is not None:
        attrs[attr.STD_PCIE_ROOT] = fn.pcie_root
    sriov = (fn.sriov_totalvfs or 0) > 0
    attrs[attr.SRIOV] = sriov
    if sriov:
        attrs[attr.SRIOV_VFS] = fn.sriov_numvfs or 0
    if fn.physfn is not None:
        attrs[attr.IS_SRIOV_VF] = True
    attrs[attr.VIRTUAL] = False
    _rdma(attrs, fn.rdma_devices)
    return attrs


def _rdma_dirs(
    sysfs: hs.SysfsRoot, parts: tuple[str, ...], names: Iterable[str]
) -> tuple[str, ...]:
    """The `names` under `parts` (an `infiniband/` directory) that are RDMA devices: entries that
    list as directories with content. A stray file (or an empty directory) is not a device."""
    return tuple(n for n in names if sysfs.listdir(*parts, n))


def _is_netdev_entry(sysfs: hs.SysfsRoot, name: str) -> bool:
    """`class/net/<name>` is a netdev only when it is a symlink (the kernel links every netdev
    entry into `devices/`); `bonding_masters` is a plain file in the same directory."""
    return sysfs.link_name("class", "net", name) is not None


def _rdma(attrs: dict[str, AttrValue], rdma_devices: Iterable[str]) -> None:
    first = next(iter(sorted(rdma_devices)), None)
    attrs[attr.RDMA] = first is not None
    if first is not None:
        attrs[attr.RDMA_DEVICE] = first


def _link_type_offline(nd: hs.Netdev) -> str | None:
    if nd.pci_address is None:
        return None
    return "ipoib" if nd.arphrd == hs.ARPHRD_INFINIBAND else "device"


def _netdev_attrs_offline(nd: hs.Netdev) -> dict[str, AttrValue]:
    attrs: dict[str, AttrValue] = {attr.IF_NAME: nd.name}
    if nd.address:
        attrs[attr.MAC] = nd.address
    if nd.mtu is not None:
        attrs[attr.MTU] = nd.mtu
    if nd.arphrd is not None:
        attrs[attr.ENCAPSULATION] = hs.ARPHRD_NAMES.get(nd.arphrd, str(nd.arphrd))
    if nd.ifalias:
        attrs[attr.ALIAS] = nd.ifalias
    if nd.operstate:
        attrs[attr.STATE] = nd.operstate
    link_type = _link_type_offline(nd)
    if link_type:
        attrs[attr.TYPE] = link_type
    if nd.speed_mbps:
        attrs[attr.LINK_SPEED] = nd.speed_mbps
    return attrs


def _netdev_attrs_live(link: Link, speed: int | None) -> dict[str, AttrValue]:
    attrs: dict[str, AttrValue] = {attr.IF_NAME: link.name}
    if link.mac:
        attrs[attr.MAC] = link.mac
    if link.mtu is not None:
        attrs[attr.MTU] = link.mtu
    attrs[attr.ENCAPSULATION] = hs.ARPHRD_NAMES.get(link.arphrd, str(link.arphrd))
    if link.alias:
        attrs[attr.ALIAS] = link.alias
    attrs[attr.STATE] = link.operstate
    attrs[attr.TYPE] = link.kind or "device"
    if link.ipv4:
        attrs[attr.IPV4] = list_value(link.ipv4)
    if link.ipv6:
        attrs[attr.IPV6] = list_value(link.ipv6)
    if link.tc_filter_names:
        attrs[attr.TC_FILTER_NAMES] = list_value(link.tc_filter_names)
    if link.tcx_program_names:
        attrs[attr.TCX_PROGRAM_NAMES] = list_value(link.tcx_program_names)
    attrs[attr.EBPF] = bool(link.tc_filter_names) or link.tcx_attached
    if speed:
        attrs[attr.LINK_SPEED] = speed
    return attrs


def _with_real_rdma(sysfs: hs.SysfsRoot, fn: hs.PciFunction) -> hs.PciFunction:
    if not fn.rdma_devices:
        return fn
    parts = ("bus", "pci", "devices", fn.address, "infiniband")
    return dataclasses.replace(fn, rdma_devices=_rdma_dirs(sysfs, parts, fn.rdma_devices))


@dataclass(slots=True)
class _LinkFact:
    """One netdev, the same record whether read live (netlink + sysfs) or offline (sysfs)."""

    name: str
    index: int | None  # the netlink ifindex (live); None offline
    pci: str | None
    virtual: bool | None
    attrs: dict[str, AttrValue]
    rdma: tuple[str, ...]  # RDMA devices under its PCI function's `infiniband/`


@dataclass(slots=True)
class _Drafts:
    """The devices being built, by device name and by PCI address."""

    functions: dict[str, hs.PciFunction]
    by_name: dict[str, _Draft] = field(default_factory=dict)
    by_pci: dict[str, _Draft] = field(default_factory=dict)

    def add(self, d: _Draft, pci: str | None = None) -> None:
        self.by_name[d.name] = d
        if pci is not None:
            self.by_pci[pci] = d

    def drop_pci(self, pci: str) -> None:
        del self.by_name[self.by_pci.pop(pci).name]

    def excluded_function(self, pci: str | None) -> bool:
        """`pci` is a network function that was not published (unbound, passthrough)."""
        fn = self.functions.get(pci) if pci is not None else None
        return fn is not None and fn.is_network and pci not in self.by_pci


# ----------------------------------------------------------------------------------- phases


def _pci_network_functions(drafts: _Drafts, ids: PciIds, result: Discovery) -> None:
    """Phase 1: one device per bound PCI network function."""
    for fn in drafts.functions.values():
        if not fn.is_network:
            continue
        if fn.driver is None:
            result.excluded.append(Exclusion(fn.address, "unbound: no kernel driver"))
        elif fn.driver in hs.PASSTHROUGH_DRIVERS:
            result.excluded.append(Exclusion(fn.address, f"passthrough: bound to {fn.driver}"))
        else:
            drafts.add(_Draft(pci_device_name(fn.address), _pci_attrs(fn, ids), fn), fn.address)


def _standalone_rdma(
    sysfs: hs.SysfsRoot,
    drafts: _Drafts,
    ids: PciIds,
    layered: set[str],
    warn: Callable[[str], None],
) -> None:
    """Phase 2: RDMA devices whose PCI function is not a published network function. One
    without a PCI function that a netdev's GID table names (`layered`, soft-RoCE) is published
    with that netdev, not on its own."""
    for rd in hs.list_rdma_devices(sysfs):
        problem = hs.rdma_name_problem(rd.name)
        if problem is not None:
            warn(f"{problem}; skipped (the kernel makes no such name)")
            continue
        if rd.pci_address is None:
            if rd.name not in layered:
                d = _Draft(interface_device_name(rd.name), {attr.VIRTUAL: False})
                _rdma(d.attrs, (rd.name,))
                drafts.add(d)
            continue
        rfn = drafts.functions.get(rd.pci_address)
        if rd.pci_address in drafts.by_pci or (rfn is not None and rfn.is_network):
            continue  # published with its function, or an excluded network function
        if rfn is not None:
            drafts.add(_Draft(pci_device_name(rfn.address), _pci_attrs(rfn, ids), rfn), rfn.address)
        else:
            d = _Draft(interface_device_name(rd.name), {attr.VIRTUAL: False})
            _rdma(d.attrs, (rd.name,))
            drafts.add(d)


def _kept(name: str, arphrd: int | None, opts: Options, result: Discovery) -> bool:
    """False (with the exclusion recorded) for loopback, skip-listed and unmoved IPoIB links."""
    reason = None
    if name == "lo" or arphrd == hs.ARPHRD_LOOPBACK:
        reason = "loopback"
    elif name in opts.skip_names:
        reason = "name: on the built-in skip list"
    elif arphrd == hs.ARPHRD_INFINIBAND and not opts.move_ib_interfaces:
        reason = "ipoib: IPoIB interfaces are not moved"
    if reason is not None:
        result.excluded.append(Exclusion(name, reason))
    return reason is None


def _valid_name(name: str, warn: Callable[[str], None]) -> bool:
    problem = hs.kernel_ifname_problem(name)
    if problem is not None:
        warn(f"{problem}; skipped (the kernel makes no such name)")
    return problem is None


def _netdev_rdma(sysfs: hs.SysfsRoot, name: str, listed: Iterable[str] | None) -> tuple[str, ...]:
    ib = ("class", "net", name, "device", "infiniband")
    names = listed if listed is not None else hs.rdma_names(sysfs.listdir(*ib))
    return _rdma_dirs(sysfs, ib, names)


def _live_fact(sysfs: hs.SysfsRoot, link: Link) -> _LinkFact:
    loc = hs.netdev_location(sysfs, link.name)
    pci, virtual = loc if loc is not None else (None, None)
    speed = sysfs.read_int("class", "net", link.name, "speed", bounds=S32) if pci else None
    attrs = _netdev_attrs_live(link, speed if speed and speed > 0 else None)
    rdma = _netdev_rdma(sysfs, link.name, None) if pci else ()
    return _LinkFact(link.name, link.index, pci, virtual, attrs, rdma)


def _offline_fact(sysfs: hs.SysfsRoot, nd: hs.Netdev) -> _LinkFact:
    rdma = _netdev_rdma(sysfs, nd.name, nd.rdma_devices) if nd.pci_address else ()
    attrs = _netdev_attrs_offline(nd)
    return _LinkFact(nd.name, None, nd.pci_address, nd.virtual, attrs, rdma)


def _link_facts(
    sysfs: hs.SysfsRoot, snapshot: Snapshot | None, opts: Options, result: Discovery
) -> tuple[set[str], list[_LinkFact]]:
    """Phase 3 (the one place that knows live from offline): every netdev name on the host,
    and a fact record for each netdev that may become (part of) a device."""
    warn = result.warnings.append
    facts: list[_LinkFact] = []
    if snapshot is not None:
        for link in snapshot.links:
            if _valid_name(link.name, warn) and _kept(link.name, link.arphrd, opts, result):
                facts.append(_live_fact(sysfs, link))
        return {lk.name for lk in snapshot.links}, facts
    names = hs.list_netdevs(sysfs)
    for name in names:
        if not _is_netdev_entry(sysfs, name) or not _valid_name(name, warn):
            continue
        nd = hs.read_netdev(sysfs, name)
        if nd is None:
            warn(f"{name}: not readable in sysfs; skipped")
        elif _kept(name, nd.arphrd, opts, result):
            facts.append(_offline_fact(sysfs, nd))
    return set(names), facts


def _exclude_uplinks(
    facts: list[_LinkFact], excluded: Mapping[int, str], drafts: _Drafts, result: Discovery
) -> tuple[list[_LinkFact], dict[str, str]]:
    """Phase 4: uplinks (default route) and their descendants leave, with their PCI function;
    returns the remaining facts and {uplink PF address: its netdev}."""
    kept: list[_LinkFact] = []
    uplink_pfs: dict[str, str] = {}
    for f in facts:
        if f.index is None or f.index not in excluded:
            kept.append(f)
            continue
        published = f.pci is not None and f.pci in drafts.by_pci
        subject = pci_device_name(f.pci) if f.pci and published else interface_device_name(f.name)
        result.excluded.append(Exclusion(f.name, excluded[f.index], subject))
        if f.pci is not None and published:
            drafts.drop_pci(f.pci)
            uplink_pfs[f.pci] = f.name
    return kept, uplink_pfs


def _netdevs(
    facts: list[_LinkFact],
    drafts: _Drafts,
    by_netdev: Mapping[str, tuple[str, ...]],
    warn: Callable[[str], None],
) -> None:
    """Phase 5: a netdev joins its PCI function's device, else becomes a device by name."""
    for f in facts:
        rdma = f.rdma or by_netdev.get(f.name, ())
        if f.pci is not None and f.pci in drafts.by_pci:
            d = drafts.by_pci[f.pci]
            if attr.IF_NAME in d.attrs:
                warn(f"{d.name}: second netdev {f.name} of the function ignored")
                continue
            d.attrs.update(f.attrs)
            if not d.attrs.get(attr.RDMA) and rdma:
                _rdma(d.attrs, rdma)
            continue
        if drafts.excluded_function(f.pci):
            continue  # netdev of an excluded function: reported with the function
        if f.pci is not None:
            why = "is not a network function; published by name"
            warn(f"{f.name}: parent PCI function {f.pci} {why}")
        dname = interface_device_name(f.name)
        if dname in drafts.by_name:
            warn(f"{f.name}: device name {dname} already taken; interface skipped")
            continue
        attrs = f.attrs
        attrs[attr.VIRTUAL] = bool(f.virtual)
        attrs.setdefault(attr.SRIOV, False)
        if rdma:
            _rdma(attrs, rdma)
        attrs.setdefault(attr.RDMA, False)
        drafts.add(_Draft(dname, attrs))


def _exclude_uplink_vfs(drafts: _Drafts, uplink_pfs: Mapping[str, str], result: Discovery) -> None:
    """Phase 6: VFs of an uplink PF leave too (their traffic shares the uplink's port)."""
    for address, d in list(drafts.by_pci.items()):
        pf = d.pci.physfn if d.pci is not None else None
        if pf is not None and pf in uplink_pfs:
            reason = f"uplink: VF of uplink PF {uplink_pfs[pf]}"
            subject = str(d.attrs.get(attr.IF_NAME, address))
            result.excluded.append(Exclusion(subject, reason, d.name))
            del drafts.by_name[d.name]


def _finish(drafts: _Drafts, opts: Options, result: Discovery) -> None:
    """Phase 7: name check, enrichment, API limits; devices sorted by name."""
    for d in sorted(drafts.by_name.values(), key=lambda x: x.name):
        if not is_dns_label(d.name):  # a device name is a DNS label of at most 63 characters
            result.warnings.append(
                f"device name {d.name!r} is not a DNS label of at most 63 characters; skipped"
            )
            continue
        if opts.enrich is not None:
            for name, value in opts.enrich(d.name, d.attrs).items():
                d.attrs.setdefault(name, value)
        shares = opts.shares if opts.shares > 0 and attr.IF_NAME in d.attrs else 0
        attrs, warnings = fit(d.name, d.attrs, capacities=1 if shares else 0)
        result.warnings.extend(warnings)
        result.devices.append(Device(d.name, attrs, shares))


def discover(
    sysfs: hs.SysfsRoot,
    pci_ids: PciIds,
    snapshot: Snapshot | None = None,
    options: Options | None = None,
) -> Discovery:
    """Scan once. `snapshot=None` means offline (sysfs only). A pipeline of named phases:
    PCI network functions, standalone RDMA devices, per-link facts (live or offline: the only
    phase that knows which), uplink exclusion, netdevs, VFs of uplink PFs, finishing."""
    opts = options or Options()
    result = Discovery(offline=snapshot is None)
    functions = {fn.address: _with_real_rdma(sysfs, fn) for fn in hs.list_pci_functions(sysfs)}
    drafts = _Drafts(functions)
    _pci_network_functions(drafts, pci_ids, result)
    here, facts = _link_facts(sysfs, snapshot, opts, result)
    by_netdev = {k: v for k, v in hs.rdma_by_netdev(sysfs).items() if k in here}
    layered = {dev for devs in by_netdev.values() for dev in devs}
    _standalone_rdma(sysfs, drafts, pci_ids, layered, result.warnings.append)
    excluded_links = uplinks(snapshot) if snapshot is not None else {}
    facts, uplink_pfs = _exclude_uplinks(facts, excluded_links, drafts, result)
    _netdevs(facts, drafts, by_netdev, result.warnings.append)
    _exclude_uplink_vfs(drafts, uplink_pfs, result)
    _finish(drafts, opts, result)
    for w in result.warnings:
        log.warning("%s", w)
    for e in result.excluded:
        log.info("excluded %s: %s", e.subject, e.reason)
    return result
