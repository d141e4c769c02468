"""Read a device's ethtool features with their values over the SIOCETHTOOL ioctl: no netlink
family lookup, no event loop (pyroute2's `Ethtool()` opens a generic-netlink socket and an
asyncio loop on every construction, ~3 ms per device at prepare).

ETHTOOL_GSSET_INFO / ETHTOOL_GSTRINGS on string set ETH_SS_FEATURES give the feature names in
bit order; ETHTOOL_GFEATURES gives per 32-bit block the available/requested/active/never-changed
masks; a feature's value is its `active` bit (what `ethtool -k` shows and pyroute2 reports as
`enable`). Runs in the netns of the calling thread.

The feature names are the kernel's own table (`netdev_features_strings`), the same for every
device of the running kernel: they are read once per process and then reused while the
kernel reports the same count (one GSSET_INFO and one GFEATURES ioctl per device after that).
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
import threading

from knd.netns.plan import Toggle
from knd.netns.privflags import ETH_GSTRING_LEN, ETHTOOL_GSSET_INFO, ETHTOOL_GSTRINGS, _ioctl

ETH_SS_FEATURES = 4
ETHTOOL_GFEATURES = 0x3A
MAX_FEATURES = 1024

_cache_lock = threading.Lock()
#: the kernel's feature names, by their count (see the module docstring)
_cached_names: dict[int, tuple[str, ...]] = {}


def _names(s: socket.socket, ifname: str) -> tuple[str, ...]:
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
    with _cache_lock:
        cached = _cached_names.get(count)
    if cached is not None:
        return cached
    strings = ctypes.create_string_buffer(12 + count * ETH_GSTRING_LEN)
    struct.pack_into("=III", strings, 0, ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count)
    _ioctl(s, ifname, strings)
    raw = strings.raw[12:]
    names = tuple(
        raw[i * ETH_GSTRING_LEN : (i + 1) * ETH_GSTRING_LEN].split(b"\0", 1)[0].decode("ascii")
        for i in range(count)
    )
    with _cache_lock:
        _cached_names[count] = names
    return names


def feature_values(ifname: str) -> tuple[Toggle, ...]:
    """Every ethtool feature of `ifname` with its current (active) value, sorted by name;
    empty when the device offers none or ethtool is not supported."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            names = _names(s, ifname)
            if not names:
                return ()
            blocks = (len(names) + 31) // 32
            buf = ctypes.create_string_buffer(8 + blocks * 16)
            struct.pack_into("=II", buf, 0, ETHTOOL_GFEATURES, blocks)
            _ioctl(s, ifname, buf)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
                return ()
            raise
    out = {}
    for i, name in enumerate(names):
        if not name:
            continue
        (active,) = struct.unpack_from("=I", buf, 8 + (i // 32) * 16 + 8)
        out[name] = bool(active & (1 << (i % 32)))
    return tuple(Toggle(name, out[name]) for name in sorted(out))
