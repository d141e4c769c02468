"""Read a device's ethtool features with their values over the SIOCETHTOOL ioctl: no netlink
family lookup, no event loop (pyroute2's `Ethtool()` opens a generic-netlink socket and an
asyncio loop on every construction, ~3 ms per device at prepare).

ETHTOOL_GSSET_INFO / ETHTOOL_GSTRINGS on string set ETH_SS_FEATURES give the feature names in
bit order; ETHTOOL_GFEATURES gives per 32-bit block the available/requested/active/never-changed
masks; a feature's value is its `active` bit (what `ethtool -k` shows and pyroute2 reports as
`enable`). Runs in the netns of the calling thread.

The feature names are the kernel's own table (`netdev_features_strings`), the same for every
device of the running kernel: they are read once per process, with their order by name, and
after that a device costs one GFEATURES ioctl. GFEATURES answers with the kernel's block count;
should it ever differ from the remembered table's, the names are read again.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
import threading
from dataclasses import dataclass

from knd.netns.plan import Toggle
from knd.netns.privflags import ETH_GSTRING_LEN, ETHTOOL_GSSET_INFO, ETHTOOL_GSTRINGS, _ioctl

ETH_SS_FEATURES = 4
ETHTOOL_GFEATURES = 0x3A
MAX_FEATURES = 1024


@dataclass(frozen=True, slots=True)
class _Table:
    """The kernel's feature names in bit order, and (name, offset of its `active` word, bit)
    sorted by name, for names that are not empty."""

    names: tuple[str, ...]
    by_name: tuple[tuple[str, int, int], ...]

    @property
    def blocks(self) -> int:
        return (len(self.names) + 31) // 32


_cache_lock = threading.Lock()
#: the remembered table (one entry at most: key None)
_tables: dict[None, _Table] = {}


def _read_names(s: socket.socket, ifname: str) -> tuple[str, ...]:
    info = ctypes.create_string_buffer(16 + 4)
    struct.pack_into("=IIQ", info, 0, ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_FEATURES)
    _ioctl(s, ifname, info)
    (mask,) = struct.unpack_from("=Q", info, 8)
    if not mask & (1 << ETH_SS_FEATURES):
        return ()
    (count,) = struct.unpack_from("=I", info, 16)
    count = min(count, MAX_FEATURES)
    if count == 0:
        return ()
    strings = ctypes.create_string_buffer(12 + count * ETH_GSTRING_LEN)
    struct.pack_into("=III", strings, 0, ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count)
    _ioctl(s, ifname, strings)
    raw = strings.raw[12:]
    return tuple(
        raw[i * ETH_GSTRING_LEN : (i + 1) * ETH_GSTRING_LEN].split(b"\0", 1)[0].decode("ascii")
        for i in range(count)
    )


def _table_of(names: tuple[str, ...]) -> _Table:
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name:
            first[name] = i  # a repeated name keeps its last bit, as before
    order = tuple(
        (name, 8 + (i // 32) * 16 + 8, 1 << (i % 32)) for name, i in sorted(first.items())
    )
    return _Table(names, order)


def _gfeatures(
    s: socket.socket, ifname: str, blocks: int
) -> tuple[ctypes.Array[ctypes.c_char], int]:
    buf = ctypes.create_string_buffer(8 + blocks * 16)
    struct.pack_into("=II", buf, 0, ETHTOOL_GFEATURES, blocks)
    _ioctl(s, ifname, buf)
    (kernel_blocks,) = struct.unpack_from("=I", buf, 4)
    return buf, kernel_blocks


def feature_values(ifname: str) -> tuple[Toggle, ...]:
    """Every ethtool feature of `ifname` with its current (active) value, sorted by name;
    empty when the device offers none or ethtool is not supported."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            table = _tables.get(None)
            buf = None
            if table is not None:
                buf, kernel_blocks = _gfeatures(s, ifname, table.blocks)
                if kernel_blocks != table.blocks:
                    table = buf = None  # not the table we remember: read the names again
            if table is None:
                names = _read_names(s, ifname)
                if not names:
                    return ()
                table = _table_of(names)
                with _cache_lock:
                    _tables[None] = table
            if buf is None:
                buf, _ = _gfeatures(s, ifname, table.blocks)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
                return ()
            raise
    return tuple(
        Toggle(name, bool(struct.unpack_from("=I", buf, offset)[0] & bit))
        for name, offset, bit in table.by_name
    )
