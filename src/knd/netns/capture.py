"""Capture the host state of an interface at prepare time (read-only, host netns).

For a host interface: name, ifindex, alias, MTU, MAC, permanent MAC, admin state, global-scope
addresses, its routes in every table (skipping the local table, non-unicast routes, IPv6
link-local destinations and IPv6 `proto kernel` routes), the rules pointing at those tables
(not main/local/default), its permanent neighbours, its GSO/GRO sizes (one raw RTM_GETLINK:
pyroute2 cannot read the IPv4 ones); its ethtool features and private flags with their values
(detach restores the ones a pod changes); its RDMA link
and char devices (`/dev/infiniband/rdma_cm`, `uverbsN`, `umadN`, `issmN`, found through
sysfs, type/major/minor from stat of the node or from the sysfs `dev` file).

The netlink handle and the sysfs/dev roots are parameters so tests can point elsewhere.
Budget: a few ms (one link get, one address/route/rule/neighbour dump each).
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

from pyroute2 import IPRoute
from pyroute2.ethtool import Ethtool

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
from knd.netns.rawlink import SIZE_ATTRS, LinkFacts, LinkSocket

RTN_UNICAST = 1
RTPROT_KERNEL = 2
NUD_PERMANENT = 0x80
IFF_UP = 0x1
RT_SCOPE_UNIVERSE = 0
RESERVED_TABLES = frozenset({0, 253, MAIN_TABLE, LOCAL_TABLE})
_FAMILY = {2: 4, 10: 6}
_PCI_ADDRESS = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


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
    facts = _raw_facts(index)
    return _sizes(facts) if facts is not None else {}


def _sizes(facts: LinkFacts) -> dict[str, int]:
    names = dict(zip(SIZE_ATTRS, SIZE_FIELDS, strict=True))
    return {names[kind]: value for kind, value in facts.sizes}


def _raw_facts(index: int) -> LinkFacts | None:
    """One raw RTM_GETLINK: sizes, permanent MAC, parent device (None if unreadable)."""
    try:
        lsock = LinkSocket()
    except OSError:
        return None
    try:
        return lsock.link(index)
    except OSError:
        return None
    finally:
        lsock.close()


def _pci_parent(facts: LinkFacts | None) -> str | None:
    """The PCI address of the link's parent device, if it is one (`0000:8a:00.0`)."""
    parent = facts.parent_dev if facts is not None else None
    return parent.lower() if parent and _PCI_ADDRESS.match(parent.lower()) else None


def capture_host_side(ipr: Any, ifname: str) -> HostSide:
    """The HostSide of `ifname` (raises NetnsError if it does not exist)."""
    try:
        link = ipr.link("get", ifname=ifname)[0]
    except Exception as exc:
        raise NetnsError(f"host interface {ifname!r} not found: {exc}") from exc
    index = link["index"]
    routes = capture_routes(ipr, index)
    facts = _raw_facts(index)
    sizes = _sizes(facts) if facts is not None else {}
    return HostSide(
        name=link.get("ifname"),
        ifindex=index,
        mac=str(link.get("address")).lower(),
        mtu=link.get("mtu"),
        up=bool(link["flags"] & IFF_UP),
        alias=link.get("ifalias") or None,
        perm_mac=(facts.perm_mac if facts is not None else None)
        or _hex_mac(link.get("IFLA_PERM_ADDRESS")),
        addresses=capture_addresses(ipr, index),
        routes=routes,
        rules=capture_rules(ipr, {r.table for r in routes}),
        neighbors=capture_neighbors(ipr, index),
        gso_max_size=sizes.get("gso_max_size"),
        gro_max_size=sizes.get("gro_max_size"),
        gso_ipv4_max_size=sizes.get("gso_ipv4_max_size"),
        gro_ipv4_max_size=sizes.get("gro_ipv4_max_size"),
        pci_address=_pci_parent(facts),
    )


# ------------------------------------------------------------------------------- RDMA sysfs


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return None


def rdma_link_of(ifname: str, sysfs_root: str = "/sys") -> str | None:
    """The RDMA device bound to a netdev (`/sys/class/net/<if>/device/infiniband/<name>`)."""
    base = os.path.join(sysfs_root, "class/net", ifname, "device/infiniband")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return None
    return names[0] if names else None


def _char_device(name: str, sysfs_dir: str, dev_root: str) -> CharDevice | None:
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
    numbers = _read(os.path.join(sysfs_dir, "dev"))
    if numbers and ":" in numbers:
        major, minor = numbers.split(":", 1)
        return CharDevice(f"/dev/infiniband/{name}", "c", int(major), int(minor))
    return None


def rdma_char_devices(
    rdma_link: str, sysfs_root: str = "/sys", dev_root: str = "/dev"
) -> tuple[CharDevice, ...]:
    """rdma_cm plus the uverbs/umad/issm nodes whose `ibdev` is `rdma_link`."""
    out: list[CharDevice] = []
    cm = _char_device("rdma_cm", os.path.join(sysfs_root, "class/misc/rdma_cm"), dev_root)
    if cm is not None:
        out.append(cm)
    for cls in ("infiniband_verbs", "infiniband_mad"):
        base = os.path.join(sysfs_root, "class", cls)
        try:
            entries = sorted(os.listdir(base))
        except OSError:
            continue
        for entry in entries:
            if _read(os.path.join(base, entry, "ibdev")) != rdma_link:
                continue
            dev = _char_device(entry, os.path.join(base, entry), dev_root)
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
