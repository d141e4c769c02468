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


def discover(
    sysfs: hs.SysfsRoot,
    pci_ids: PciIds,
    snapshot: Snapshot | None = None,
    options: Options | None = None,
) -> Discovery:
    """Scan once. `snapshot=None` means offline (sysfs only)."""
    opts = options or Options()
    result = Discovery(offline=snapshot is None)
    warn = result.warnings.append
    functions = {fn.address: _with_real_rdma(sysfs, fn) for fn in hs.list_pci_functions(sysfs)}
    drafts: dict[str, _Draft] = {}
    pci_drafts: dict[str, _Draft] = {}

    # 1. PCI network functions.
    for fn in functions.values():
        if not fn.is_network:
            continue
        if fn.driver is None:
            result.excluded.append(Exclusion(fn.address, "unbound: no kernel driver"))
            continue
        if fn.driver in hs.PASSTHROUGH_DRIVERS:
            reason = f"passthrough: bound to {fn.driver}"
            result.excluded.append(Exclusion(fn.address, reason))
            continue
        d = _Draft(pci_device_name(fn.address), _pci_attrs(fn, pci_ids), fn)
        drafts[d.name] = pci_drafts[fn.address] = d

    # 2. Standalone RDMA devices (their function is not a published network function).
    # An RDMA device without a PCI function that a netdev's GID table names (soft-RoCE) is
    # published with that netdev, not on its own.
    here = {lk.name for lk in snapshot.links} if snapshot is not None else None
    here = here if here is not None else set(hs.list_netdevs(sysfs))
    by_netdev = {k: v for k, v in hs.rdma_by_netdev(sysfs).items() if k in here}
    layered = {dev for devs in by_netdev.values() for dev in devs}
    for rd in hs.list_rdma_devices(sysfs):
        problem = hs.rdma_name_problem(rd.name)
        if problem is not None:
            warn(f"{problem}; skipped (the kernel makes no such name)")
            continue
        if rd.pci_address is not None and rd.pci_address in pci_drafts:
            continue
        if rd.pci_address is None and rd.name in layered:
            continue
        rfn = functions.get(rd.pci_address) if rd.pci_address else None
        if rfn is not None and rfn.is_network:
            continue  # an excluded (unbound/passthrough) network function
        if rfn is not None:
            if rfn.address in pci_drafts:
                continue  # a second RDMA device of the same function
            d = _Draft(pci_device_name(rfn.address), _pci_attrs(rfn, pci_ids), rfn)
            pci_drafts[rfn.address] = d
        else:
            d = _Draft(interface_device_name(rd.name), {attr.VIRTUAL: False})
            _rdma(d.attrs, (rd.name,))
        drafts[d.name] = d

    # 3. Netdevs.
    excluded_links: dict[int, str] = uplinks(snapshot) if snapshot is not None else {}
    uplink_pfs: dict[str, str] = {}
    if snapshot is not None:
        items: Iterable[tuple[str, Link | None]] = ((lk.name, lk) for lk in snapshot.links)
    else:
        items = ((name, None) for name in hs.list_netdevs(sysfs) if _is_netdev_entry(sysfs, name))
    for name, link in items:
        problem = hs.kernel_ifname_problem(name)
        if problem is not None:
            warn(f"{problem}; skipped (the kernel makes no such name)")
            continue
        nd = hs.read_netdev(sysfs, name) if link is None else None
        arphrd = link.arphrd if link is not None else (nd.arphrd if nd else None)
        if name == "lo" or arphrd == hs.ARPHRD_LOOPBACK:
            result.excluded.append(Exclusion(name, "loopback"))
            continue
        if name in opts.skip_names:
            result.excluded.append(Exclusion(name, "name: on the built-in skip list"))
            continue
        if arphrd == hs.ARPHRD_INFINIBAND and not opts.move_ib_interfaces:
            result.excluded.append(Exclusion(name, "ipoib: IPoIB interfaces are not moved"))
            continue
        if link is not None:
            loc = hs.netdev_location(sysfs, name)
            pci, virtual = loc if loc is not None else (None, None)
        else:
            assert nd is not None
            pci, virtual = nd.pci_address, nd.virtual
        if link is not None:
            speed = sysfs.read_int("class", "net", name, "speed", bounds=S32) if pci else None
            attrs = _netdev_attrs_live(link, speed if speed and speed > 0 else None)
        else:
            assert nd is not None
            attrs = _netdev_attrs_offline(nd)
        netdev_rdma: tuple[str, ...] = ()
        if pci:
            ib = ("class", "net", name, "device", "infiniband")
            listed = nd.rdma_devices if nd is not None else hs.rdma_names(sysfs.listdir(*ib))
            netdev_rdma = _rdma_dirs(sysfs, ib, listed)
        netdev_rdma = netdev_rdma or by_netdev.get(name, ())
        if link is not None and link.index in excluded_links:
            subject = pci_device_name(pci) if pci in pci_drafts else interface_device_name(name)
            reason = excluded_links[link.index]
            result.excluded.append(Exclusion(name, reason, subject))
            if pci in pci_drafts:
                del drafts[pci_drafts.pop(pci).name]
                uplink_pfs[pci] = name
            continue
        if pci is not None and pci in pci_drafts:
            d = pci_drafts[pci]
            if attr.IF_NAME in d.attrs:
                warn(f"{d.name}: second netdev {name} of the function ignored")
                continue
            d.attrs.update(attrs)
            if not d.attrs.get(attr.RDMA) and netdev_rdma:
                _rdma(d.attrs, netdev_rdma)
            continue
        if pci is not None and pci in functions and functions[pci].is_network:
            continue  # netdev of an excluded function: reported with the function
        if pci is not None:
            warn(f"{name}: parent PCI function {pci} is not a network function; published by name")
        dname = interface_device_name(name)
        if dname in drafts:
            warn(f"{name}: device name {dname} already taken; interface skipped")
            continue
        attrs[attr.VIRTUAL] = bool(virtual)
        attrs.setdefault(attr.SRIOV, False)
        if netdev_rdma:
            _rdma(attrs, netdev_rdma)
        attrs.setdefault(attr.RDMA, False)
        drafts[dname] = _Draft(dname, attrs)

    # VFs of an uplink PF (their traffic shares the uplink's port).
    for address, d in list(pci_drafts.items()):
        if d.pci is not None and d.pci.physfn in uplink_pfs:
            pf_if = uplink_pfs[d.pci.physfn]
            reason = f"uplink: VF of uplink PF {pf_if}"
            result.excluded.append(
                Exclusion(str(d.attrs.get(attr.IF_NAME, address)), reason, d.name)
            )
            del drafts[d.name]

    for d in sorted(drafts.values(), key=lambda x: x.name):
        if not is_dns_label(d.name):  # a device name is a DNS label of at most 63 characters
            warn(f"device name {d.name!r} is not a DNS label of at most 63 characters; skipped")
            continue
        if opts.enrich is not None:
            for name, value in opts.enrich(d.name, d.attrs).items():
                d.attrs.setdefault(name, value)
        shares = opts.shares if opts.shares > 0 and attr.IF_NAME in d.attrs else 0
        attrs, warnings = fit(d.name, d.attrs, capacities=1 if shares else 0)
        result.warnings.extend(warnings)
        result.devices.append(Device(d.name, attrs, shares))
    for w in result.warnings:
        log.warning("%s", w)
    for e in result.excluded:
        log.info("excluded %s: %s", e.subject, e.reason)
    return result
