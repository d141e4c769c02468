"""A second driver's ResourceSlice: 8 GPUs as NVIDIA's DRA driver publishes them.

Used by the lab node and tests so that GPU+NIC claims with `matchAttribute:
resource.kubernetes.io/pcieRoot` have something to align with. Attribute names and types follow
gpu.nvidia.com (unqualified names in the driver's domain: `type`, `uuid`, `index`,
`productName`, `architecture`, `driverVersion` as a version) plus the standard
`resource.kubernetes.io/pcieRoot` (string) and `pciBusID`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

GPU_DRIVER = "gpu.nvidia.com"


def gpu_device_class() -> dict[str, Any]:
    """The `gpu.nvidia.com` DeviceClass as NVIDIA's chart installs it."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": GPU_DRIVER},
        "spec": {
            "selectors": [
                {
                    "cel": {
                        "expression": f"device.driver == '{GPU_DRIVER}' && "
                        f"device.attributes['{GPU_DRIVER}'].type == 'gpu'"
                    }
                }
            ]
        },
    }


def gpu_resource_slice(
    node: str, gpus: Sequence[tuple[str, str, int]], generation: int = 1
) -> dict[str, Any]:
    """A ResourceSlice with one GPU per (pciBusID, pcieRoot, numaNode) tuple."""
    devices = []
    for index, (bus_id, root, numa) in enumerate(gpus):
        devices.append(
            {
                "name": f"gpu-{index}",
                "attributes": {
                    "type": {"string": "gpu"},
                    "index": {"int": index},
                    "uuid": {"string": f"GPU-{node[:8]}-{index:04d}-lab"},
                    "productName": {"string": "NVIDIA H100 80GB HBM3"},
                    "architecture": {"string": "Hopper"},
                    "driverVersion": {"version": "580.65.6"},
                    "resource.kubernetes.io/pcieRoot": {"string": root},
                    "resource.kubernetes.io/pciBusID": {"string": bus_id},
                    "resource.kubernetes.io/numaNode": {"int": numa},
                },
                "capacity": {"memory": {"value": "80Gi"}},
            }
        )
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-{GPU_DRIVER}"},
        "spec": {
            "driver": GPU_DRIVER,
            "nodeName": node,
            "pool": {"name": node, "generation": generation, "resourceSliceCount": 1},
            "devices": devices,
        },
    }
