"""The admin filter in DraNet's language (`attributes[...].StringValue`) beside knd's form:
form detection by free variables, DraNet's evaluation semantics, start-up type checking, and the
same filter in `knd inventory` and `knd driver`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knd.cli.main import main
from knd.inventory.cel_check import CheckError, free_variables
from knd.inventory.filter import DRANET_FORM, KND_FORM, AdminFilter, FilterError, detect_form
from knd.inventory.model import Device
from tests.fixtures.sysfs import write_tree

pytestmark = pytest.mark.unit

#: DraNet's built-in default, verbatim (cmd/dranet/app.go), double space included.
DRANET_DEFAULT = (
    '!("dra.net/type" in attributes) || attributes["dra.net/type"].StringValue  != "veth"'
)

VETH = Device("veth9", {"dra.net/type": "veth", "dra.net/virtual": True, "dra.net/mtu": 1500})
NIC = Device("pci-0000-3b-00-0", {"dra.net/type": "device", "dra.net/mtu": 9000})
BARE = Device("net-bare", {})


def keeps(expr: str, *devices: Device) -> list[bool]:
    f = AdminFilter(expr)
    return [f(d).keep for d in devices]


@pytest.mark.parametrize(
    ("expr", "form"),
    [
        (DRANET_DEFAULT, DRANET_FORM),
        ('device.attributes["dra.net"].type != "veth"', KND_FORM),
        ("true", KND_FORM),
        # the word inside a string literal is not a reference
        ('"attributes" != "device"', KND_FORM),
        # a comprehension variable called `attributes` is bound, not free
        ('device.attributes["dra.net"].all(attributes, attributes != "x")', KND_FORM),
        ('attributes.exists(device, device == "dra.net/rdma")', DRANET_FORM),
    ],
)
def test_form_is_decided_by_free_variables(expr: str, form: str) -> None:
    assert detect_form(expr) == form
    assert AdminFilter(expr).form == form


def test_both_forms_in_one_expression_is_refused() -> None:
    with pytest.raises(FilterError, match="both `device`"):
        AdminFilter('device.driver == "dra.net" && attributes["dra.net/rdma"].BoolValue')


def test_dranet_default_drops_veths_keeps_nics_and_untyped_devices() -> None:
    f = AdminFilter(DRANET_DEFAULT)
    assert [f(d).keep for d in (VETH, NIC, BARE)] == [False, True, True]
    assert all(f(d).warning is None for d in (VETH, NIC, BARE))


def test_unset_fields_read_as_zero_values_like_cel_go_native_types() -> None:
    # dra.net/mtu is an IntValue: its StringValue/BoolValue/IntValues are "", false, []
    assert keeps('attributes["dra.net/mtu"].StringValue == ""', NIC) == [True]
    assert keeps('attributes["dra.net/mtu"].BoolValue', NIC) == [False]
    assert keeps('size(attributes["dra.net/mtu"].IntValues) == 0', NIC) == [True]
    assert keeps('attributes["dra.net/mtu"].IntValue >= 9000', VETH, NIC) == [False, True]
    assert keeps('attributes["dra.net/virtual"].BoolValue', VETH) == [True]


def test_evaluation_error_keeps_the_device_with_a_warning() -> None:
    # DraNet's pkg/filter: an evaluation error publishes the device
    f = AdminFilter('attributes["dra.net/virtual"].BoolValue')
    verdict = f(NIC)
    assert verdict.keep and verdict.warning is not None and NIC.name in verdict.warning
    zero = Device("pci-0000-00-01-0", {"dra.net/mtu": 0})
    g = AdminFilter('(1 / attributes["dra.net/mtu"].IntValue) == 1')
    assert g(zero).keep and g(zero).warning is not None
    assert not g(NIC).keep  # 1/9000 == 0


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ('attributes["dra.net/type"].Stringvalue != "veth"', "undefined field 'Stringvalue'"),
        ('attributes["dra.net/mtu"].IntValue == "9000"', "no matching overload for '=='"),
        ('attributes["dra.net/type"].StringValue', "must evaluate to bool"),
        ('attributes["dra.net/type"].StringValue.lowerAscii() == "x"', "'lowerAscii'"),
        ('attributes["dra.net/type"] == "veth"', "no matching overload"),
        ('attributes["dra.net/rdma"].BoolValue || 1', "must be bool"),
        ('attributes["dra.net/type"].StringValue.foo == "x"', "does not support field selection"),
        ('device.attribute["dra.net"].type == "x"', "undefined field 'attribute'"),
        ('interfaces["eth0"] == "x"', "undeclared reference to 'interfaces'"),
        ('attributes["dra.net/type"', "invalid filter expression"),
    ],
)
def test_ill_typed_expressions_fail_at_construction(expr: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        AdminFilter(expr)


def test_checker_accepts_what_the_dra_and_dranet_environments_accept() -> None:
    for expr in (
        'attributes["dra.net/type"].StringValue in ["device", "vf"]',
        'attributes.exists(k, k.startsWith("dra.net/") && attributes[k].BoolValue)',
        'has(attributes.x) ? attributes["x"].IntValue > 2 : true',
        '-attributes["dra.net/mtu"].IntValue < 0 && attributes["a"].IntValue % 2 == 0',
        'attributes["dra.net/ifName"].StringValue.matches("^eth[0-9]+$")',
        'device.attributes["dra.net"].mtu > 1500 && device.driver == "dra.net"',
        'int(device.attributes["dra.net"].numaNode) == 1',
        "'''raw\"''' != r'x' && b\"a\" != b'b' && 1u < 2u && 0x1F == 31 && 1.5e3 > 1.0",
    ):
        AdminFilter(expr)


def test_free_variables_skips_bound_names_and_rejects_unknown_ones() -> None:
    assert free_variables("[1].map(x, x + y)", {"y"}) == {"y"}
    with pytest.raises(CheckError, match="undeclared reference to 'z'"):
        free_variables("z", {"y"})


def test_inventory_applies_a_dranet_filter_offline_and_in_slices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_tree("virtio-vm", tmp_path / "sys")
    flt = 'attributes["dra.net/ifName"].StringValue != "eth0"'
    code = main(["inventory", "--sysfs-root", str(root), "--filter", flt])
    out = capsys.readouterr().out
    assert code == 0
    publish = {ln.split()[0]: ln.split()[-1] for ln in out.splitlines()[2:4]}
    assert publish == {"pci-0000-00-04-0": "filtered", "veth1234": "yes"}
    code = main(["inventory", "--sysfs-root", str(root), "--filter", flt, "--slices", "-o", "json"])
    listed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert listed["kind"] == "List"
    assert [d["name"] for s in listed["items"] for d in s["spec"]["devices"]] == ["veth1234"]


def test_driver_exits_2_on_a_filter_that_does_not_type_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = 'attributes["dra.net/type"].StringVal != "veth"'
    code = main(["driver", "--hostname-override", "n1", "--filter", bad])
    err = capsys.readouterr().err
    assert code == 2
    assert "--filter" in err and "undefined field 'StringVal'" in err


@pytest.mark.parametrize(
    "expr",
    [
        DRANET_DEFAULT,
        'attributes["dra.net/mtu"].StringValue == ""',
        'attributes["dra.net/mtu"].IntValue > 1000 && !attributes["dra.net/mtu"].BoolValue',
        'attributes["dra.net/type"] == attributes["dra.net/type"]',
        '[attributes["dra.net/type"]].size() == 1',
        'attributes.exists(k, attributes[k].StringValue == "veth")',
    ],
)
def test_narrowed_activation_gives_the_same_verdicts_as_the_full_one(expr: str) -> None:
    """The filter hands the engine only the DeviceAttribute fields the expression can read; an
    attribute used whole gets every field. Either way the verdicts are those of the full form."""
    from knd.inventory import cel_engine
    from knd.inventory.filter import dranet_activation

    program = cel_engine.compile(expr)
    f = AdminFilter(expr)
    for dev in (VETH, NIC, BARE):
        try:
            full = program.execute(dranet_activation(dev))
            expected = full is True
        except Exception:
            expected = True  # an evaluation error keeps the device
        assert f(dev).keep == expected, (expr, dev.name)


def test_only_selected_fields_are_converted() -> None:
    assert AdminFilter(DRANET_DEFAULT)._fields == frozenset({"StringValue"})
    whole = AdminFilter('attributes["a"] == attributes["b"]')._fields
    assert "VersionValues" in whole and "IntValue" in whole
