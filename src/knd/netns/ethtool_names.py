"""Translate user ethtool feature names to kernel feature names (pure).

Users may write a kernel name (`rx-gro`, `tx-tcp-segmentation`) or one of the legacy ethtool
names, short or long (`gro`, `generic-receive-offload`, `tso`, ...), as ethtool(8) and DraNet
accept. A legacy name stands for every kernel feature matching its glob on that device (e.g.
`tso` → `tx-tcp-segmentation`, `tx-tcp6-segmentation`, ...). An unknown name is an error.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

from knd.netns.errors import PlanError

# (short name, long name, kernel-name glob) — the legacy offload flags of ethtool(8).
LEGACY: tuple[tuple[str, str, str], ...] = (
    ("rx", "rx-checksumming", "rx-checksum"),
    ("tx", "tx-checksumming", "tx-checksum-*"),
    ("sg", "scatter-gather", "tx-scatter-gather*"),
    ("tso", "tcp-segmentation-offload", "tx-tcp*-segmentation"),
    ("ufo", "udp-fragmentation-offload", "tx-udp-fragmentation"),
    ("gso", "generic-segmentation-offload", "tx-generic-segmentation"),
    ("gro", "generic-receive-offload", "rx-gro"),
    ("lro", "large-receive-offload", "rx-lro"),
    ("rxvlan", "rx-vlan-offload", "rx-vlan-hw-parse"),
    ("txvlan", "tx-vlan-offload", "tx-vlan-hw-insert"),
    ("ntuple", "ntuple-filters", "rx-ntuple-filter"),
    ("rxhash", "receive-hashing", "rx-hashing"),
)
_ALIASES: dict[str, str] = {}
for _short, _long, _glob in LEGACY:
    _ALIASES[_short] = _glob
    _ALIASES[_long] = _glob


def kernel_names(name: str, available: Iterable[str]) -> list[str]:
    """Kernel feature names `name` denotes on a device offering `available` (sorted).

    Raises PlanError when the name is neither a feature of the device nor a legacy alias that
    matches at least one of them.
    """
    avail = set(available)
    if name in avail:
        return [name]
    glob = _ALIASES.get(name)
    if glob is not None:
        matches = sorted(n for n in avail if fnmatch.fnmatchcase(n, glob))
        if matches:
            return matches
    raise PlanError(f"unknown ethtool feature {name!r} for this device")


def translate(requested: Mapping[str, bool], available: Iterable[str]) -> dict[str, bool]:
    """Map {user name: on/off} to {kernel name: on/off}; later entries win on overlap."""
    avail = list(available)
    out: dict[str, bool] = {}
    for name, enable in requested.items():
        for kname in kernel_names(name, avail):
            out[kname] = enable
    return out
