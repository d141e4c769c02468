"""Read-only sysfs facts about PCI network functions, netdevs and RDMA devices.

Every reader takes a `SysfsRoot` (default `/sys`), so tests run against fixture trees that follow
the kernel layout: device directories under `devices/pci<domain>:<bus>/…`, `bus/pci/devices/<bdf>`,
`class/net/<if>` and `class/infiniband/<dev>` symlinks (relative, as the kernel makes them).
Nothing here writes. Missing or unreadable files yield `None`/empty values, never exceptions: a
device that disappears mid-scan is simply not reported. Every read goes through
`knd.host.confined` (links checked to stay below the root, regular files only, size-capped,
strict numbers in the kernel type's range), for the live `/sys` as for any `--sysfs-root`.
Values that sysfs could not have printed (a MAC that is not hex octets, an unknown operstate) are
read as absent, so they are never published.

Time budget: a full scan of a host with a few hundred netdevs reads a few thousand small files;
keep it to one `realpath` per netdev and only read files of PCI network functions.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from knd.api.names import is_pci_address
from knd.host.confined import S32, U16, U32, ConfinedTree, component_ok

#: PCI class code prefix of network controllers (0x02xxxx).
NETWORK_CLASS_PREFIX = 0x02
#: Drivers that mean "nothing to move": the function is passed through to user space or a VM.
PASSTHROUGH_DRIVERS = frozenset({"vfio-pci", "uio_pci_generic", "igb_uio", "pci-stub"})
#: ARPHRD_* values knd names (encapsulation), as iproute2 names them.
ARPHRD_NAMES: dict[int, str] = {
    1: "ether",
    24: "ieee1394",
    32: "infiniband",
    256: "slip",
    512: "ppp",
    768: "ipip",
    769: "tunnel6",
    772: "loopback",
    776: "sit",
    778: "gre",
    823: "ip6gre",
    65534: "none",
}
ARPHRD_LOOPBACK = 772
ARPHRD_INFINIBAND = 32

_BDF_LOOSE = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9a-f]")
#: Netdev name buffer (with the NUL) and the RDMA one.
IFNAMSIZ = 16
IB_DEVICE_NAME_MAX = 64
_IFNAME_FORBIDDEN = frozenset("/:") | frozenset(" \t\n\v\f\r")
#: A link-layer address as sysfs prints it: 1-32 colon-separated hex octets (MAX_ADDR_LEN).
_LLADDR = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){0,31}")
#: IF_OPER_* names as sysfs prints them.
OPERSTATES = frozenset(
    {"unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"}
)
#: IFALIASZ - 1.
MAX_IFALIAS_BYTES = 255


@dataclass(frozen=True, slots=True)
class SysfsRoot(ConfinedTree):
    """Where sysfs is mounted (default `/sys`); every read is confined and bounded below it."""

    root: Path = Path("/sys")


def sysfs_tree_problem(root: Path) -> str | None:
    """Why `root` is not a sysfs tree (missing, not a directory, no `class/` or `devices/`)."""
    if not os.path.isdir(root):
        return f"{root}: no such directory"
    tree = SysfsRoot(Path(root))
    missing = [d for d in ("class", "devices") if not tree.is_dir(d)]
    if missing:
        return f"{root}: not a sysfs tree (no {' or '.join(d + '/' for d in missing)})"
    return None


def kernel_ifname_problem(name: str) -> str | None:
    """Why the kernel could not have made netdev `name` (dev_valid_name), or None.

    1-15 bytes, not `.` or `..`, no `/`, `:` or whitespace. Names that are not UTF-8 are refused
    too: knd could not name the device reversibly.
    """
    raw = os.fsencode(name)
    if not raw or len(raw) > IFNAMSIZ - 1:
        return f"interface name {name!r} is not 1-{IFNAMSIZ - 1} bytes"
    if name in (".", "..") or any(c in _IFNAME_FORBIDDEN for c in name):
        return f"interface name {name!r} contains '/', ':', whitespace or is '.'/'..'"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"interface name {name!r} is not UTF-8"
    if not name.isprintable():
        return f"interface name {name!r} contains control characters"
    return None


def rdma_name_problem(name: str) -> str | None:
    """Why an RDMA device name is not one the kernel makes (1-63 printable bytes), or None."""
    raw = os.fsencode(name)
    if not raw or len(raw) > IB_DEVICE_NAME_MAX - 1 or not component_ok(name):
        return f"RDMA device name {name!r} is not 1-{IB_DEVICE_NAME_MAX - 1} bytes"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"RDMA device name {name!r} is not UTF-8"
    if not name.isprintable() or any(c.isspace() for c in name):
        return f"RDMA device name {name!r} contains whitespace or control characters"
    return None


@dataclass(frozen=True, slots=True)
class PciFunction:
    """One PCI function as sysfs shows it (ids are lower-case hex without `0x`)."""

    address: str
    class_code: int
    vendor_id: str
    device_id: str
    subsystem_vendor_id: str | None
    subsystem_device_id: str | None
    driver: str | None
    numa_node: int | None
    pcie_root: str | None
    sriov_totalvfs: int | None
    sriov_numvfs: int | None
    physfn: str | None
    netdevs: tuple[str, ...]
    rdma_devices: tuple[str, ...]

    @property
    def is_network(self) -> bool:
        return self.class_code >> 16 == NETWORK_CLASS_PREFIX


@dataclass(frozen=True, slots=True)
class Netdev:
    """A netdev's sysfs facts (`class/net/<name>`)."""

    name: str
    pci_address: str | None
    virtual: bool
    address: str | None = None
    mtu: int | None = None
    operstate: str | None = None
    arphrd: int | None = None
    ifalias: str | None = None
    speed_mbps: int | None = None
    rdma_devices: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class RdmaDevice:
    """An RDMA device (`class/infiniband/<name>`) and the PCI function behind it."""

    name: str
    pci_address: str | None
    uverbs: tuple[str, ...]


def pcie_root(sysfs: SysfsRoot, bdf: str) -> str | None:
    """`resource.kubernetes.io/pcieRoot` of a PCI function, the way the k8s helper computes it.

    Resolve `bus/pci/devices/<bdf>`; the result must lie under `devices/pci…` and end in `<bdf>`;
    the first component after `devices/` (e.g. `pci0000:26`) is the value. None otherwise.
    """
    if not _BDF_LOOSE.fullmatch(bdf):
        return None
    real = sysfs.realpath("bus", "pci", "devices", bdf)
    if real is None or real.name != bdf:
        return None
    parts = sysfs.relative(real)
    if not parts or len(parts) < 3 or parts[0] != "devices" or not parts[1].startswith("pci"):
        return None
    return parts[1]


def _hex_id(sysfs: SysfsRoot, *parts: str) -> str | None:
    """A 16-bit PCI id file (`0x8086`) as 4 lower-case hex digits; None unless strictly that."""
    value = sysfs.read_int(*parts, base=16, bounds=U16)
    return None if value is None else f"{value:04x}"


def read_pci_function(sysfs: SysfsRoot, bdf: str) -> PciFunction | None:
    """Facts of one function under `bus/pci/devices/<bdf>`; None when it is not there."""
    base = ("bus", "pci", "devices", bdf)
    class_code = sysfs.read_int(*base, "class", base=16, bounds=U32)
    vendor = _hex_id(sysfs, *base, "vendor")
    device = _hex_id(sysfs, *base, "device")
    if class_code is None or vendor is None or device is None:
        return None
    numa = sysfs.read_int(*base, "numa_node", bounds=S32)
    physfn = sysfs.link_name(*base, "physfn")
    return PciFunction(
        address=bdf,
        class_code=class_code,
        vendor_id=vendor,
        device_id=device,
        subsystem_vendor_id=_hex_id(sysfs, *base, "subsystem_vendor"),
        subsystem_device_id=_hex_id(sysfs, *base, "subsystem_device"),
        driver=sysfs.link_name(*base, "driver"),
        numa_node=numa if numa is not None and numa >= 0 else None,
        pcie_root=pcie_root(sysfs, bdf),
        sriov_totalvfs=sysfs.read_int(*base, "sriov_totalvfs", bounds=U16),
        sriov_numvfs=sysfs.read_int(*base, "sriov_numvfs", bounds=U16),
        physfn=physfn if physfn and is_pci_address(physfn) else None,
        netdevs=tuple(n for n in _function_netdevs(sysfs, base) if not kernel_ifname_problem(n)),
        rdma_devices=rdma_names(sysfs.listdir(*base, "infiniband")),
    )


def _function_netdevs(sysfs: SysfsRoot, base: tuple[str, ...]) -> list[str]:
    """Netdevs of a function: `<fn>/net/*`, or one level down (virtio: `<fn>/virtioN/net/*`)."""
    names = sysfs.listdir(*base, "net")
    if names:
        return names
    for child in sysfs.listdir(*base):
        if child.startswith("virtio"):
            names.extend(sysfs.listdir(*base, child, "net"))
    return names


def list_pci_functions(sysfs: SysfsRoot) -> list[PciFunction]:
    """Every PCI function, sorted by address."""
    out = []
    for bdf in sysfs.listdir("bus", "pci", "devices"):
        fn = read_pci_function(sysfs, bdf)
        if fn is not None:
            out.append(fn)
    return out


def pci_address_of(sysfs: SysfsRoot, real: Path) -> str | None:
    """The nearest PCI function above a device path (walk up to the first BDF component)."""
    parts = sysfs.relative(real)
    if not parts or parts[0] != "devices":
        return None
    for comp in reversed(parts[:-1]):
        if is_pci_address(comp):
            return comp.lower()
    return None


def netdev_location(sysfs: SysfsRoot, name: str) -> tuple[str | None, bool] | None:
    """(PCI address or None, virtual?) of `class/net/<name>`; None when sysfs lacks the netdev."""
    real = sysfs.realpath("class", "net", name)
    if real is None:
        return None
    parts = sysfs.relative(real)
    virtual = bool(parts and len(parts) > 1 and parts[0] == "devices" and parts[1] == "virtual")
    return (None if virtual else pci_address_of(sysfs, real)), virtual


def read_netdev(sysfs: SysfsRoot, name: str) -> Netdev | None:
    """All sysfs facts of `class/net/<name>` (used offline and for link speed/RDMA live)."""
    loc = netdev_location(sysfs, name)
    if loc is None:
        return None
    pci, virtual = loc
    base = ("class", "net", name)
    speed = sysfs.read_int(*base, "speed", bounds=S32)
    return Netdev(
        name=name,
        pci_address=pci,
        virtual=virtual,
        address=_lladdr(sysfs.read(*base, "address")),
        mtu=sysfs.read_int(*base, "mtu", bounds=U32),
        operstate=_operstate(sysfs.read(*base, "operstate")),
        arphrd=sysfs.read_int(*base, "type", bounds=U16),
        ifalias=_ifalias(sysfs.read(*base, "ifalias")),
        speed_mbps=speed if speed is not None and speed > 0 else None,
        rdma_devices=rdma_names(sysfs.listdir(*base, "device", "infiniband")) if pci else (),
    )


def rdma_names(names: list[str]) -> tuple[str, ...]:
    """The names in a listing that the kernel could have given an RDMA device."""
    return tuple(n for n in names if rdma_name_problem(n) is None)


def _lladdr(text: str | None) -> str | None:
    return text if text is not None and _LLADDR.fullmatch(text) else None


def _operstate(text: str | None) -> str | None:
    return text if text in OPERSTATES else None


def _ifalias(text: str | None) -> str | None:
    if not text or not text.isprintable() or len(text.encode()) > MAX_IFALIAS_BYTES:
        return None
    return text


def list_netdevs(sysfs: SysfsRoot) -> list[str]:
    return sysfs.listdir("class", "net")


def rdma_by_netdev(sysfs: SysfsRoot) -> dict[str, tuple[str, ...]]:
    """RDMA devices by the netdev their RoCE GID table names (DraNet's rdmamap lookup).

    `class/infiniband/<dev>/ports/<p>/gid_attrs/ndevs/0` holds the netdev of the port's default
    GID. This finds RDMA devices that are not children of the netdev's PCI function: soft-RoCE
    (`rdma_rxe`, a virtual device) and any RoCE device layered on a netdev. InfiniBand ports
    have no netdev there (the read fails) and are skipped. One read per port.
    """
    found: dict[str, list[str]] = {}
    for dev in sysfs.listdir("class", "infiniband"):
        for port in sysfs.listdir("class", "infiniband", dev, "ports"):
            ndev = sysfs.read("class", "infiniband", dev, "ports", port, "gid_attrs", "ndevs", "0")
            if ndev and dev not in found.setdefault(ndev, []):
                found[ndev].append(dev)
    return {ndev: tuple(sorted(devs)) for ndev, devs in found.items()}


def list_rdma_devices(sysfs: SysfsRoot) -> list[RdmaDevice]:
    """Every `class/infiniband/<dev>` with its PCI function and `infiniband_verbs/uverbsN`."""
    out = []
    for name in sysfs.listdir("class", "infiniband"):
        real = sysfs.realpath("class", "infiniband", name)
        pci = pci_address_of(sysfs, real) if real is not None else None
        uverbs: tuple[str, ...] = ()
        if pci is not None:
            uverbs = tuple(sysfs.listdir("bus", "pci", "devices", pci, "infiniband_verbs"))
        out.append(RdmaDevice(name=name, pci_address=pci, uverbs=uverbs))
    return out
