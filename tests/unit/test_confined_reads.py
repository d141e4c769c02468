"""The confined sysfs/procfs reader against hostile trees: links out, FIFOs, devices, big files,
odd numbers and names; and the rule that nothing else in knd opens /sys or /proc paths."""

from __future__ import annotations

import ast
import logging
import os
import threading
from pathlib import Path

import pytest

from knd.cli.main import main
from knd.host.confined import S32, U16, ConfinedTree, parse_int
from knd.host.pciids import PciIds
from knd.host.procfs import ProcRoot, read_boot_id
from knd.host.sysfs import (
    SysfsRoot,
    kernel_ifname_problem,
    read_netdev,
    read_pci_function,
    sysfs_tree_problem,
)
from knd.inventory.discover import discover
from knd.netns.capture import rdma_char_devices
from tests.fixtures.sysfs import SysfsBuilder, write_tree

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[2] / "src" / "knd"


def _replace_with_link(path: Path, target: Path) -> None:
    path.unlink()
    os.symlink(target, path)


def test_link_out_of_the_root_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("aa:bb:cc:dd:ee:ff\n")
    root = write_tree("sriov", tmp_path / "sys")
    s = SysfsRoot(root)
    nd = read_netdev(s, "ens1f0")
    assert nd is not None and nd.address is not None
    _replace_with_link(root / "class" / "net" / "ens1f0" / "address", secret)
    assert s.read("class", "net", "ens1f0", "address") is None
    assert read_netdev(s, "ens1f0").address is None  # type: ignore[union-attr]
    # A relative link that climbs above the root is refused the same way.
    rel = os.path.relpath(secret, (root / "class" / "net" / "ens1f0").resolve())
    _replace_with_link(root / "class" / "net" / "ens1f0" / "mtu", Path(rel))
    assert s.read("class", "net", "ens1f0", "mtu") is None
    # A directory link out of the root: nothing below it is listed or read.
    outside = tmp_path / "outside"
    (outside / "net" / "evil0").mkdir(parents=True)
    os.symlink(outside, root / "class" / "escape")
    assert s.listdir("class", "escape") == []
    assert s.listdir("class", "escape", "net") == []
    assert s.realpath("class", "escape") is None
    assert not s.exists("class", "escape", "net")


def test_fifo_device_and_big_file_are_refused_without_blocking(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    root.mkdir()
    os.mkfifo(root / "fifo")
    (root / "big").write_bytes(b"1" * 5000)
    (root / "page").write_bytes(b"7" * 4096)
    os.symlink("fifo", root / "link")
    tree = ConfinedTree(root)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(tree.read("fifo")), daemon=True)
    t.start()
    t.join(30)  # contract: returns at once; the margin only guards against a hang
    assert result == [None]
    assert tree.read("big") is None
    assert tree.read("page") == "7" * 4096
    assert tree.read("link") is None  # a final link is never followed for a read
    assert tree.listdir("fifo") == []
    # Character devices (here the real /dev/zero) are never opened.
    assert ConfinedTree(Path("/")).read_bytes("dev", "zero") is None
    assert ConfinedTree(Path("/dev")).read_bytes("zero") is None


def test_path_components_are_single_names(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")
    tree = ConfinedTree(tmp_path / "sub")
    (tmp_path / "sub").mkdir()
    for bad in ("..", ".", "", "a/b", "x\0y", "n" * 256):
        assert tree.read(bad) is None
        assert tree.listdir(bad) == []
    assert tree.read("..", "a") is None


@pytest.mark.parametrize(
    "text",
    ["1_0", "\u0661", "+1", " 1 2", "99999999999999999999", "0x10", "1e3", "", "-", "2147483648"],
)
def test_numbers_are_strict_ascii_within_the_kernel_type(text: str) -> None:
    assert parse_int(text, *S32) is None


def test_number_parsing_accepts_what_the_kernel_prints() -> None:
    assert parse_int("-1", *S32) == -1
    assert parse_int("2147483647", *S32) == 2**31 - 1
    assert parse_int("0x8086", *U16, base=16) == 0x8086
    assert parse_int("0x10000", *U16, base=16) is None
    assert parse_int("0x_1", *U16, base=16) is None


@pytest.mark.parametrize("value", ["1_0", "\u0661", "99999999999999999999", "+1"])
def test_hostile_numa_node_is_absent(tmp_path: Path, value: str) -> None:
    root = write_tree("sriov", tmp_path / "sys")
    s = SysfsRoot(root)
    numa = root / "bus" / "pci" / "devices" / "0000:5e:00.0" / "numa_node"
    numa.write_text(value + "\n")
    fn = read_pci_function(s, "0000:5e:00.0")
    assert fn is not None and fn.numa_node is None


def test_values_sysfs_cannot_print_are_absent(tmp_path: Path) -> None:
    root = write_tree("sriov", tmp_path / "sys")
    base = root / "class" / "net" / "ens1f0"
    (base / "address").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (base / "operstate").write_text("pwned\n")
    (base / "ifalias").write_text("a\x1b[2Jb\n")
    nd = read_netdev(SysfsRoot(root), "ens1f0")
    assert nd is not None
    assert (nd.address, nd.operstate, nd.ifalias) == (None, None, None)


def test_kernel_interface_name_rule() -> None:
    for ok in ("eth0", "ens1f0np0", "a" * 15, "é"):
        assert kernel_ifname_problem(ok) is None
    for bad in ("", ".", "..", "a" * 16, "a:b", "a b", "a\tb", "x/y", "\udcff"):
        assert kernel_ifname_problem(bad) is not None


def test_impossible_names_are_skipped_and_device_names_stay_dns_labels(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "sys"
    b = SysfsBuilder(root)
    b.loopback()
    b.netdev("dummy0", None)
    long_name = "x" * 250
    b.netdev(long_name, None)
    b.netdev("a:b", None)
    rd = root / "class" / "infiniband"
    rd.mkdir(parents=True, exist_ok=True)
    (root / "devices" / "virtual" / "infiniband" / ("R" * 63)).mkdir(parents=True)
    os.symlink("../../devices/virtual/infiniband/" + "R" * 63, rd / ("R" * 63))
    with caplog.at_level(logging.WARNING):
        result = discover(SysfsRoot(root), PciIds())
    names = [d.name for d in result.devices]
    assert "dummy0" in names
    assert all(len(n) <= 63 for n in names), names
    assert not any(long_name in str(d.attributes) for d in result.devices)
    text = " ".join(result.warnings)
    assert "x" * 20 in text and "'a:b'" in text
    assert "not a DNS label" in text  # the 63-byte RDMA name encodes to > 63 characters


def test_sysfs_root_must_be_a_sysfs_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sysfs_tree_problem(tmp_path / "nope") is not None
    (tmp_path / "empty").mkdir()
    assert "not a sysfs tree" in str(sysfs_tree_problem(tmp_path / "empty"))
    assert sysfs_tree_problem(write_tree("sriov", tmp_path / "sys")) is None
    for bad in (tmp_path / "nope", tmp_path / "empty"):
        assert main(["inventory", "--sysfs-root", str(bad)]) == 2
        assert "--sysfs-root" in capsys.readouterr().err
    assert main(["inventory", "--sysfs-root", str(tmp_path / "sys"), "--filter", ""]) == 0


def test_rdma_char_device_numbers_are_strict(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    verbs = root / "class" / "infiniband_verbs" / "uverbs0"
    verbs.mkdir(parents=True)
    (verbs / "ibdev").write_text("mlx5_0\n")
    (verbs / "dev").write_text("231:1_9\n")
    assert rdma_char_devices("mlx5_0", str(root), str(tmp_path / "dev")) == ()
    (verbs / "dev").write_text("231:192\n")
    devs = rdma_char_devices("mlx5_0", str(root), str(tmp_path / "dev"))
    assert [(d.major, d.minor) for d in devs] == [(231, 192)]


def test_boot_id_through_the_confined_reader(tmp_path: Path) -> None:
    rnd = tmp_path / "sys" / "kernel" / "random"
    rnd.mkdir(parents=True)
    (rnd / "boot_id").write_text("0f0e0d0c-0b0a-0908-0706-050403020100\n")
    assert read_boot_id(ProcRoot(tmp_path)) == "0f0e0d0c-0b0a-0908-0706-050403020100"
    (rnd / "boot_id").write_text("x" * 10000)
    assert read_boot_id(ProcRoot(tmp_path)) == ""
    live = read_boot_id()
    assert len(live) == 36  # the live /proc through the same reader


# ---------------------------------------------------------------- nobody else opens /sys, /proc

#: Modules outside knd.host allowed to name a path below /sys or /proc, and why.
ALLOWED = {
    # Writes allow-listed sysctls of the pod's netns from its netns worker thread; the path is
    # built from fixed keys and a checked interface name, never read as input.
    "netns/sysctl.py",
    # Opens namespace handles (/proc/self/ns/net), not files it reads.
    "netns/nsfd.py",
    # The lab makes the chart's HostToContainer mount points (/sys/fs/bpf among them) shared
    # mounts with mount(8); it never reads below them.
    "lab/helm.py",
}


def _docstrings(tree: ast.AST) -> set[int]:
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _below_sys_or_proc(text: str) -> bool:
    return text.startswith(("/sys/", "/proc/"))


def test_no_module_outside_knd_host_opens_sys_or_proc_paths() -> None:
    offenders: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(("host/", "_proto/")) or rel in ALLOWED:
            continue
        tree = ast.parse(path.read_text(), filename=rel)
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) not in docs and _below_sys_or_proc(node.value):
                    offenders.append(f"{rel}:{node.lineno}: {node.value!r}")
            elif isinstance(node, ast.JoinedStr) and node.values:
                head = node.values[0]
                if isinstance(head, ast.Constant) and _below_sys_or_proc(str(head.value)):
                    offenders.append(f"{rel}:{node.lineno}: f-string {head.value!r}...")
    assert offenders == [], "read sysfs/procfs through knd.host (SysfsRoot/ProcRoot)"


def test_the_rule_catches_a_direct_read(tmp_path: Path) -> None:
    sample = ast.parse('x = open(f"/proc/{pid}/cmdline")\ny = "/sys/class/net"\n')
    hits = [
        n
        for n in ast.walk(sample)
        if (
            isinstance(n, ast.Constant) and isinstance(n.value, str) and _below_sys_or_proc(n.value)
        )
    ]
    assert len(hits) == 2  # the f-string head and the plain constant
