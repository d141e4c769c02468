"""Hypothesis fuzzing of the sysfs reader over generated hostile trees.

Each example builds a small sysfs-like tree (in the test's tmp dir) whose entries may be FIFOs,
directories where files belong, links out of the root (to a secret file or /dev/zero), link
loops, dangling links, huge or binary files and names no kernel makes. Contracts: discovery,
device location, RDMA char-device capture and the health probe finish and raise nothing; no
byte of the secret is published; every device name is a DNS label of at most 63 characters;
numbers are within their kernel types.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knd.api.limits import is_dns_label
from knd.driver.netns_plans import SysfsDeviceLocator
from knd.host.pciids import PciIds
from knd.host.sysfs import SysfsRoot
from knd.inventory.discover import discover
from knd.inventory.model import Discovery
from knd.kubelet.health_probe import HealthTarget, SysfsLinkProbe
from knd.netns.capture import rdma_char_devices
from tests.fuzz_budget import fuzz

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-0f-th3-h0st"
#: Contract deadline for one example (each takes milliseconds; a FIFO read would hang forever).
DEADLINE_S = 60

ODD_NAMES = st.sampled_from(
    [
        "eth0",
        "ens1f0",
        "lo",
        "a:b",
        "x" * 16,
        "é",
        " sp",
        "tab\t",
        "-",
        "UPPER",
        "n" * 200,
        "mlx5_0",
    ]
)
NAMES = st.one_of(
    ODD_NAMES,
    st.text(min_size=1, max_size=20)
    .filter(lambda s: "/" not in s and "\0" not in s)
    .filter(lambda s: s not in (".", "..")),
)
BDFS = st.sampled_from(["0000:00:01.0", "0000:5e:00.1", "0000:00:1f.7", "0000:zz:00.0"])
ATTRS = st.sampled_from(
    [
        "address",
        "mtu",
        "type",
        "operstate",
        "ifalias",
        "speed",
        "carrier",
        "numa_node",
        "class",
        "vendor",
        "device",
        "subsystem_vendor",
        "subsystem_device",
        "sriov_totalvfs",
        "sriov_numvfs",
        "dev",
        "ibdev",
    ]
)
VALUES = st.one_of(
    st.sampled_from(
        [
            "1_0",
            "\u0661",
            "99999999999999999999",
            "-1",
            "0x020000",
            "0x8086",
            "up",
            "1",
            "aa:bb:cc:dd:ee:ff",
            "231:192",
            "231:1_9",
            "mlx5_0",
            "",
            "\x1b[2J",
            SECRET,
        ]
    ),
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
)
KINDS = st.sampled_from(
    [
        "file",
        "file",
        "file",
        "fifo",
        "dir",
        "link_secret",
        "link_devzero",
        "link_loop",
        "link_dangling",
        "huge",
    ]
)


@dataclass(frozen=True)
class Entry:
    where: str  # "net" | "pci" | "ib" | "verbs"
    name: str
    attr: str
    kind: str
    value: str
    bdf: str


ENTRIES = st.builds(
    Entry,
    where=st.sampled_from(["net", "pci", "ib", "verbs"]),
    name=NAMES,
    attr=ATTRS,
    kind=KINDS,
    value=VALUES,
    bdf=BDFS,
)


def _put(path: Path, kind: str, value: str, secret: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(path):
        return
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "link_secret":
        os.symlink(secret, path)
    elif kind == "link_devzero":
        os.symlink("/dev/zero", path)
    elif kind == "link_loop":
        os.symlink(path.name, path)
    elif kind == "link_dangling":
        os.symlink("nowhere/at/all", path)
    elif kind == "huge":
        with open(path, "wb") as fh:
            fh.truncate(1 << 20)
    else:
        path.write_bytes(value.encode("utf-8", errors="surrogateescape") + b"\n")


def _build(root: Path, secret: Path, entries: list[Entry], escape_dir: bool) -> None:
    (root / "class").mkdir(parents=True)
    (root / "devices" / "virtual" / "net").mkdir(parents=True)
    for e in entries:
        try:
            if e.where == "net":
                pci_dev = root / "devices" / "pci0000:00" / e.bdf
                dev = (
                    pci_dev / "net" / e.name
                    if e.kind != "dir"
                    else root / "devices" / "virtual" / "net" / e.name
                )
                dev.mkdir(parents=True, exist_ok=True)
                link = root / "class" / "net" / e.name
                link.parent.mkdir(parents=True, exist_ok=True)
                if not os.path.lexists(link):
                    os.symlink(os.path.relpath(dev, link.parent), link)
                _put(dev / e.attr, e.kind, e.value, secret)
            elif e.where == "pci":
                dev = root / "devices" / "pci0000:00" / e.bdf
                dev.mkdir(parents=True, exist_ok=True)
                link = root / "bus" / "pci" / "devices" / e.bdf
                link.parent.mkdir(parents=True, exist_ok=True)
                if not os.path.lexists(link):
                    os.symlink(os.path.relpath(dev, link.parent), link)
                _put(dev / e.attr, e.kind, e.value, secret)
                _put(dev / "infiniband" / e.name / "x", "file", "1", secret)
            elif e.where == "ib":
                dev = root / "devices" / "pci0000:00" / e.bdf / "infiniband" / e.name
                dev.mkdir(parents=True, exist_ok=True)
                link = root / "class" / "infiniband" / e.name
                link.parent.mkdir(parents=True, exist_ok=True)
                if not os.path.lexists(link):
                    os.symlink(os.path.relpath(dev, link.parent), link)
            else:
                _put(root / "class" / "infiniband_verbs" / e.name / e.attr, e.kind, e.value, secret)
        except OSError:
            continue  # e.g. a name over NAME_MAX: not a tree anyone can build
    if escape_dir:  # a whole class directory that lives outside the root
        outside = secret.parent / "outside-net"
        (outside / "evil0").mkdir(parents=True, exist_ok=True)
        (outside / "evil0" / "address").write_text(SECRET)
        (outside / "evil0" / "ifalias").write_text(SECRET)  # published if it were read
        shutil.rmtree(root / "class" / "net", ignore_errors=True)
        os.symlink(outside, root / "class" / "net")


T = TypeVar("T")


def _within_deadline(fn: Callable[[], T]) -> T:
    box: list[T] = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    t.join(DEADLINE_S)
    assert box, "sysfs reader hung (a FIFO or device must never be opened for reading)"
    return box[0]


@fuzz(0.25)
@given(entries=st.lists(ENTRIES, max_size=25), escape_dir=st.booleans())
def test_hostile_trees(
    tmp_path_factory: pytest.TempPathFactory, entries: list[Entry], escape_dir: bool
) -> None:
    base = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    try:
        secret = base / "secret"
        secret.write_text(SECRET + "\n")
        root = base / "sys"
        _build(root, secret, entries, escape_dir)
        sysfs = SysfsRoot(root)
        result = _within_deadline(lambda: discover(sysfs, PciIds()))
        assert isinstance(result, Discovery)
        blob = repr([(d.name, d.attributes) for d in result.devices]) + repr(result.warnings)
        assert SECRET not in blob
        for d in result.devices:
            assert is_dns_label(d.name), d.name
            numa = d.attributes.get("dra.net/numaNode")
            assert numa is None or (isinstance(numa, int) and 0 <= numa < 2**31)
            mtu = d.attributes.get("dra.net/mtu")
            assert mtu is None or (isinstance(mtu, int) and 0 <= mtu < 2**32)
        locator = SysfsDeviceLocator(root)
        names = [d.name for d in result.devices] + [
            f"pci-{e.bdf.replace(':', '-').replace('.', '-')}" for e in entries
        ]
        targets = []
        for name in names:
            loc = _within_deadline(functools.partial(locator.locate, name))
            if loc is not None:
                targets.append(HealthTarget("p", name, loc.ifname, loc.rdma_device))
        for e in entries:
            devs = _within_deadline(
                functools.partial(rdma_char_devices, e.name, str(root), str(base / "dev"))
            )
            assert isinstance(devs, tuple)
        targets += [HealthTarget("p", "x", e.name, e.name) for e in entries]
        states = _within_deadline(SysfsLinkProbe(lambda: targets, root).snapshot)
        assert SECRET not in repr(states)
    finally:
        shutil.rmtree(base, ignore_errors=True)
