"""The lab's pieces that need no root: the lab node's sysfs fixture as discovery sees it, the
lab controller (scheduler + kubelet order) against the API server emulator with a fake CRI and
kubelet, manifest loading, and bench/png.py."""

from __future__ import annotations

import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from knd.host.sysfs import SysfsRoot
from knd.inventory.discover import discover
from knd.inventory.filter import AdminFilter
from knd.lab import lab as labmod
from knd.lab.apiserver import ApiServerEmulator
from knd.lab.controller import ANN_SANDBOX, Controller, RunningPod
from knd.lab.restapi import RestClient
from knd.lab.serve import seed
from knd.lab.sysfs_fixture import GPU_NODE_ROOTS, build_lab_node
from tests.fixtures import pciids as test_ids

pytestmark = pytest.mark.unit
NAMES = [f"klab{i}" for i in range(8)]


def test_lab_node_publishes_eight_aligned_nics_through_the_lab_filter(tmp_path: Path) -> None:
    build_lab_node(tmp_path, NAMES)
    found = discover(SysfsRoot(tmp_path), test_ids.database(), None)
    kept, dropped, _ = AdminFilter(labmod.LAB_FILTER, "dra.net").apply(found.devices)
    assert not dropped
    by_if = {d.attributes["dra.net/ifName"]: d.attributes for d in kept}
    assert sorted(by_if) == NAMES
    for i, (root, _bus, numa) in enumerate(GPU_NODE_ROOTS):
        assert by_if[NAMES[i]]["resource.kubernetes.io/pcieRoot"] == root
        assert by_if[NAMES[i]]["resource.kubernetes.io/numaNode"] == numa


def test_lab_node_wants_eight_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="8 NICs"):
        build_lab_node(tmp_path, NAMES[:3])


def test_manifests_are_applied_in_dependency_order(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(
        "kind: Pod\nmetadata: {name: p}\n---\nkind: ResourceClaim\nmetadata: {name: c}\n"
        "---\nkind: DeviceClass\nmetadata: {name: d}\n---\nkind: ResourceClaimTemplate\n"
        "metadata: {name: t}\n"
    )
    kinds = [d["kind"] for d in labmod.load_manifests([f])]
    assert kinds == ["DeviceClass", "ResourceClaimTemplate", "ResourceClaim", "Pod"]
    f.write_text("kind: Deployment\nmetadata: {name: x}\n")
    with pytest.raises(labmod.LabError, match="Deployment"):
        labmod.load_manifests([f])


# -- controller ---------------------------------------------------------------------------
@dataclass
class FakeCri:
    calls: list[str] = field(default_factory=list)
    fail_sandbox: str = ""

    def run_pod(self, spec: Any) -> str:
        if self.fail_sandbox:
            import grpc

            class Err(grpc.RpcError):  # type: ignore[misc]  # grpc ships no type hints
                def details(self) -> str:
                    return "attach failed"

            self.calls.append("RunPodSandbox!")
            raise Err()
        self.calls.append(f"RunPodSandbox {spec.name}")
        return f"sb-{spec.name}"

    def create_container(self, sid: str, spec: Any, name: str, image: str, cmd: list[str]) -> str:
        self.calls.append(f"CreateContainer {name}")
        return f"c-{name}"

    def start_container(self, cid: str) -> None:
        self.calls.append(f"StartContainer {cid}")

    def stop_container(self, cid: str) -> None:
        self.calls.append(f"StopContainer {cid}")

    def remove_container(self, cid: str) -> None:
        self.calls.append(f"RemoveContainer {cid}")

    def stop_pod(self, sid: str) -> None:
        self.calls.append(f"StopPodSandbox {sid}")

    def remove_pod(self, sid: str) -> None:
        self.calls.append(f"RemovePodSandbox {sid}")

    def pod_status(self, sid: str) -> Any:
        return SimpleNamespace(status=SimpleNamespace(network=SimpleNamespace(ip="10.199.0.9")))


@dataclass
class FakeKubelet:
    log: list[str]
    plugins: dict[str, Any] = field(default_factory=lambda: {"dra.net": object()})

    def _resp(self, claims: Any) -> Any:
        return SimpleNamespace(claims={uid: SimpleNamespace(error="") for _, uid, _ in claims})

    def prepare(self, driver: str, claims: Any) -> Any:
        self.log.append(f"NodePrepareResources {driver} {[c[2] for c in claims]}")
        return self._resp(claims)

    def unprepare(self, driver: str, claims: Any, timeout: float = 45) -> Any:
        self.log.append(f"NodeUnprepareResources {driver}")
        return self._resp(claims)


def _nic_slice() -> dict[str, Any]:
    devices = [
        {
            "name": f"pci-{i}",
            "attributes": {"resource.kubernetes.io/pcieRoot": {"string": root}},
        }
        for i, (root, _b, _n) in enumerate(GPU_NODE_ROOTS)
    ]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": "nics"},
        "spec": {
            "driver": "dra.net",
            "nodeName": "knd-lab",
            "pool": {"name": "knd-lab", "generation": 1, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


@pytest.fixture
def env() -> Any:
    api = ApiServerEmulator().start()
    seed(api, "knd-lab")
    rest = RestClient(api.url)
    rest.create(_nic_slice())
    cri = FakeCri()
    ctl = Controller(rest, cri, FakeKubelet(cri.calls), "knd-lab", "busybox")  # type: ignore[arg-type]
    try:
        yield SimpleNamespace(api=api, rest=rest, cri=cri, ctl=ctl)
    finally:
        api.stop()


def _template_pod(rest: RestClient) -> dict[str, Any]:
    rest.create(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaimTemplate",
            "metadata": {"name": "aligned", "namespace": "default"},
            "spec": {
                "spec": {
                    "devices": {
                        "requests": [
                            {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}},
                            {"name": "nic", "exactly": {"deviceClassName": "dra.net"}},
                        ],
                        "constraints": [{"matchAttribute": "resource.kubernetes.io/pcieRoot"}],
                    }
                }
            },
        }
    )
    return rest.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p1", "namespace": "default"},
            "spec": {
                "containers": [{"name": "main", "image": "busybox"}],
                "resourceClaims": [{"name": "devs", "resourceClaimTemplateName": "aligned"}],
            },
        }
    )


def test_controller_runs_a_template_pod_in_kubelet_order_and_releases_it(env: Any) -> None:
    pod = _template_pod(env.rest)
    env.ctl.start_pod(pod)
    got = env.rest.get("Pod", "p1", "default")
    assert got["status"]["phase"] == "Running"
    assert got["metadata"]["annotations"][ANN_SANDBOX] == "sb-p1"
    (status,) = got["status"]["resourceClaimStatuses"]
    claim = env.rest.get("ResourceClaim", status["resourceClaimName"], "default")
    assert claim["metadata"]["name"].startswith("p1-devs-")
    assert claim["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    assert claim["status"]["reservedFor"] == [
        {"resource": "pods", "name": "p1", "uid": pod["metadata"]["uid"]}
    ]
    results = {
        r["request"]: r["device"] for r in claim["status"]["allocation"]["devices"]["results"]
    }
    assert results == {"gpu": "gpu-0", "nic": "pci-0"}  # both on pci0000:0d
    # The GPU driver has no kubelet plugin on the lab node: only dra.net prepares.
    assert env.cri.calls == [
        f"NodePrepareResources dra.net {[claim['metadata']['name']]}",
        "RunPodSandbox p1",
        "CreateContainer main",
        "StartContainer c-main",
    ]
    env.cri.calls.clear()
    env.rest.delete("Pod", "p1", "default")
    env.ctl.stop_pod(env.ctl.running[pod["metadata"]["uid"]])
    assert env.cri.calls == [
        "StopContainer c-main",
        "StopPodSandbox sb-p1",
        "NodeUnprepareResources dra.net",
        "RemoveContainer c-main",
        "RemovePodSandbox sb-p1",
    ]
    assert env.rest.get("ResourceClaim", claim["metadata"]["name"], "default") is None
    assert env.ctl.running == {}


def test_unsatisfiable_claim_leaves_the_pod_pending_with_the_blocker(env: Any) -> None:
    pods = []
    for i in range(9):  # 8 roots: the 9th aligned pod cannot be placed
        if i == 0:
            pods.append(_template_pod(env.rest))
            continue
        pods.append(
            env.rest.create(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": f"p{i + 1}", "namespace": "default"},
                    "spec": {
                        "containers": [{"name": "main", "image": "busybox"}],
                        "resourceClaims": [
                            {"name": "devs", "resourceClaimTemplateName": "aligned"}
                        ],
                    },
                }
            )
        )
    for p in pods:
        env.ctl.start_pod(p)
    last = env.rest.get("Pod", "p9", "default")
    assert last["status"]["phase"] == "Pending"
    cond = last["status"]["conditions"][0]
    assert cond["type"] == "PodScheduled" and cond["reason"] == "Unschedulable"
    assert "request 'gpu'" in cond["message"] or "request 'nic'" in cond["message"]


def test_sandbox_failure_is_reported_and_the_prepared_claim_is_released(env: Any) -> None:
    pod = _template_pod(env.rest)
    env.cri.fail_sandbox = "yes"
    env.ctl.start_pod(pod)
    got = env.rest.get("Pod", "p1", "default")
    assert got["status"]["phase"] == "Pending"
    assert got["status"]["conditions"][0]["reason"] == "FailedCreatePodSandBox"
    events = env.rest.list("Event", "default")
    assert [e["reason"] for e in events] == ["FailedCreatePodSandBox"]
    assert "attach failed" in events[0]["message"]
    rp: RunningPod = env.ctl.running[pod["metadata"]["uid"]]
    assert rp.sandbox == ""
    env.ctl.stop_pod(rp)
    assert "NodeUnprepareResources dra.net" in env.cri.calls
    assert env.rest.list("ResourceClaim") == []


def test_png_writer_makes_a_valid_rgb_png(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from png import Canvas

    c = Canvas(10, 4)
    c.rect(0, 0, 1, 1, (255, 0, 0))
    c.save(tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (10, 4)
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    raw = zlib.decompress(data[idat + 4 : idat + 4 + length])
    assert len(raw) == 4 * (1 + 30) and raw[1:4] == b"\xff\x00\x00"
