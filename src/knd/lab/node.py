"""The lab node's NICs: 8 veths presented as the GPU node's 8 RoCE NICs.

Each lab NIC is a veth whose host end (`<prefix><i>`) stays in the host netns, where knd
discovers it, and whose peer (`<prefix>p<i>`) sits in the lab's "fabric" netns on one bridge,
so every lab NIC (and every pod that gets one) shares an L2 segment. A sysfs fixture of the GPU
node (`knd.lab.sysfs_fixture.build_lab_node`) names its 8 PCI NIC functions' netdevs after the
host ends, so `knd driver --sysfs-root` publishes `pci-…` devices with the GPU node's pcieRoot
and NUMA attributes while netlink sees (and knd moves) the real veths.

`ensure_nics` is idempotent and re-creates NICs that vanished (a veth dies with the pod netns it
was in when that netns is deleted without knd detaching it first); `delete_nics` removes all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from knd.lab.sysfs_fixture import build_lab_node
from knd.netns import fabric

NIC_COUNT = 8


@dataclass(frozen=True)
class LabNics:
    """Names of the lab NICs: host ends `<prefix>0..7`, peers `<prefix>p0..7` in `fabric`."""

    prefix: str = "klab"
    fabric: str = "knd-lab-fabric"

    @property
    def names(self) -> list[str]:
        return [f"{self.prefix}{i}" for i in range(NIC_COUNT)]

    def peer(self, i: int) -> str:
        return f"{self.prefix}p{i}"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"


def write_sysfs(root: Path, nics: LabNics) -> Path:
    """Write the lab node's sysfs fixture under `root` (replacing an older one)."""
    if root.exists():
        _rmtree(root)
    root.mkdir(parents=True)
    build_lab_node(root, nics.names)
    return root


def _rmtree(path: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for f in filenames:
            os.unlink(os.path.join(dirpath, f))
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                os.unlink(full)
            else:
                os.rmdir(full)
    os.rmdir(path)


def _in_use_elsewhere(nics: LabNics, i: int) -> bool:
    """The peer still exists in the fabric: the host end is alive, maybe inside a pod."""
    return fabric.link_in(nics.fabric, nics.peer(i))


def ensure_nics(nics: LabNics, only: Iterable[int] | None = None) -> list[str]:
    """Create the fabric and every missing lab NIC; returns the names created."""
    fabric.ensure_bridge(nics.fabric, nics.bridge)
    created = []
    for i in only if only is not None else range(NIC_COUNT):
        host = nics.names[i]
        if fabric.host_link(host) or _in_use_elsewhere(nics, i):
            continue
        mac = f"02:00:00:00:{0x0D + 0x10 * i:02x}:01"
        fabric.add_veth_on_bridge(host, nics.peer(i), mac, nics.fabric, nics.bridge)
        created.append(host)
    return created


def missing_nics(nics: LabNics) -> list[int]:
    """Indexes of lab NICs whose veth pair no longer exists anywhere."""
    if not fabric.netns_exists(nics.fabric):
        return list(range(NIC_COUNT))
    return [
        i
        for i, host in enumerate(nics.names)
        if not fabric.host_link(host) and not _in_use_elsewhere(nics, i)
    ]


def delete_nics(nics: LabNics) -> None:
    """Remove every lab NIC and the fabric (idempotent)."""
    fabric.delete_host_links(nics.names)
    fabric.remove_netns(nics.fabric)
