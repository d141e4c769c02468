"""`knd inventory` offline (--sysfs-root): table, json/yaml wire form, --slices, bad filter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from knd.cli.main import main
from tests.fixtures import pciids as test_ids
from tests.fixtures.sysfs import write_tree

pytestmark = pytest.mark.unit


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["inventory", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_lists_devices_in_wire_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_tree("gpu-node", tmp_path / "sys")
    ids = test_ids.write(tmp_path / "pci.ids")
    code, out, _ = run(capsys, "--sysfs-root", str(root), "--pci-ids", str(ids), "-o", "json")
    assert code == 0
    listed = json.loads(out)
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    devices = listed["items"]
    assert len(devices) == 9
    nic = next(d for d in devices if d["name"] == "pci-0000-11-00-0")
    assert nic["attributes"]["dra.net/ifName"] == {"string": "eth1"}
    assert nic["attributes"]["dra.net/numaNode"] == {"int": 0}
    assert nic["attributes"]["dra.net/rdma"] == {"bool": True}
    assert nic["attributes"]["resource.kubernetes.io/pcieRoot"] == {"string": "pci0000:0d"}
    code, out, _ = run(capsys, "--sysfs-root", str(root), "--pci-ids", str(ids), "-o", "yaml")
    assert yaml.safe_load(out) == listed
    code, out, _ = run(capsys, "--sysfs-root", str(root), "--pci-ids", str(ids), "-o", "name")
    assert out.splitlines() == [d["name"] for d in devices]


def test_table_marks_filtered_and_excluded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_tree("virtio-vm", tmp_path / "sys")
    flt = 'device.attributes["dra.net"].ifName != "eth0"'
    code, out, _ = run(capsys, "--sysfs-root", str(root), "--filter", flt)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "# 1 device(s) to publish, offline (sysfs only)"
    assert lines[1].split() == [
        "NAME",
        "IFNAME",
        "PCIEROOT",
        "NUMA",
        "RDMA",
        "TYPE",
        "STATE",
        "PUBLISH",
    ]
    row = {ln.split()[0]: ln.split() for ln in lines[2:4]}
    assert row["pci-0000-00-04-0"] == [
        "pci-0000-00-04-0",
        "eth0",
        "pci0000:00",
        "-",
        "no",
        "device",
        "up",
        "filtered",
    ]
    assert row["veth1234"][-1] == "yes"
    assert "0000:00:08.0  passthrough: bound to vfio-pci" in out
    assert "docker0       name: on the built-in skip list" in out
    # the default filter reads dra.net/type, which offline veths lack: kept, with a warning
    code, out, _ = run(capsys, "--sysfs-root", str(root))
    assert "veth1234: filter evaluation failed" in out and "# 2 device(s) to publish" in out


def test_slices_split_at_128(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_tree("sriov", tmp_path / "sys")
    code, out, _ = run(
        capsys, "--sysfs-root", str(root), "--slices", "--node-name", "n1", "-o", "json"
    )
    assert code == 0
    listed = json.loads(out)
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    slices = listed["items"]
    assert [len(s["spec"]["devices"]) for s in slices] == [128, 2]
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {2}
    assert slices[0]["metadata"]["generateName"] == "00000-dra.net-n1-"
    assert slices[0]["apiVersion"] == "resource.k8s.io/v1"


def test_bad_filter_fails_with_compiler_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_tree("erdma", tmp_path / "sys")
    code, _, err = run(capsys, "--sysfs-root", str(root), "--filter", "device.attributes[")
    assert code == 1 and "invalid filter expression" in err and "Syntax error" in err


def test_slices_default_to_yaml_and_summarise_as_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_tree("sriov", tmp_path / "sys")
    base = ("--sysfs-root", str(root), "--slices", "--node-name", "n1")
    code, out, _ = run(capsys, *base)
    listed = yaml.safe_load(out)
    assert code == 0 and listed["kind"] == "List" and len(listed["items"]) == 2
    _, out, _ = run(capsys, *base, "-o", "name")
    names = out.splitlines()
    assert len(names) == 130 and names[0].startswith("dra.net/n1/pci-")
    _, out, _ = run(capsys, *base, "-o", "table")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DRIVER", "NODE", "POOL", "DEVICES"]
    assert lines[1].split() == ["00000-dra.net-n1-", "dra.net", "n1", "n1", "128"]
    _, out, _ = run(capsys, *base, "-o", "wide")
    assert out.splitlines()[0].split()[-1] == "DEVICE-NAMES"
    assert names[0].rpartition("/")[2] in out.splitlines()[1]


def test_wide_table_adds_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_tree("virtio-vm", tmp_path / "sys")
    code, out, _ = run(capsys, "--sysfs-root", str(root), "--filter", "", "-o", "wide")
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split()[8:] == [
        "PCIADDRESS",
        "MAC",
        "MTU",
        "ENCAP",
        "SRIOV",
        "VIRTUAL",
        "VENDOR",
        "PCIDEVICE",
    ]
    veth = next(ln.split() for ln in lines if ln.startswith("veth1234"))
    assert veth[8:14] == ["-", "aa:bb:cc:dd:ee:01", "1500", "ether", "no", "yes"]
