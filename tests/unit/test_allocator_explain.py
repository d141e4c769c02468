"""Scheduler emulator and `knd explain`: selectors, counts, matchAttribute, backtracking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from knd.cli.main import main
from knd.lab.allocator import AllocationError, Allocator
from knd.lab.celenv import DeviceSelector, SelectorError, SliceDevice
from knd.lab.gpu_slices import gpu_device_class, gpu_resource_slice

NODE = "gpu-node-1"
ROOTS = [f"pci0000:{b:02x}" for b in (0x07, 0x0D, 0x13, 0x19, 0x86, 0x8C, 0x92, 0x98)]


def nic_slice(roots: list[str], rdma: list[bool]) -> dict[str, Any]:
    devices = []
    for i, (root, has_rdma) in enumerate(zip(roots, rdma, strict=True)):
        bus = int(root[-2:], 16) + 1
        devices.append(
            {
                "name": f"pci-0000-{bus:02x}-00-0",
                "attributes": {
                    "dra.net/ifName": {"string": f"gpu{i}rdma0"},
                    "dra.net/rdma": {"bool": has_rdma},
                    "dra.net/numaNode": {"int": 0 if i < 4 else 1},
                    "resource.kubernetes.io/pcieRoot": {"string": root},
                },
            }
        )
    return {
        "kind": "ResourceSlice",
        "metadata": {"name": f"{NODE}-dra.net-0"},
        "spec": {
            "driver": "dra.net",
            "nodeName": NODE,
            "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


NIC_CLASS = {
    "kind": "DeviceClass",
    "metadata": {"name": "dra.net"},
    "spec": {
        "selectors": [{"cel": {"expression": 'device.driver == "dra.net"'}}],
        "config": [{"opaque": {"driver": "dra.net", "parameters": {"interface": {"mtu": 9000}}}}],
    },
}


def world(rdma: list[bool] | None = None) -> Allocator:
    gpus = [
        (f"0000:{int(r[-2:], 16) + 2:02x}:00.0", r, 0 if i < 4 else 1) for i, r in enumerate(ROOTS)
    ]
    slices = [gpu_resource_slice(NODE, gpus), nic_slice(ROOTS, rdma or [True] * 8)]
    classes = {"dra.net": NIC_CLASS, "gpu.nvidia.com": gpu_device_class()}
    return Allocator(slices, classes, NODE)


def aligned_claim(gpu_selector: str | None = None) -> dict[str, Any]:
    gpu: dict[str, Any] = {"deviceClassName": "gpu.nvidia.com"}
    if gpu_selector:
        gpu["selectors"] = [{"cel": {"expression": gpu_selector}}]
    return {
        "spec": {
            "devices": {
                "requests": [
                    {"name": "gpu", "exactly": gpu},
                    {
                        "name": "nic",
                        "exactly": {
                            "deviceClassName": "dra.net",
                            "selectors": [
                                {"cel": {"expression": 'device.attributes["dra.net"].rdma == true'}}
                            ],
                        },
                    },
                ],
                "constraints": [
                    {
                        "requests": ["gpu", "nic"],
                        "matchAttribute": "resource.kubernetes.io/pcieRoot",
                    }
                ],
                "config": [
                    {
                        "requests": ["nic"],
                        "opaque": {
                            "driver": "dra.net",
                            "parameters": {"interface": {"name": "r0"}},
                        },
                    }
                ],
            }
        }
    }


def test_aligned_claim_gets_gpu_and_nic_on_one_pcie_root() -> None:
    allocation, exp = world().allocate(aligned_claim())
    results = allocation["devices"]["results"]
    assert [(r["request"], r["driver"]) for r in results] == [
        ("gpu", "gpu.nvidia.com"),
        ("nic", "dra.net"),
    ]
    roots = {d.attribute("resource.kubernetes.io/pcieRoot") for _, d in exp.allocated}
    assert len(roots) == 1
    # Class config first (FromClass), then the claim's config (FromClaim).
    assert [c["source"] for c in allocation["devices"]["config"]] == ["FromClass", "FromClaim"]
    assert allocation["nodeSelector"]["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [NODE]


def test_backtracking_finds_the_only_aligned_pair() -> None:
    # Only the NIC on the last root has RDMA: the first GPU must be revisited.
    _, exp = world(rdma=[False] * 7 + [True]).allocate(aligned_claim())
    assert [d.name for _, d in exp.allocated] == ["gpu-7", "pci-0000-99-00-0"]


def test_in_use_devices_are_skipped() -> None:
    alloc = world()
    first, _ = alloc.allocate(aligned_claim())
    used = {(r["driver"], r["pool"], r["device"]) for r in first["devices"]["results"]}
    second, _ = alloc.allocate(aligned_claim(), in_use=used)
    assert {r["device"] for r in second["devices"]["results"]}.isdisjoint(
        {r["device"] for r in first["devices"]["results"]}
    )


def test_constraint_blocker_is_named() -> None:
    # GPU pinned to root 0, and the NIC there has no RDMA.
    claim = aligned_claim('device.attributes["gpu.nvidia.com"].index == 0')
    with pytest.raises(AllocationError) as info:
        world(rdma=[False] + [True] * 7).allocate(claim)
    assert "matchAttribute" in str(info.value)
    assert "resource.kubernetes.io/pcieRoot" in str(info.value)


def test_too_few_candidates_names_the_request() -> None:
    claim = aligned_claim()
    claim["spec"]["devices"]["requests"][1]["exactly"]["count"] = 9
    with pytest.raises(AllocationError, match="request 'nic': 8 matching device"):
        world().allocate(claim)


def test_all_mode_and_first_available() -> None:
    claim: dict[str, Any] = {
        "devices": {
            "requests": [
                {"name": "nics", "exactly": {"deviceClassName": "dra.net", "allocationMode": "All"}}
            ]
        }
    }
    allocation, _ = world().allocate(claim)
    assert len(allocation["devices"]["results"]) == 8
    claim = {
        "devices": {
            "requests": [
                {
                    "name": "n",
                    "firstAvailable": [
                        {"name": "big", "deviceClassName": "dra.net", "count": 20},
                        {"name": "small", "deviceClassName": "dra.net", "count": 2},
                    ],
                }
            ]
        }
    }
    allocation, _ = world().allocate(claim)
    assert [r["request"] for r in allocation["devices"]["results"]] == ["n/small", "n/small"]


def test_distinct_attribute() -> None:
    claim: dict[str, Any] = {
        "devices": {
            "requests": [{"name": "n", "exactly": {"deviceClassName": "dra.net", "count": 2}}],
            "constraints": [{"distinctAttribute": "dra.net/numaNode"}],
        }
    }
    _, exp = world().allocate(claim)
    assert {d.attribute("dra.net/numaNode") for _, d in exp.allocated} == {0, 1}


def test_selector_errors_and_unknown_domains() -> None:
    with pytest.raises(SelectorError, match="cannot compile"):
        DeviceSelector("1 +")
    dev = SliceDevice("dra.net", "p", "d", {"dra.net/x": {"int": 1}})
    with pytest.raises(SelectorError, match="not bool"):
        DeviceSelector('device.attributes["dra.net"].x').matches(dev)
    # A domain that some device has is an empty map for others (as in the API server).
    assert not DeviceSelector('"y" in device.attributes["gpu.nvidia.com"]').matches(
        dev, ["gpu.nvidia.com"]
    )
    # Unqualified attribute names live in the driver's domain.
    dev2 = SliceDevice("gpu.nvidia.com", "p", "g", {"index": {"int": 3}})
    assert DeviceSelector('device.attributes["gpu.nvidia.com"].index == 3').matches(dev2)


def test_only_newest_generation_and_node_slices_count() -> None:
    old = nic_slice(ROOTS, [True] * 8)
    new = nic_slice(ROOTS[:2], [True, True])
    new["spec"]["pool"]["generation"] = 2
    other = nic_slice(ROOTS, [True] * 8)
    other["spec"]["nodeName"] = "elsewhere"
    alloc = Allocator([old, new, other], {"dra.net": NIC_CLASS}, NODE)
    assert len(alloc.devices) == 2


def _write(tmp_path: Path, name: str, docs: list[dict[str, Any]]) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return path


def test_knd_explain_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gpus = [(f"0000:{int(r[-2:], 16) + 2:02x}:00.0", r, 0) for r in ROOTS]
    slices = _write(
        tmp_path,
        "slices.yaml",
        [
            gpu_resource_slice(NODE, gpus),
            nic_slice(ROOTS, [False] * 7 + [True]),
            NIC_CLASS,
            gpu_device_class(),
        ],
    )
    good = aligned_claim()
    good.update(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": "good", "namespace": "ns"},
        }
    )
    bad = aligned_claim('device.attributes["gpu.nvidia.com"].index == 0')
    bad.update(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": "bad", "namespace": "ns"},
        }
    )
    assert (
        main(["explain", str(_write(tmp_path, "good.yaml", [good])), "--slices", str(slices)]) == 0
    )
    out = capsys.readouterr().out
    assert "request nic (class dra.net, ExactCount 1): 1 of 16 devices kept" in out
    assert "allocated nic -> dra.net/gpu-node-1/pci-0000-99-00-0 (pcieRoot pci0000:98)" in out
    assert (
        main(["explain", str(_write(tmp_path, "bad.yaml", [bad])), "--slices", str(slices), "-v"])
        == 1
    )
    out = capsys.readouterr().out
    assert (
        "UNSATISFIABLE: no combination satisfies the constraints; request 'nic': "
        "matchAttribute resource.kubernetes.io/pcieRoot blocks"
    ) in out
    assert 'request selector false: device.attributes["dra.net"].rdma == true' in out
    assert (
        main(["explain", str(tmp_path / "good.yaml"), "--slices", str(slices), "-o", "json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "List"
    (item,) = report["items"]
    assert item["metadata"]["name"] == "good"
    assert item["metadata"]["annotations"]["explain.knd.dev/result"] == "allocatable"
    results = item["status"]["allocation"]["devices"]["results"]
    assert {r["request"]: r["device"] for r in results}["nic"] == "pci-0000-99-00-0"
    assert main(["explain", str(slices)]) == 2
