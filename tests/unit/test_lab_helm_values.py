"""knd.lab.helm.lab_values: the chart values that put knd's DaemonSet pod onto the lab render a
valid DaemonSet (values schema, Kubernetes 1.34/1.37 schemas) whose paths, flags and API server
are the lab's; the daemon accepts the flags."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from knd.driver.options import parse as parse_daemon_args
from knd.lab import helm as labhelm
from knd.lab.manifests import render_chart

RUNTIME = {
    "nri_socket": "/lab/runtime/run/2/nri.sock",
    "state": "/lab/runtime/run/2/state",
    "ctr": "/lab/ctr",
    "socket": "/lab/runtime/run/2/containerd.sock",
}


def values() -> dict[str, object]:
    return labhelm.lab_values(
        image_ref="localhost/knd:lab-0123456789ab",
        kubelet_root="/lab/k8s/run/kubelet",
        runtime=RUNTIME,
        sysfs="/lab/state/sys",
        state_path=Path("/lab/state/knd-pod/state.db"),
        apiserver="https://127.0.0.1:40123",
        metrics_port=41000,
        filter_expr='"pcieRoot" in device.attributes["resource.kubernetes.io"]',
        driver_args=("--v=4",),
    )


@pytest.mark.parametrize("version", ["1.34", "1.37"])
def test_lab_values_render_a_valid_daemonset_for_the_lab(version: str) -> None:
    docs = render_chart(values())
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["image"] == "localhost/knd:lab-0123456789ab" and c["imagePullPolicy"] == "Never"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "40123"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert (
        mounts["/lab/runtime/run/2/state/io.containerd.grpc.v1.cri/netns"]["mountPropagation"]
        == "HostToContainer"
    )
    assert mounts["/lab/state/sys"]["readOnly"] is True
    for path in ("/lab/k8s/run/kubelet/plugins", "/lab/runtime/run/2", "/lab/state/knd-pod"):
        assert path in mounts, path
    host = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert all(mounts[m]["name"] in host and host[mounts[m]["name"]] == m for m in mounts)
    argv = [a.replace("$(NODE_NAME)", "knd-lab") for a in c["args"][1:]]
    assert argv[-2:] == ["--sysfs-root=/lab/state/sys", "--v=4"]
    opts = parse_daemon_args([a for a in argv if not a.startswith("--sysfs-root")], {})
    assert opts.nri_socket == "/lab/runtime/run/2/nri.sock"
    assert str(opts.state_path) == "/lab/state/knd-pod/state.db"
    assert opts.filter.startswith('"pcieRoot"')
