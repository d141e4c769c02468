"""Capture the host state of an interface at prepare time (read-only, host netns).

For a host interface: name, ifindex, alias, MTU, MAC, permanent MAC, admin state, global-scope
addresses, its routes in every table (skipping the local table, non-unicast routes, IPv6
link-local destinations and IPv6 `proto kernel` routes), the rules pointing at those tables
(not main/local/default), its permanent neighbours, its GSO/GRO sizes (one raw RTM_GETLINK:
pyroute2 cannot read the IPv4 ones); its ethtool features and private flags with their values
(detach restores the ones a pod changes); its RDMA link
and char devices (`/dev/infiniband/rdma_cm`, `uverbsN`, `umadN`, `issmN`, found through
sysfs, type/major/minor from stat of the node or from the sysfs `dev` file). Sysfs is read only
through `knd.host.sysfs.SysfsRoot` (confined to the root, bounded, strict numbers).

The netlink handle and the sysfs/dev roots are parameters so tests can point elsewhere.
Budget: a few ms (one link get, one address/route/rule/neighbour dump each).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.ethtool import Ethtool

from knd.host.confined import component_ok, parse_int
from knd.host.sysfs import SysfsRoot, rdma_by_netdev, rdma_names
from knd.netns.errors import NetnsError
from knd.netns.hoststate import HostState
from knd.netns.plan import (
    LOCAL_TABLE,
    MAIN_TABLE,
    SIZE_FIELDS,
    CharDevice,
    HostSide,
    Neighbor,
    Route,
    Rule,
    Toggle,
)
from knd.netns.privflags import flag_values
from knd.netns.rawlink import SIZE_ATTRS, LinkSocket

RTN_UNICAST = 1
RTPROT_KERNEL = 2
NUD_PERMANENT = 0x80
IFF_UP = 0x1
RT_SCOPE_UNIVERSE = 0
RESERVED_TABLES = frozenset({0, 253, MAIN_TABLE, LOCAL_TABLE})
_FAMILY = {2: 4, 10: 6}


def _table(msg: Any) -> int:
    return int(msg.get("table") or msg.get("RTA_TABLE") or msg["table"])


def _hex_mac(value: object) -> str | None:
    if not value:
        return None
    text = str(value).lower()
    if ":" not in text:
        text = ":".join(text[i : i + 2] for i in range(0, len(text), 2))
    if set(text.replace(":", "")) <= {"0"}:
        return None
    return text


def capture_addresses(ipr: Any, index: int) -> tuple[str, ...]:
    out = []
    for a in ipr.addr("dump", index=index):
        if a["index"] != index or a["scope"] != RT_SCOPE_UNIVERSE:
            continue
        ip = a.get("local") or a.get("address")
        if ip:
            out.append(f"{ip}/{a['prefixlen']}")
    return tuple(out)


def _route_from_msg(r: Any) -> Route | None:
    fam = _FAMILY.get(r["family"])
    if fam is None or r["type"] != RTN_UNICAST:
        return None
    table = _table(r)
    if table == LOCAL_TABLE:
        return None
    dst = r.get("dst")
    zero = "0.0.0.0" if fam == 4 else "::"  # noqa: S104 - a route destination, not a bind
    destination = f"{dst or zero}/{r['dst_len']}"
    if fam == 6 and (r["proto"] == RTPROT_KERNEL or (dst or "").lower().startswith("fe80:")):
        return None
    return Route(
        destination=destination,
        gateway=r.get("gateway"),
        source=r.get("prefsrc"),
        scope=r["scope"],
        table=table,
    )


def capture_routes(ipr: Any, index: int) -> tuple[Route, ...]:
    out: list[Route] = []
    for r in ipr.route("dump"):
        if r.get("oif") != index:
            continue
        route = _route_from_msg(r)
        if route is not None and route not in out:
            out.append(route)
    return tuple(out)


def capture_rules(ipr: Any, tables: set[int]) -> tuple[Rule, ...]:
    out: list[Rule] = []
    wanted = tables - RESERVED_TABLES
    if not wanted:
        return ()
    for r in ipr.rule("dump"):
        table = _table(r)
        fam = _FAMILY.get(r["family"])
        if table not in wanted or fam is None:
            continue
        src = f"{r.get('src')}/{r['src_len']}" if r.get("src") else None
        dst = f"{r.get('dst')}/{r['dst_len']}" if r.get("dst") else None
        rule = Rule(
            table=table, priority=r.get("priority") or 0, source=src, destination=dst, family=fam
        )
        if rule not in out:
            out.append(rule)
    return tuple(out)


def capture_neighbors(ipr: Any, index: int) -> tuple[Neighbor, ...]:
    out = []
    for n in ipr.neigh("dump", ifindex=index):
        if n["ifindex"] != index or not n["state"] & NUD_PERMANENT:
            continue
        dst, mac = n.get("dst"), n.get("lladdr")
        if dst and mac:
            out.append(Neighbor(destination=dst, hardware_addr=str(mac).lower()))
    return tuple(out)


def capture_features(ifname: str) -> tuple[Toggle, ...]:
    """Kernel ethtool features of a device with their current values, by name (empty when
    ethtool is not supported)."""
    try:
        with Ethtool() as eth:
            features = eth.get_features(ifname).features
            return tuple(Toggle(name, bool(features[name].enable)) for name in sorted(features))
    except Exception:  # the device simply has no ethtool features to offer
        return ()


def capture_sizes(index: int) -> dict[str, int]:
    """The link's GSO/GRO size attributes by HostSide field name (empty if unreadable)."""
    names = dict(zip(SIZE_ATTRS, SIZE_FIELDS, strict=True))
    try:
        lsock = LinkSocket()
    except OSError:
        return {}
    try:
        return {names[kind]: value for kind, value in lsock.sizes(index).items()}
    except OSError:
        return {}
    finally:
        lsock.close()


def capture_host_side(ipr: Any, ifname: str) -> HostSide:
    """The HostSide of `ifname` (raises NetnsError if it does not exist)."""
    try:
        link = ipr.link("get", ifname=ifname)[0]
    except Exception as exc:
        raise NetnsError(f"host interface {ifname!r} not found: {exc}") from exc
    index = link["index"]
    routes = capture_routes(ipr, index)
    sizes = capture_sizes(index)
    return HostSide(
        name=link.get("ifname"),
        ifindex=index,
        mac=str(link.get("address")).lower(),
        mtu=link.get("mtu"),
        up=bool(link["flags"] & IFF_UP),
        alias=link.get("ifalias") or None,
        perm_mac=_hex_mac(link.get("IFLA_PERM_ADDRESS")),
        addresses=capture_addresses(ipr, index),
        routes=routes,
        rules=capture_rules(ipr, {r.table for r in routes}),
        neighbors=capture_neighbors(ipr, index),
        gso_max_size=sizes.get("gso_max_size"),
        gro_max_size=sizes.get("gro_max_size"),
        gso_ipv4_max_size=sizes.get("gso_ipv4_max_size"),
        gro_ipv4_max_size=sizes.get("gro_ipv4_max_size"),
    )


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
    ipr: Any | None = None,
    rdma_link: str | None = None,
    sysfs_root: str = "/sys",
    dev_root: str = "/dev",
    ethtool: bool = True,
) -> HostState:
    """Capture a netdev (`ifname`) and/or an RDMA-only device (`rdma_link`)."""
    host: HostSide | None = None
    features: tuple[Toggle, ...] = ()
    private: tuple[Toggle, ...] = ()
    if ifname is not None:
        own = ipr is None
        handle = IPRoute() if ipr is None else ipr
        try:
            host = capture_host_side(handle, ifname)
        finally:
            if own:
                handle.close()
        features = capture_features(ifname) if ethtool else ()
        if ethtool:
            try:
                private = flag_values(ifname)
            except OSError:
                private = ()
        if rdma_link is None:
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
