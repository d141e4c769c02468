"""Device naming (exactly DraNet's) and Kubernetes API limits at their boundaries."""

from __future__ import annotations

import pytest

from knd.api import attributes as attr
from knd.api import limits
from knd.api.names import (
    decode_interface_device_name,
    interface_device_name,
    is_pci_address,
    pci_device_name,
)


@pytest.mark.parametrize(
    ("pci", "name"),
    [("0000:8a:00.0", "pci-0000-8a-00-0"), ("0001:00:1F.7", "pci-0001-00-1f-7")],
)
def test_pci_device_names(pci: str, name: str) -> None:
    assert pci_device_name(pci) == name
    assert limits.is_dns_label(name)


@pytest.mark.parametrize("bad", ["0000:8a:00", "8a:00.0", "0000:8a:00.8", "zzzz:8a:00.0", ""])
def test_pci_device_name_rejects_non_bdf(bad: str) -> None:
    assert not is_pci_address(bad)
    with pytest.raises(ValueError, match="not a PCI address"):
        pci_device_name(bad)


@pytest.mark.parametrize(
    ("ifname", "device"),
    [
        ("eth0", "eth0"),
        ("veth-a1", "veth-a1"),
        ("mlx5_6", "net-nvwhqnk7gy"),
        ("Eth0", "net-iv2gqma"),
        ("ib0.8001", "net-nfrdalrygaydc"),
        ("-x", "net-fv4a"),
    ],
)
def test_interface_device_names(ifname: str, device: str) -> None:
    assert interface_device_name(ifname) == device
    assert limits.is_dns_label(device)
    if device != ifname:
        assert decode_interface_device_name(device) == ifname


def test_decode_non_encoded_names() -> None:
    assert decode_interface_device_name("eth0") is None
    assert decode_interface_device_name("net-!!") is None


def test_dns_label_boundary() -> None:
    assert limits.is_dns_label("a" * 63)
    assert not limits.is_dns_label("a" * 64)
    assert not limits.is_dns_label("a-")
    assert not limits.is_dns_label("A")


def test_slice_capacity() -> None:
    assert limits.max_devices_per_slice(restricted=False) == 128
    assert limits.max_devices_per_slice(restricted=True) == 64


def test_qualified_names_boundaries() -> None:
    assert limits.check_qualified_name("dra.net/" + "a" * 32) == []
    assert limits.check_qualified_name("dra.net/" + "a" * 33) != []
    assert limits.check_qualified_name("a" * 63 + "/x") == []
    assert limits.check_qualified_name("a" * 64 + "/x") != []
    assert limits.check_qualified_name("Bad_Domain/x") != []
    assert limits.check_qualified_name("dra.net/1abc") != []
    assert limits.check_qualified_name("plain_id") == []


def test_every_published_attribute_name_is_valid_and_prioritised() -> None:
    names = [v for k, v in vars(attr).items() if k.isupper() and isinstance(v, str) and "/" in v]
    assert names, "attribute constants exist"
    for name in names:
        assert limits.check_qualified_name(name) == [], name
        if name in attr.CAPACITY_NAMES:  # a capacity (dra.net/shares), not an attribute
            assert name not in attr.PRIORITY_ORDER, name
            continue
        assert name in attr.PRIORITY_ORDER, name
    assert len(set(attr.PRIORITY_ORDER)) == len(attr.PRIORITY_ORDER)
    assert attr.STD_PCIE_ROOT == "resource.kubernetes.io/pcieRoot"
    assert attr.STD_PCI_BUS_ID == "resource.kubernetes.io/pciBusID"
    assert attr.STD_NUMA_NODE == "resource.kubernetes.io/numaNode"


def test_driver_name() -> None:
    assert limits.check_driver_name("dra.net") == []
    assert limits.check_driver_name("a" * 64) != []
    assert limits.check_driver_name("Dra.net") != []


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], ""),
        (["10.0.0.1/8"], "10.0.0.1/8"),
        (["a" * 30, "b" * 33], "a" * 30 + "," + "b" * 33),  # exactly 64
        (["a" * 30, "b" * 34], "a" * 30),  # 65 would not fit: drop the whole element
        (["x" * 65, "y"], "y"),  # an element longer than the limit is skipped, not cut
    ],
)
def test_truncate_list_string_on_element_boundaries(items: list[str], expected: str) -> None:
    out = limits.truncate_list_string(items)
    assert out == expected
    assert len(out) <= limits.MAX_ATTRIBUTE_STRING_LEN


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", "\t"])
def test_every_name_pattern_is_anchored_at_both_ends(suffix: str) -> None:
    """A `$` anchor lets one trailing newline through; each check below is a fullmatch."""
    from knd.netns import sysctl
    from knd.netns.errors import PlanError
    from knd.netns.plan import check_mac
    from knd.nri.plugin import PluginConfig

    assert limits.is_dns_label("eth0") and not limits.is_dns_label("eth0" + suffix)
    assert limits.check_driver_name("dra.net") == []
    assert limits.check_driver_name("dra.net" + suffix) != []
    assert limits.check_qualified_name("dra.net/x" + suffix) != []
    assert is_pci_address("0000:8a:00.0") and not is_pci_address("0000:8a:00.0" + suffix)
    PluginConfig(name="dra.net", index="00")
    with pytest.raises(ValueError, match="plugin name"):
        PluginConfig(name="dra.net" + suffix)
    with pytest.raises(ValueError, match="plugin index"):
        PluginConfig(index="00" + suffix)
    check_mac("02:00:00:00:00:01", "mac")
    with pytest.raises(PlanError, match="invalid MAC"):
        check_mac("02:00:00:00:00:01" + suffix, "mac")
    assert sysctl.check_ifname("eth0") == "eth0"
    with pytest.raises(PlanError, match="invalid interface name"):
        sysctl.check_ifname("eth0" + suffix)
