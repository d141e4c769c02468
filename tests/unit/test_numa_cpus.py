"""`numa.alignCpus`: the config field, the sysfs reader, the placement recorded at prepare and
the narrowing rules applied at CreateContainer (only narrow, never fight a pinned cpuset, never
an empty cpuset)."""

from __future__ import annotations

from pathlib import Path

import pytest

from knd.api.check import finalize
from knd.api.config import decode
from knd.api.errors import ConfigError
from knd.cli.main import main
from knd.driver.errors import ClaimError
from knd.driver.netns_plans import DeviceLocation, numa_placement
from knd.driver.numa_cpus import NoOverlapError, narrow
from knd.host.numa import device_numa_node, format_cpulist, parse_cpulist
from knd.host.sysfs import SysfsRoot
from knd.netns.errors import PlanError
from knd.netns.plan import AttachPlan, CpuPlacement, HostSide, PodSide

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lab" / "nic-numa-cpus.yaml"


def test_config_field_is_knd_only_and_validated() -> None:
    cfg = finalize(decode({"numa": {"alignCpus": True, "onNoOverlap": "keep"}}))
    assert cfg.numa is not None and cfg.numa.align_cpus and cfg.numa.on_no_overlap == "keep"
    with pytest.raises(ConfigError, match=r"numa\.onNoOverlap"):
        finalize(decode({"numa": {"alignCpus": True, "onNoOverlap": "widen"}}))
    with pytest.raises(ConfigError, match=r"numa\.cpus.*unknown field"):
        decode({"numa": {"cpus": "0-3"}})
    with pytest.raises(ConfigError, match=r"numa\.alignCpus.*boolean"):
        decode({"numa": {"alignCpus": "yes"}})


def test_example_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", str(EXAMPLE)]) == 0, capsys.readouterr()


def test_cpulist_parse_and_format() -> None:
    assert parse_cpulist("0-3,8,10-11\n") == (0, 1, 2, 3, 8, 10, 11)
    assert parse_cpulist("") == ()
    for bad in ("3-1", "a", "0-", "-1", "0,,1", "99999"):
        assert parse_cpulist(bad) is None, bad
    assert format_cpulist({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


def _topology(root: Path, numa_node: str) -> DeviceLocation:
    dev = root / "bus" / "pci" / "devices" / "0000:8a:00.0"
    dev.mkdir(parents=True)
    (dev / "numa_node").write_text(numa_node + "\n")
    for n, cpus in ((0, "0-3"), (1, "4-7"), (2, "")):
        d = root / "devices" / "system" / "node" / f"node{n}"
        d.mkdir(parents=True)
        (d / "cpulist").write_text(cpus + "\n")
    (root / "devices" / "system" / "cpu").mkdir(parents=True)
    (root / "devices" / "system" / "cpu" / "online").write_text("0-7\n")
    return DeviceLocation("pci-0000-8a-00-0", "ens1", None, "0000:8a:00.0")


def test_placement_from_an_injected_sysfs(tmp_path: Path) -> None:
    loc = _topology(tmp_path, "1")
    assert numa_placement(SysfsRoot(tmp_path), loc, "error") == CpuPlacement(
        nodes=(1,), cpus=(4, 5, 6, 7), online_cpus=tuple(range(8)), on_no_overlap="error"
    )
    # No NUMA affinity (-1): nothing to align, prepare goes on.
    (tmp_path / "bus" / "pci" / "devices" / "0000:8a:00.0" / "numa_node").write_text("-1\n")
    assert numa_placement(SysfsRoot(tmp_path), loc, "error") is None
    # Hostile: an oversized numa_node file is not read.
    (tmp_path / "bus" / "pci" / "devices" / "0000:8a:00.0" / "numa_node").write_text("1" * 9000)
    assert device_numa_node(SysfsRoot(tmp_path), "bus", "pci", "devices", "0000:8a:00.0") is None
    # A node without CPUs is a prepare error, not an empty cpuset later.
    (tmp_path / "bus" / "pci" / "devices" / "0000:8a:00.0" / "numa_node").write_text("2\n")
    with pytest.raises(ClaimError, match="NUMA node 2 has no online CPUs"):
        numa_placement(SysfsRoot(tmp_path), loc, "error")


def test_placement_survives_the_plan_codec_and_old_plans_decode() -> None:
    host = HostSide(name="ens1", ifindex=3, mac="02:00:00:00:00:01", mtu=1500, up=True)
    placement = CpuPlacement((1,), (4, 5), (0, 1, 2, 3, 4, 5))
    plan = AttachPlan("u", "d", host, PodSide(name="net1"), placement=placement)
    assert AttachPlan.from_json(plan.to_json()) == plan
    old = plan.to_json().replace(',"placement":' + placement_json(placement), "")
    assert "placement" not in old
    assert AttachPlan.from_json(old).placement is None
    bad = plan.to_json().replace('"on_no_overlap":"error"', '"on_no_overlap":"widen"')
    with pytest.raises(PlanError, match="on_no_overlap"):
        AttachPlan.from_json(bad)


def placement_json(p: CpuPlacement) -> str:
    return (
        f'{{"cpus":[{",".join(map(str, p.cpus))}],"nodes":[{",".join(map(str, p.nodes))}],'
        f'"on_no_overlap":"{p.on_no_overlap}",'
        f'"online_cpus":[{",".join(map(str, p.online_cpus))}]}}'
    )


ONLINE = tuple(range(8))
NODE1 = CpuPlacement((1,), (4, 5, 6, 7), ONLINE)


def test_unpinned_containers_are_narrowed() -> None:
    got = narrow("", "", [NODE1])
    assert (got.cpus, got.mems) == ("4-7", "1")
    got = narrow("0-7", "0-1", [NODE1])  # every online CPU = CPU manager policy none
    assert (got.cpus, got.mems) == ("4-7", "1")
    # Two NICs on two nodes: the union of their CPUs (still within what was given).
    node0 = CpuPlacement((0,), (0, 1, 2, 3), ONLINE)
    assert narrow("", "", [NODE1, node0]).cpus == "0-7"
    # Memory nodes outside the container's mems are not added.
    got = narrow("", "0", [NODE1])
    assert got.cpus == "4-7" and got.mems is None


def test_a_kubelet_pinned_cpuset_is_never_touched() -> None:
    for pinned in ("2-3", "4", "0-6"):
        got = narrow(pinned, "0", [NODE1])
        assert (got.cpus, got.mems) == (None, None), pinned
        assert "CPU manager" in got.reason


def test_no_overlap_errors_or_keeps_never_empties() -> None:
    offline = CpuPlacement((1,), (9,), ONLINE)
    with pytest.raises(NoOverlapError, match=r"NUMA node\(s\) 1 \(9\).*\(0-7\) do not overlap"):
        narrow("", "", [offline])
    keep = CpuPlacement((1,), (9,), ONLINE, on_no_overlap="keep")
    got = narrow("", "", [keep])
    assert (got.cpus, got.mems) == (None, None) and "keep" in got.reason
    assert narrow("", "", []).cpus is None
    assert narrow("garbage", "", [NODE1]).cpus is None
