"""Capture the host state of an interface at prepare time (read-only, host netns).

For a host interface: name, ifindex, alias, MTU, MAC, permanent MAC, admin state, global-scope
addresses, its routes in every table (skipping the local table, non-unicast routes, IPv6
link-local destinations and IPv6 `proto kernel` routes), the rules pointing at those tables
(not main/local/default), its permanent neighbours, its GSO/GRO sizes, PCI address (parent
device): all from one host snapshot (knd.netns.snapshot: each table dumped once on a raw
socket, shared by every device of a prepare); its ethtool features (one ioctl round,
knd.netns.ethtool_read) and private flags with their values (detach restores the ones a pod
changes); its RDMA link
and char devices (`/dev/infiniband/rdma_cm`, `uverbsN`, `umadN`, `issmN`, found through
sysfs, type/major/minor from stat of the node or from the sysfs `dev` file). Sysfs is read only
through `knd.host.sysfs.SysfsRoot` (confined to the root, bounded, strict numbers).

The snapshot and the sysfs/dev roots are parameters so tests can point elsewhere.
Budget: ~1 ms of dumps per snapshot on a small node, then well under 1 ms per device.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from knd.host.confined import component_ok, parse_int
from knd.host.sysfs import SysfsRoot, rdma_by_netdev, rdma_names
from knd.netns.errors import NetnsError
from knd.netns.ethtool_read import feature_values
from knd.netns.hoststate import HostState
from knd.netns.plan import (
    CharDevice,
    HostSide,
    Toggle,
)
from knd.netns.privflags import flag_values
from knd.netns.snapshot import HostSnapshot


def capture_features(ifname: str) -> tuple[Toggle, ...]:
    """Kernel ethtool features of a device with their current values, by name (empty when
    ethtool is not supported); one ioctl round, no event loop (knd.netns.ethtool_read)."""
    try:
        return feature_values(ifname)
    except OSError:  # the device simply has no ethtool features to offer
        return ()


def capture_host_side(ifname: str, snapshot: HostSnapshot | None = None) -> HostSide:
    """The HostSide of `ifname` from `snapshot` (one is taken when None); NetnsError if the
    interface does not exist or the host cannot be read."""
    try:
        snap = HostSnapshot.take() if snapshot is None else snapshot
    except OSError as exc:
        raise NetnsError(f"cannot read the host's links and routes: {exc}") from exc
    return snap.host_side(ifname)


# ------------------------------------------------------------------------------- RDMA sysfs


def rdma_link_of(ifname: str, sysfs_root: str = "/sys") -> str | None:
    """The RDMA device bound to a netdev: a child of its PCI function
    (`<sysfs>/class/net/<if>/device/infiniband/<name>`), else the device whose RoCE GID table
    names the netdev (soft-RoCE; see `knd.host.sysfs.rdma_by_netdev`)."""
    sysfs = SysfsRoot(Path(sysfs_root))
    names = rdma_names(sysfs.listdir("class", "net", ifname, "device", "infiniband"))
    if names:
        return names[0]
    layered = rdma_by_netdev(sysfs).get(ifname, ())
    return layered[0] if layered else None


#: Character device numbers as the kernel prints them in a `dev` file (MAJORBITS/MINORBITS).
_MAX_MAJOR = 2**12 - 1
_MAX_MINOR = 2**20 - 1


def _dev_numbers(text: str | None) -> tuple[int, int] | None:
    if text is None or text.count(":") != 1:
        return None
    major_s, minor_s = text.split(":")
    major = parse_int(major_s, 0, _MAX_MAJOR)
    minor = parse_int(minor_s, 0, _MAX_MINOR)
    return None if major is None or minor is None else (major, minor)


def _char_device(
    name: str, sysfs: SysfsRoot, sysfs_dir: tuple[str, ...], dev_root: str
) -> CharDevice | None:
    if not component_ok(name):
        return None
    path = os.path.join(dev_root, "infiniband", name)
    try:
        st = os.stat(path)
        if stat.S_ISCHR(st.st_mode):
            return CharDevice(
                path=f"/dev/infiniband/{name}",
                type="c",
                major=os.major(st.st_rdev),
                minor=os.minor(st.st_rdev),
            )
    except OSError:
        pass
    numbers = _dev_numbers(sysfs.read(*sysfs_dir, "dev", limit=64))
    if numbers is None:
        return None
    return CharDevice(f"/dev/infiniband/{name}", "c", numbers[0], numbers[1])


def rdma_char_devices(
    rdma_link: str, sysfs_root: str = "/sys", dev_root: str = "/dev"
) -> tuple[CharDevice, ...]:
    """rdma_cm plus the uverbs/umad/issm nodes whose `ibdev` is `rdma_link`."""
    sysfs = SysfsRoot(Path(sysfs_root))
    out: list[CharDevice] = []
    cm = _char_device("rdma_cm", sysfs, ("class", "misc", "rdma_cm"), dev_root)
    if cm is not None:
        out.append(cm)
    for cls in ("infiniband_verbs", "infiniband_mad"):
        for entry in sysfs.listdir("class", cls):
            if sysfs.read("class", cls, entry, "ibdev", limit=128) != rdma_link:
                continue
            dev = _char_device(entry, sysfs, ("class", cls, entry), dev_root)
            if dev is not None:
                out.append(dev)
    return tuple(out)


def capture_host_state(
    ifname: str | None,
    *,
    snapshot: HostSnapshot | None = None,
    rdma_link: str | None = None,
    sysfs_root: str = "/sys",
    dev_root: str = "/dev",
    ethtool: bool = True,
    find_rdma: bool = True,
) -> HostState:
    """Capture a netdev (`ifname`, from `snapshot`: pass one to capture several devices from
    one set of dumps) and/or an RDMA-only device (`rdma_link`). Without `rdma_link`, the RDMA
    device bound to `ifname` is looked up in sysfs (`rdma_link_of`) unless `find_rdma` is
    False: the caller already looked the same way and found none (the prepare path, whose
    device locator reads the same sysfs entries)."""
    host: HostSide | None = None
    features: tuple[Toggle, ...] = ()
    private: tuple[Toggle, ...] = ()
    if ifname is not None:
        host = capture_host_side(ifname, snapshot)
        features = capture_features(ifname) if ethtool else ()
        if ethtool:
            try:
                private = flag_values(ifname)
            except OSError:
                private = ()
        if rdma_link is None and find_rdma:
            rdma_link = rdma_link_of(ifname, sysfs_root)
    chars = rdma_char_devices(rdma_link, sysfs_root, dev_root) if rdma_link else ()
    return HostState(
        host=host,
        features=tuple(t.name for t in features),
        private_flags=tuple(t.name for t in private),
        feature_values=features,
        private_flag_values=private,
        rdma_link=rdma_link,
        rdma_char_devices=chars,
    )
