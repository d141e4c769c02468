"""API limits applied to attributes (64-char strings, 32 attributes) and the CEL admin filter."""

from __future__ import annotations

import pytest

from knd.api import attributes as attr
from knd.inventory.filter import DEFAULT_FILTER, AdminFilter, FilterError, activation
from knd.inventory.limits import drop_order, fit, list_value
from knd.inventory.model import AttrValue, Device

pytestmark = pytest.mark.unit


def test_list_value_truncates_on_element_boundaries() -> None:
    addrs = [f"2001:db8:0:{i}::1/64" for i in range(5)]  # 18 chars each
    out = list_value(addrs)
    assert out == ",".join(addrs[:3]) and len(out) == 56
    assert list_value(["x" * 65, "10.0.0.1/8"]) == "10.0.0.1/8"


def test_fit_cuts_long_strings_and_lists() -> None:
    attrs: dict[str, AttrValue] = {
        attr.PCI_DEVICE: "n" * 70,
        attr.IPV4: ",".join(["10.1.1.1/32"] * 7),
    }
    out, warnings = fit("d", attrs)
    assert out[attr.PCI_DEVICE] == "n" * 64
    assert out[attr.IPV4] == ",".join(["10.1.1.1/32"] * 5)
    assert len(warnings) == 2


def test_fit_drops_lowest_value_attributes_beyond_32() -> None:
    base = [n for n in attr.PRIORITY_ORDER if n not in attr.CLOUD_ATTRIBUTES]
    attrs: dict[str, AttrValue] = {name: "v" for name in base}  # 27
    extra = {f"gce.dra.net/extra{i:02d}": i for i in range(8)}  # +8 = 35
    attrs.update(extra)
    out, warnings = fit("dev", attrs)
    assert len(out) == 32
    dropped = set(attrs) - set(out)
    assert dropped == {"gce.dra.net/extra07", "gce.dra.net/extra06", "gce.dra.net/extra05"}
    assert "3 attribute(s) dropped" in warnings[0]
    # with capacities counted, known attributes go from the end of PRIORITY_ORDER
    out2, _ = fit("dev", {name: "v" for name in base}, capacities=8)
    assert set(base) - set(out2) == {
        attr.ALIAS,
        attr.TCX_PROGRAM_NAMES,
        attr.TC_FILTER_NAMES,
    }
    assert attr.STD_PCIE_ROOT in out2 and attr.IF_NAME in out2


def test_cloud_topology_outranks_cosmetic_attributes_within_the_budget() -> None:
    base = [n for n in attr.PRIORITY_ORDER if n not in attr.CLOUD_ATTRIBUTES]
    attrs: dict[str, AttrValue] = {name: "v" for name in base}  # 27
    gce = ["gce.dra.net/networkName", "gce.dra.net/block", "gce.dra.net/subBlock"]
    gce += ["gce.dra.net/host", "gce.dra.net/machineType", "gce.dra.net/networkProjectNumber"]
    attrs.update({name: "x" for name in gce})  # 33
    attrs["example.com/webhookAttr"] = "w"  # 34: unknown names still go first
    out, warnings = fit("dev", attrs)
    assert len(out) == 32
    assert set(gce) <= set(out)
    assert set(attrs) - set(out) == {"example.com/webhookAttr", attr.ALIAS}
    assert "2 attribute(s) dropped" in warnings[0]


def test_drop_order_unknown_first_then_priority_reversed() -> None:
    assert drop_order([attr.STD_PCIE_ROOT, "x.io/a", attr.ALIAS, attr.MTU]) == [
        "x.io/a",
        attr.ALIAS,
        attr.MTU,
        attr.STD_PCIE_ROOT,
    ]


VETH = Device("kiv0", {attr.IF_NAME: "kiv0", attr.TYPE: "veth"})
NIC = Device(
    "pci-0000-11-00-0",
    {attr.IF_NAME: "eth1", attr.TYPE: "device", attr.RDMA: True, attr.STD_PCIE_ROOT: "pci0000:0d"},
)
OFFLINE = Device("veth1234", {attr.IF_NAME: "veth1234"})  # no dra.net/type (offline scan)


def test_default_filter_drops_veth_keeps_nic() -> None:
    f = AdminFilter(DEFAULT_FILTER)
    assert not f(VETH).keep
    assert f(NIC).keep and f(NIC).warning is None


def test_filter_sees_standard_domain_and_driver() -> None:
    f = AdminFilter(
        'device.driver == "dra.net" && '
        'device.attributes["resource.kubernetes.io"].pcieRoot == "pci0000:0d" && '
        'device.attributes["dra.net"].rdma'
    )
    assert f(NIC).keep
    assert not f(Device("x", {attr.STD_PCIE_ROOT: "pci0000:0d", attr.RDMA: False})).keep


def test_filter_evaluation_error_keeps_device_with_warning() -> None:
    v = AdminFilter(DEFAULT_FILTER)(OFFLINE)
    assert v.keep and v.warning is not None and "veth1234" in v.warning


def test_filter_non_bool_result_drops() -> None:
    v = AdminFilter('device.attributes["dra.net"].ifName')(NIC)
    assert not v.keep and v.warning is not None


def test_filter_guarded_lookup_works_on_absent_attributes() -> None:
    f = AdminFilter(
        '!("type" in device.attributes["dra.net"]) || device.attributes["dra.net"].type != "veth"'
    )
    assert f(OFFLINE).keep and f(OFFLINE).warning is None
    assert not f(VETH).keep


def test_bad_expression_fails_with_compiler_message() -> None:
    with pytest.raises(FilterError, match="Syntax error"):
        AdminFilter('device.attributes["dra.net"')


def test_empty_filter_keeps_all_and_apply_splits() -> None:
    assert AdminFilter("")(VETH).keep
    kept, dropped, warnings = AdminFilter(DEFAULT_FILTER).apply([VETH, NIC, OFFLINE])
    assert [d.name for d in kept] == ["pci-0000-11-00-0", "veth1234"]
    assert [d.name for d in dropped] == ["kiv0"] and len(warnings) == 1


def test_activation_groups_by_domain_and_unqualified_under_driver() -> None:
    act = activation(Device("d", {"dra.net/mtu": 9000, "model": "cx7"}), "dra.net")
    assert act["device"]["attributes"]["dra.net"] == {"mtu": 9000, "model": "cx7"}
    assert act["device"]["attributes"]["resource.kubernetes.io"] == {}
