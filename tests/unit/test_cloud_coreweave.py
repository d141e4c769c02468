"""CoreWeave CKS: `coreweave.dra.net/*` attributes from the Node's labels (DraNet's names), the
per-device leaf switch joined through the RDMA device behind the PCI address, detection by the
cluster label, the daemon's Node reader, and `knd inventory --node-labels` offline."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from knd.host import pciids
from knd.host.sysfs import SysfsRoot
from knd.inventory.cloud import coreweave, detect
from knd.inventory.cloud.base import CloudError, DeviceIds, canonical_hint
from knd.inventory.cloud.state import CloudState
from knd.inventory.discover import Options, discover
from knd.lab.sysfs_fixture import SysfsBuilder
from tests.fixtures import metadata as md

NODE_WIDE = {
    "coreweave.dra.net/fabricFlavor": "infiniband",
    "coreweave.dra.net/fabric": "US-EAST-15A-FAB66",
    "coreweave.dra.net/superpod": "2",
    "coreweave.dra.net/leafgroup": "856886992745",
    "coreweave.dra.net/leafgroupName": "90.1-DH1",
    "coreweave.dra.net/rack": "82",
    "coreweave.dra.net/speedCurrent": "3200G",
    "coreweave.dra.net/speedExpected": "3200G",
    "coreweave.dra.net/instanceType": "b200-8x",
}


def build_cks_node(root: Path) -> SysfsBuilder:
    """Two ConnectX-7 InfiniBand ports with IPoIB netdevs (udev names `ibp24s0`, `ibp42s0`),
    RDMA devices `ibp0`/`ibp1` as CKS names them, and an Ethernet NIC without RDMA."""
    b = SysfsBuilder(root)
    rc = b.bridge("pci0000:15", "0000:15:01.0")
    b.pci(rc, "0000:18:00.0", "15b3", "1021", "0x020700", "mlx5_core", 0, ("15b3", "0041"))
    b.netdev("ibp24s0", pci="0000:18:00.0", mtu=4092, arphrd=32, mac="00:00:10:87:fe:80:00:01")
    b.rdma("0000:18:00.0", "ibp0")
    rc2 = b.bridge("pci0000:27", "0000:27:01.0")
    b.pci(rc2, "0000:2a:00.0", "15b3", "1021", "0x020700", "mlx5_core", 0, ("15b3", "0041"))
    b.netdev("ibp42s0", pci="0000:2a:00.0", mtu=4092, arphrd=32, mac="00:00:10:87:fe:80:00:02")
    b.rdma("0000:2a:00.0", "ibp1")
    rc3 = b.bridge("pci0000:a0", "0000:a0:01.0")
    b.pci(rc3, "0000:a1:00.0", "8086", "1593", "0x020000", "ice", 1, ("8086", "0002"))
    b.netdev("ens9", pci="0000:a1:00.0", mac="b4:96:91:00:00:09")
    b.loopback()
    return b


def labels(mapping: Mapping[str, str] = md.CKS_LABELS) -> coreweave.NodeLabels:
    return lambda: mapping


def test_node_labels_become_attributes_and_the_leaf_switch_joins_on_the_rdma_device(
    tmp_path: Path,
) -> None:
    build_cks_node(tmp_path / "sys")
    inst = coreweave.load(labels(), SysfsRoot(tmp_path / "sys"))
    assert inst.rdma_by_pci == {"18:00.0": "ibp0", "2a:00.0": "ibp1"}
    assert inst.attributes(DeviceIds("ibp24s0", pci_address="0000:18:00.0")) == {
        **NODE_WIDE,
        "coreweave.dra.net/leafSwitch": "L90.1.3",
    }
    second = inst.attributes(DeviceIds("ibp42s0", pci_address="0000:2a:00.0"))
    assert second["coreweave.dra.net/leafSwitch"] == "L90.1.4"
    # An Ethernet NIC with no RDMA device: the node-wide ones only.
    assert inst.attributes(DeviceIds("ens9", pci_address="0000:a1:00.0")) == NODE_WIDE
    # No PCI join possible: an interface named like CKS's RDMA devices joins by name (DraNet).
    assert inst.attributes(DeviceIds("ibp7"))["coreweave.dra.net/leafSwitch"] == "L90.1.5"
    assert "coreweave.dra.net/leafSwitch" not in inst.attributes(DeviceIds("ibp3"))
    assert inst.device_config(DeviceIds("ibp24s0", pci_address="0000:18:00.0")) is None


def test_missing_empty_and_oversized_labels_are_skipped() -> None:
    inst = coreweave.CoreWeaveInstance(
        {
            "cks.coreweave.com/cluster": "c",
            "backend.coreweave.cloud/fabric": "x" * 65,
            "backend.coreweave.cloud/superpod": "",
            "node.coreweave.cloud/rack": "r" * 64,
        }
    )
    assert inst.attributes(DeviceIds("eth0")) == {"coreweave.dra.net/rack": "r" * 64}


def test_a_node_without_the_cluster_label_or_unreadable_labels_is_not_cks(tmp_path: Path) -> None:
    plain = {"kubernetes.io/hostname": "n1", "node.kubernetes.io/instance-type": "b200-8x"}
    with pytest.raises(CloudError, match=r"no cks\.coreweave\.com/cluster label"):
        coreweave.load(labels(plain), SysfsRoot(tmp_path))

    def broken() -> Mapping[str, str]:
        raise ConnectionRefusedError("apiserver down")

    with pytest.raises(CloudError, match="reading the Node's labels: apiserver down"):
        coreweave.load(broken, SysfsRoot(tmp_path))
    with pytest.raises(CloudError, match="no API server"):
        coreweave.load(None, SysfsRoot(tmp_path))
    assert coreweave.probe(labels())
    assert not coreweave.probe(labels(plain))
    assert not coreweave.probe(broken)
    assert not coreweave.probe(None)


def test_labels_of_a_node_object() -> None:
    assert coreweave.labels_of(md.cks_node()) == md.CKS_LABELS
    assert coreweave.labels_of({"metadata": {"name": "n"}}) == {}
    assert coreweave.labels_of({"metadata": {"labels": {"a": "1", "b": 2}}}) == {"a": "1"}
    bad: object
    for bad in ([], {"kind": "Node"}, {"metadata": {"labels": ["a"]}}):
        with pytest.raises(ValueError, match="metadata"):
            coreweave.labels_of(bad)


def _closed_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return f"http://127.0.0.1:{port}"


def test_detection_and_the_cks_hint(tmp_path: Path) -> None:
    off = _closed_url()  # no metadata server answers
    sysfs = SysfsRoot(tmp_path)
    assert detect.detect(sysfs, off, environ={}, node_labels=labels()) == "CKS"
    assert detect.detect(sysfs, off, environ={}, node_labels=labels({"a": "b"})) == "NONE"
    assert detect.detect(sysfs, off, environ={}) == "NONE"  # no Node reader: no CKS probe
    assert canonical_hint("cks") == "CKS"


def test_cloud_state_enriches_a_scan_from_the_node_labels(tmp_path: Path) -> None:
    build_cks_node(tmp_path / "sys")
    sysfs = SysfsRoot(tmp_path / "sys")
    state = CloudState("CKS", sysfs=sysfs, node_labels=labels())
    state.start(wait=5.0)
    state.stop()
    assert state.instance is not None and state.provider == "CKS"
    no_ids = pciids.load(Path("/nonexistent/pci.ids"))
    found = discover(sysfs, no_ids, None, Options(enrich=state.enrich))
    by_if = {d.attributes.get("dra.net/ifName"): d.attributes for d in found.devices}
    assert by_if["ibp24s0"]["coreweave.dra.net/leafSwitch"] == "L90.1.3"
    assert by_if["ibp42s0"]["coreweave.dra.net/leafSwitch"] == "L90.1.4"
    assert by_if["ens9"]["coreweave.dra.net/fabric"] == "US-EAST-15A-FAB66"
    assert "coreweave.dra.net/leafSwitch" not in by_if["ens9"]


def test_inventory_offline_with_node_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from knd.cli.main import main

    root = build_cks_node(tmp_path / "sys").root
    node_json = tmp_path / "node.json"
    node_json.write_text(json.dumps(md.cks_node()))
    label_map = tmp_path / "labels.yaml"
    label_map.write_text(yaml.safe_dump(dict(md.CKS_LABELS)))
    base = ["inventory", "--sysfs-root", str(root), "--cloud-metadata-endpoint", _closed_url()]
    for source in (node_json, label_map):
        assert main([*base, "--node-labels", str(source), "-o", "json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        attrs = {
            d["attributes"]["dra.net/ifName"]["string"]: d["attributes"] for d in listed["items"]
        }
        assert attrs["ibp24s0"]["coreweave.dra.net/leafSwitch"] == {"string": "L90.1.3"}
        assert attrs["ens9"]["coreweave.dra.net/superpod"] == {"string": "2"}
    # Detected from the labels (no hint); the table names the provider.
    assert main([*base, "--node-labels", str(node_json)]) == 0
    assert "CLOUD (CKS)" in capsys.readouterr().out
    # Hinted, but the file is missing or not labels: said on stderr, the scan still runs.
    hinted = [*base, "--cloud-provider-hint", "CKS", "--cloud-wait", "0.5"]
    assert main([*hinted, "--node-labels", str(tmp_path / "absent.json")]) == 0
    captured = capsys.readouterr()
    assert "cloud provider CKS: no metadata" in captured.err and "absent.json" in captured.err
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    assert main([*hinted, "--node-labels", str(bad)]) == 0
    assert "want one Node object or one label map" in capsys.readouterr().err
