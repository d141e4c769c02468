"""Ethtool driver private flags over the SIOCETHTOOL ioctl (pyroute2 has no private flags).

ETHTOOL_GSSET_INFO / ETHTOOL_GSTRINGS on string set ETH_SS_PRIV_FLAGS give the flag names in
bit order; ETHTOOL_GPFLAGS / ETHTOOL_SPFLAGS read and write the u32 bitmap. The ioctl socket
must be created in the interface's netns, so these run on a NetnsWorker in the pod (capture
runs them in the host).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct

from knd.netns.errors import NetnsError, PlanError
from knd.netns.plan import Toggle
from knd.netns.sysctl import check_ifname

SIOCETHTOOL = 0x8946
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GPFLAGS = 0x27
ETHTOOL_SPFLAGS = 0x28
ETHTOOL_GSSET_INFO = 0x37
ETH_SS_PRIV_FLAGS = 2
ETH_GSTRING_LEN = 32
MAX_FLAGS = 32


def _ioctl(sock: socket.socket, ifname: str, buf: ctypes.Array[ctypes.c_char]) -> None:
    ifreq = struct.pack("16sP", check_ifname(ifname).encode(), ctypes.addressof(buf))
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def flag_names(ifname: str, sock: socket.socket | None = None) -> tuple[str, ...]:
    """Private flag names of a device, in bit order (empty when it has none)."""
    own = sock is None
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if sock is None else sock
    try:
        info = ctypes.create_string_buffer(16 + 4)
        struct.pack_into("=IIQ", info, 0, ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_PRIV_FLAGS)
        try:
            _ioctl(s, ifname, info)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                return ()
            raise
        (mask,) = struct.unpack_from("=Q", info, 8)
        if not mask & (1 << ETH_SS_PRIV_FLAGS):
            return ()
        (count,) = struct.unpack_from("=I", info, 16)
        count = min(count, MAX_FLAGS)
        if count == 0:
            return ()
        strings = ctypes.create_string_buffer(12 + count * ETH_GSTRING_LEN)
        struct.pack_into("=III", strings, 0, ETHTOOL_GSTRINGS, ETH_SS_PRIV_FLAGS, count)
        _ioctl(s, ifname, strings)
        raw = strings.raw[12:]
        return tuple(
            raw[i * ETH_GSTRING_LEN : (i + 1) * ETH_GSTRING_LEN].split(b"\0", 1)[0].decode()
            for i in range(count)
        )
    finally:
        if own:
            s.close()


def flag_values(ifname: str) -> tuple[Toggle, ...]:
    """Each private flag of a device with its current value (empty when it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        names = flag_names(ifname, s)
        if not names:
            return ()
        value = ctypes.create_string_buffer(8)
        struct.pack_into("=II", value, 0, ETHTOOL_GPFLAGS, 0)
        _ioctl(s, ifname, value)
        (bits,) = struct.unpack_from("=I", value, 4)
    return tuple(Toggle(name, bool(bits & (1 << i))) for i, name in enumerate(names))


def apply_private_flags(ifname: str, toggles: tuple[Toggle, ...]) -> None:
    """Set private flags by name (PlanError for a name the device lacks)."""
    if not toggles:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        names = flag_names(ifname, s)
        for t in toggles:
            if t.name not in names:
                raise PlanError(f"unknown ethtool private flag {t.name!r} on {ifname}")
        value = ctypes.create_string_buffer(8)
        struct.pack_into("=II", value, 0, ETHTOOL_GPFLAGS, 0)
        _ioctl(s, ifname, value)
        (bits,) = struct.unpack_from("=I", value, 4)
        for t in toggles:
            bit = 1 << names.index(t.name)
            bits = bits | bit if t.enable else bits & ~bit
        struct.pack_into("=II", value, 0, ETHTOOL_SPFLAGS, bits)
        try:
            _ioctl(s, ifname, value)
        except OSError as exc:
            raise NetnsError(f"setting private flags on {ifname} failed: {exc}") from exc
