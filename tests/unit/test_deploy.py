"""The Helm chart, install.yaml, DeviceClasses and examples: rendered with Helm's own engine and
validated against the published Kubernetes 1.34-1.37 schemas (kubernetes-validate, strict)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from knd.driver.options import parse as parse_daemon_args
from knd.lab.manifests import install_yaml, render_chart

REPO = Path(__file__).resolve().parents[2]
K8S_VERSIONS = ("1.34", "1.35", "1.36", "1.37")


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render_chart()


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_object_matches_the_kubernetes_schema(
    rendered: list[dict[str, Any]], version: str
) -> None:
    assert {d["kind"] for d in rendered} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "DeviceClass",
        "DaemonSet",
    }
    for doc in rendered:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_examples_match_the_kubernetes_schema(version: str) -> None:
    files = sorted((REPO / "examples").glob("*.yaml"))
    assert files
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_really_rejects() -> None:
    bad = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "x"},
        "spec": {"selector": []},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.34", strict=True)


def test_install_yaml_is_the_rendered_chart() -> None:
    assert (REPO / "deploy" / "install.yaml").read_text() == install_yaml(), (
        "deploy/install.yaml is stale: run scripts/render-manifests"
    )


def test_daemonset_is_privileged_host_network_with_the_mounts_it_needs(
    rendered: list[dict[str, Any]],
) -> None:
    (ds,) = by_kind(rendered, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    (c,) = pod["containers"]
    assert c["securityContext"] == {"privileged": True}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for path in (
        "/var/lib/kubelet/plugins",
        "/var/lib/kubelet/plugins_registry",
        "/var/run/nri",
        "/var/run/netns",
        "/dev/infiniband",
        "/sys/fs/bpf",
        "/var/run/knd",
    ):
        assert path in mounts, path
    for path in ("/var/run/netns", "/dev/infiniband", "/sys/fs/bpf"):
        assert mounts[path]["mountPropagation"] == "HostToContainer"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    assert {"operator": "Exists"} in pod["tolerations"]


def test_daemonset_args_are_accepted_by_the_daemon(rendered: list[dict[str, Any]]) -> None:
    (ds,) = by_kind(rendered, "DaemonSet")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "driver"
    argv = [a.replace("$(NODE_NAME)", "node-1") for a in args[1:]]
    opts = parse_daemon_args(argv, {})
    assert opts.node_name == "node-1"
    assert opts.driver_name == "dra.net"
    assert opts.filter == 'device.attributes["dra.net"].type != "veth"'
    assert str(opts.state_path) == "/var/run/knd/knd.db"


def test_rbac_is_least_privilege(rendered: list[dict[str, Any]]) -> None:
    (role,) = by_kind(rendered, "ClusterRole")
    rules = {
        (r["apiGroups"][0], r["resources"][0]): (sorted(r["verbs"]), r.get("resourceNames"))
        for r in role["rules"]
    }
    assert rules == {
        ("", "nodes"): (["get"], None),
        ("", "events"): (["create", "patch", "update"], None),
        ("resource.k8s.io", "resourceslices"): (
            ["create", "delete", "get", "list", "update", "watch"],
            None,
        ),
        ("resource.k8s.io", "resourceclaims"): (["get"], None),
        ("resource.k8s.io", "resourceclaims/status"): (["patch", "update"], None),
        ("resource.k8s.io", "resourceclaims/driver"): (
            ["associated-node:patch", "associated-node:update"],
            ["dra.net"],
        ),
    }
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in role["rules"])


def test_device_classes_select_our_driver(rendered: list[dict[str, Any]]) -> None:
    classes = {d["metadata"]["name"]: d for d in by_kind(rendered, "DeviceClass")}
    assert set(classes) == {"dra.net", "dra.net-rdma"}
    expr = classes["dra.net-rdma"]["spec"]["selectors"][0]["cel"]["expression"]
    assert 'device.driver == "dra.net"' in expr and ".rdma == true" in expr


def test_values_change_the_render_and_are_schema_checked() -> None:
    docs = render_chart(
        {
            "driverName": "nic.example.com",
            "deviceClasses": {"create": False},
            "rbac": {"create": False},
            "args": {"filter": ""},
        }
    )
    assert {d["kind"] for d in docs} == {"ServiceAccount", "DaemonSet"}
    (ds,) = by_kind(docs, "DaemonSet")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--driver-name=nic.example.com" in args and "--filter=" in args
    import helm_python

    for bad in (
        {"nriPluginIndex": "7"},
        {"driverName": "Bad_Name"},
        {"unknownKey": 1},
        {"args": {"inventoryPollBurst": 0}},
    ):
        with pytest.raises(helm_python.HelmValuesError):
            render_chart(bad)


def test_dockerfile_pins_its_inputs() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.11.7-slim-bookworm" in text
    assert "iproute2=" in text and "ethtool=" in text
    assert "requirements.runtime.lock" in text
    lock = (REPO / "requirements.runtime.lock").read_text()
    assert "pyroute2==" in lock and "pytest" not in lock and "helm-python-sdk" not in lock
