"""Build sysfs fixture trees that follow the real kernel layout, in any directory.

A tree has PCI function directories under `devices/pci<dom>:<bus>/<bridge>/…/<bdf>` with
`vendor`, `device`, `class`, `subsystem_*`, `numa_node` files and a relative `driver` link;
`bus/pci/devices/<bdf>` links; netdevs under `<fn>/net/<if>` (virtio: `<fn>/virtioN/net/<if>`) or
`devices/virtual/net/<if>`, linked from `class/net/<if>`; RDMA devices under
`<fn>/infiniband/<dev>` linked from `class/infiniband/<dev>`, with `<fn>/infiniband_verbs/uverbsN`.
All symlinks are relative, as the kernel makes them, so a tree works wherever it is written.

Five trees modelled on real hosts: `gpu_node` (GCP a4-highgpu-8g-like), `infiniband`, `sriov`,
`erdma`, `virtio_vm`. `python -m knd.lab.sysfs_fixture gpu-node DIR` writes one. `build_lab_node`
is the lab's variant of the GPU node: its 8 NIC netdevs carry the names of the lab's veths (so the
live netlink view and the fixture's PCI functions meet by name), no uplink, no RDMA.
This module is part of the installed package (the lab uses it); tests import it from
`tests.fixtures.sysfs`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def _rel_link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target, link.parent), link)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@dataclass
class SysfsBuilder:
    """Writes one tree under `root`. Methods return the directories they create."""

    root: Path
    _fn_dirs: dict[str, Path] = field(default_factory=dict)
    _uverbs: int = 0
    _virtio: int = 0

    def bridge(self, pcie_root: str, *chain: str) -> Path:
        """A root complex dir (`pci0000:3a`) and a chain of bridge functions below it."""
        d = self.root / "devices" / pcie_root
        d.mkdir(parents=True, exist_ok=True)
        for bdf in chain:
            d = d / bdf
            if bdf not in self._fn_dirs:
                self._pci_files(d, bdf, "8086", "1234", "0x060400", None, None, -1)
        return d

    def _pci_files(
        self,
        d: Path,
        bdf: str,
        vendor: str,
        device: str,
        class_code: str,
        subsys: tuple[str, str] | None,
        driver: str | None,
        numa: int,
    ) -> None:
        d.mkdir(parents=True, exist_ok=True)
        _write(d / "vendor", f"0x{vendor}")
        _write(d / "device", f"0x{device}")
        _write(d / "class", class_code)
        sv, sd = subsys or (vendor, "0000")
        _write(d / "subsystem_vendor", f"0x{sv}")
        _write(d / "subsystem_device", f"0x{sd}")
        _write(d / "numa_node", str(numa))
        if driver:
            drv = self.root / "bus" / "pci" / "drivers" / driver
            drv.mkdir(parents=True, exist_ok=True)
            _rel_link(d / "driver", drv)
            if not (drv / bdf).exists():
                _rel_link(drv / bdf, d)
        _rel_link(self.root / "bus" / "pci" / "devices" / bdf, d)
        self._fn_dirs[bdf] = d

    def pci(
        self,
        parent: Path,
        bdf: str,
        vendor: str,
        device: str,
        class_code: str = "0x020000",
        driver: str | None = None,
        numa: int = -1,
        subsys: tuple[str, str] | None = None,
        sriov_total: int | None = None,
    ) -> Path:
        d = parent / bdf
        self._pci_files(d, bdf, vendor, device, class_code, subsys, driver, numa)
        if sriov_total is not None:
            _write(d / "sriov_totalvfs", str(sriov_total))
            _write(d / "sriov_numvfs", "0")
        return d

    def vf(self, pf: str, n: int, bdf: str, vendor: str, device: str, driver: str | None) -> Path:
        """VF `n` of PF `pf` (a sibling function): `physfn` and `virtfnN` links, numvfs bumped."""
        pf_dir = self._fn_dirs[pf]
        numa = int((pf_dir / "numa_node").read_text())
        d = self.pci(pf_dir.parent, bdf, vendor, device, "0x020000", driver, numa)
        _rel_link(d / "physfn", pf_dir)
        _rel_link(pf_dir / f"virtfn{n}", d)
        numvfs = pf_dir / "sriov_numvfs"
        _write(numvfs, str(int(numvfs.read_text()) + 1))
        return d

    def netdev(
        self,
        name: str,
        pci: str | None = None,
        mac: str = "00:00:00:00:00:00",
        mtu: int = 1500,
        operstate: str = "up",
        arphrd: int = 1,
        alias: str = "",
        speed: int | None = None,
        virtio: bool = False,
    ) -> Path:
        """A netdev under PCI function `pci` (or `devices/virtual/net`), linked from class/net."""
        if pci is None:
            base = self.root / "devices" / "virtual" / "net"
        else:
            base = self._fn_dirs[pci]
            if virtio:
                base = base / f"virtio{self._virtio}"
                self._virtio += 1
                base.mkdir(parents=True, exist_ok=True)
            base = base / "net"
        d = base / name
        d.mkdir(parents=True, exist_ok=True)
        _write(d / "address", mac)
        _write(d / "mtu", str(mtu))
        _write(d / "operstate", operstate)
        _write(d / "type", str(arphrd))
        _write(d / "ifalias", alias)
        _write(d / "speed", str(speed) if speed is not None else "-1")
        if pci is not None:
            _rel_link(d / "device", self._fn_dirs[pci])
        _rel_link(self.root / "class" / "net" / name, d)
        return d

    def rdma(self, pci: str, name: str) -> Path:
        """RDMA device `name` of PCI function `pci` with its `uverbsN` char-device entry."""
        fn = self._fn_dirs[pci]
        d = fn / "infiniband" / name
        d.mkdir(parents=True, exist_ok=True)
        _rel_link(d / "device", fn)
        _write(d / "node_type", "1: CA")
        _rel_link(self.root / "class" / "infiniband" / name, d)
        uv = fn / "infiniband_verbs" / f"uverbs{self._uverbs}"
        _write(uv / "ibdev", name)
        _write(uv / "dev", f"231:{192 + self._uverbs}")
        _rel_link(self.root / "class" / "infiniband_verbs" / f"uverbs{self._uverbs}", uv)
        self._uverbs += 1
        return d

    def loopback(self) -> Path:
        return self.netdev(
            "lo", mac="00:00:00:00:00:00", mtu=65536, operstate="unknown", arphrd=772
        )


# ---- the five trees -----------------------------------------------------------------------------

#: GPU node: (pcie root, root port bus, NUMA node) for the 8 GPU+NIC pairs.
GPU_NODE_ROOTS = (
    ("pci0000:0d", 0x0D, 0),
    ("pci0000:1d", 0x1D, 0),
    ("pci0000:2d", 0x2D, 0),
    ("pci0000:3d", 0x3D, 0),
    ("pci0000:8d", 0x8D, 1),
    ("pci0000:9d", 0x9D, 1),
    ("pci0000:ad", 0xAD, 1),
    ("pci0000:bd", 0xBD, 1),
)


def gpu_nic_address(i: int) -> str:
    """PCI address of the i-th RoCE NIC of the GPU node (its GPU is at bus - 1)."""
    return f"0000:{GPU_NODE_ROOTS[i][1] + 4:02x}:00.0"


def gpu_address(i: int) -> str:
    return f"0000:{GPU_NODE_ROOTS[i][1] + 3:02x}:00.0"


def gpu_node_gpus() -> list[tuple[str, str, int]]:
    """(pciBusID, pcieRoot, numaNode) of the GPU node's 8 GPUs, for a GPU driver's ResourceSlice
    (`knd.lab.gpu_slices.gpu_resource_slice`) that aligns with the NICs by pcieRoot."""
    return [(gpu_address(i), rc, numa) for i, (rc, _bus, numa) in enumerate(GPU_NODE_ROOTS)]


def build_gpu_node(root: Path) -> SysfsBuilder:
    """GCP a4-highgpu-8g-like: 8 B200 GPUs + 8 ConnectX-7 RoCE NICs, pairwise behind a PCIe switch
    on 8 roots, 4 roots per NUMA node, plus a gVNIC uplink `eth0` on pci0000:00."""
    b = SysfsBuilder(root)
    host = b.bridge("pci0000:00")
    b.pci(host, "0000:00:05.0", "1ae0", "0042", driver="gve", numa=0, subsys=("1ae0", "0058"))
    b.netdev("eth0", pci="0000:00:05.0", mac="42:01:0a:80:00:02", mtu=8896, speed=200000)
    b.loopback()
    for i, (rc, bus, numa) in enumerate(GPU_NODE_ROOTS):
        sw_up = f"0000:{bus + 1:02x}:00.0"
        sw_gpu, sw_nic = f"0000:{bus + 2:02x}:00.0", f"0000:{bus + 2:02x}:01.0"
        gpu_port = b.bridge(rc, f"0000:{bus:02x}:01.0", sw_up, sw_gpu)
        b.pci(gpu_port, gpu_address(i), "10de", "2901", "0x030200", "nvidia", numa)
        nic_port = b.bridge(rc, f"0000:{bus:02x}:01.0", sw_up, sw_nic)
        nic = gpu_nic_address(i)
        b.pci(nic_port, nic, "15b3", "1021", driver="mlx5_core", numa=numa, subsys=("15b3", "0041"))
        mac = f"02:00:00:00:{bus:02x}:01"
        b.netdev(f"eth{i + 1}", pci=nic, mac=mac, mtu=8896, speed=400000)
        b.rdma(nic, f"mlx5_{i}")
    return b


def build_lab_node(root: Path, nic_names: Sequence[str]) -> SysfsBuilder:
    """The lab node: the GPU node's 8 PCIe roots (GPU + NIC behind a switch on each, 4 roots
    per NUMA node) whose NIC netdevs are named `nic_names[i]` (the lab's veths). No RDMA
    devices (veths have none) and no uplink function."""
    if len(nic_names) != len(GPU_NODE_ROOTS):
        raise ValueError(f"the lab node has {len(GPU_NODE_ROOTS)} NICs, got {len(nic_names)} names")
    b = SysfsBuilder(root)
    b.loopback()
    for i, (rc, bus, numa) in enumerate(GPU_NODE_ROOTS):
        sw_up = f"0000:{bus + 1:02x}:00.0"
        sw_gpu, sw_nic = f"0000:{bus + 2:02x}:00.0", f"0000:{bus + 2:02x}:01.0"
        gpu_port = b.bridge(rc, f"0000:{bus:02x}:01.0", sw_up, sw_gpu)
        b.pci(gpu_port, gpu_address(i), "10de", "2330", "0x030200", "nvidia", numa)
        nic_port = b.bridge(rc, f"0000:{bus:02x}:01.0", sw_up, sw_nic)
        nic = gpu_nic_address(i)
        b.pci(nic_port, nic, "15b3", "1021", driver="mlx5_core", numa=numa, subsys=("15b3", "0041"))
        b.netdev(nic_names[i], pci=nic, mac=f"02:00:00:00:{bus:02x}:01", speed=400000)
    return b


def build_infiniband(root: Path) -> SysfsBuilder:
    """A dual-port ConnectX-6 InfiniBand HCA: port 1 has IPoIB (`ib0`, mlx5_0); port 2 is IB-only
    (mlx5_1, no netdev). Plus a standalone ConnectX-3 IB HCA of class 0x0c0600 (mlx4_0)."""
    b = SysfsBuilder(root)
    rc = b.bridge("pci0000:3a", "0000:3a:00.0")
    for fn in ("0000:3b:00.0", "0000:3b:00.1"):
        b.pci(rc, fn, "15b3", "101b", "0x020700", "mlx5_core", 0, ("15b3", "0006"))
    b.netdev(
        "ib0",
        pci="0000:3b:00.0",
        mac="00:00:10:29:fe:80:00:00:00:00:00:00:b8:59:9f:03:00:a1:b2:c3",
        mtu=4092,
        arphrd=32,
        speed=200000,
    )
    b.rdma("0000:3b:00.0", "mlx5_0")
    b.rdma("0000:3b:00.1", "mlx5_1")
    rc2 = b.bridge("pci0000:80", "0000:80:02.0")
    b.pci(rc2, "0000:81:00.0", "15b3", "1003", "0x0c0600", "mlx4_core", 1)
    b.rdma("0000:81:00.0", "mlx4_0")
    b.loopback()
    return b


def build_sriov(root: Path) -> SysfsBuilder:
    """Two E810 PFs (`ens1f0`, `ens1f1`) with 64 iavf VFs each (130 network functions)."""
    b = SysfsBuilder(root)
    rc = b.bridge("pci0000:5d", "0000:5d:02.0")
    for pf_i, pf in enumerate(("0000:5e:00.0", "0000:5e:00.1")):
        b.pci(rc, pf, "8086", "1593", driver="ice", numa=0, subsys=("8086", "0002"), sriov_total=64)
        b.netdev(f"ens1f{pf_i}", pci=pf, mac=f"b4:96:91:00:00:0{pf_i}", speed=25000)
    for pf_i, pf in enumerate(("0000:5e:00.0", "0000:5e:00.1")):
        for n in range(64):
            slot = 1 + pf_i * 8 + n // 8
            bdf = f"0000:5e:{slot:02x}.{n % 8}"
            b.vf(pf, n, bdf, "8086", "1889", "iavf")
            b.netdev(f"ens1f{pf_i}v{n}", pci=bdf, mac=f"02:00:00:{pf_i:02x}:00:{n:02x}")
    b.loopback()
    return b


def build_erdma(root: Path) -> SysfsBuilder:
    """Alibaba-like VM: virtio-net `eth0` plus an eRDMA function of class 0x00ff00 (erdma_0)."""
    b = SysfsBuilder(root)
    host = b.bridge("pci0000:00")
    b.pci(host, "0000:00:05.0", "1af4", "1000", driver="virtio-pci", subsys=("1af4", "0001"))
    b.netdev("eth0", pci="0000:00:05.0", mac="00:16:3e:00:00:01", virtio=True)
    b.pci(host, "0000:00:06.0", "1ded", "107f", "0x00ff00", "erdma")
    b.rdma("0000:00:06.0", "erdma_0")
    b.loopback()
    return b


def build_virtio_vm(root: Path) -> SysfsBuilder:
    """A plain VM: virtio-net `eth0`, an unbound NIC, a vfio-pci NIC, docker0, a veth, `lo`."""
    b = SysfsBuilder(root)
    host = b.bridge("pci0000:00")
    b.pci(host, "0000:00:04.0", "1af4", "1000", driver="virtio-pci", subsys=("1af4", "0001"))
    b.netdev("eth0", pci="0000:00:04.0", mac="52:54:00:12:34:56", alias="uplink", virtio=True)
    b.pci(host, "0000:00:07.0", "8086", "10d3", driver=None)
    b.pci(host, "0000:00:08.0", "8086", "10d3", driver="vfio-pci")
    b.netdev("docker0", mac="02:42:ac:11:00:01", operstate="down")
    b.netdev("veth1234", mac="aa:bb:cc:dd:ee:01", operstate="up")
    b.loopback()
    return b


TREES = {
    "gpu-node": build_gpu_node,
    "infiniband": build_infiniband,
    "sriov": build_sriov,
    "erdma": build_erdma,
    "virtio-vm": build_virtio_vm,
}


def write_tree(name: str, dest: Path) -> Path:
    """Write fixture tree `name` (a key of TREES) to `dest` (created) and return `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    TREES[name](dest)
    return dest


def write_gpu_node(dest: Path) -> Path:
    """The lab's GPU node: 8 RoCE NICs on 8 PCIe roots across 2 NUMA nodes, plus a gVNIC."""
    return write_tree("gpu-node", dest)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in TREES:
        print(f"usage: python -m knd.lab.sysfs_fixture {{{'|'.join(TREES)}}} DIR", file=sys.stderr)
        sys.exit(2)
    print(write_tree(sys.argv[1], Path(sys.argv[2])))
