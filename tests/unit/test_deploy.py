"""The Helm chart, install.yaml, DeviceClasses and examples: rendered with Helm's own engine and
validated against the published Kubernetes 1.34-1.37 schemas (kubernetes-validate, strict)."""

from __future__ import annotations

import subprocess
import sys
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
        "Role",
        "RoleBinding",
        "DeviceClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
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
        "/var/lib/knd",
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
    assert str(opts.state_path) == "/var/lib/knd/state.db"


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
    # in its own namespace: get on its own DaemonSet only (the uninstall check at shutdown)
    (ns_role,) = by_kind(rendered, "Role")
    assert ns_role["metadata"]["namespace"] == "kube-system"
    assert ns_role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["daemonsets"], "resourceNames": ["knd"],
         "verbs": ["get"]}
    ]  # fmt: skip
    (binding,) = by_kind(rendered, "RoleBinding")
    assert binding["roleRef"]["name"] == "knd" and binding["subjects"][0]["name"] == "knd"
    (ds,) = by_kind(rendered, "DaemonSet")
    env = ds["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "KND_DAEMONSET", "value": "kube-system/knd"} in env


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
    assert {d["kind"] for d in docs} == {
        "ServiceAccount",
        "DaemonSet",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    (ds,) = by_kind(docs, "DaemonSet")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--driver-name=nic.example.com" in args and "--filter=" in args
    # without the chart's RBAC the daemon cannot read its DaemonSet: no uninstall cleanup
    env = ds["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "KND_DAEMONSET" not in {e["name"] for e in env}
    import helm_python

    for bad in (
        {"nriPluginIndex": "7"},
        {"driverName": "Bad_Name"},
        {"unknownKey": 1},
        {"args": {"inventoryPollBurst": 0}},
        {"args": {"inventoryMinPollInterval": "2 seconds"}},
        {"args": {"inventoryMaxPollInterval": 0}},
        {"args": {"dbPath": "relative.db"}},
        {"args": {"dbPath": "/var/run/../etc/x.db"}},
        {"args": {"cloudProviderHint": "webhook"}},  # needs webhookURL, as in DraNet's chart
        {"args": {"featureGates": "A=yes"}},
        {"metricsPort": 0},
        {"metricsPath": "healthz"},
        {"validatingAdmissionPolicy": {"create": "yes"}},
        {"updateStrategy": {"type": "Recreate"}},
        {"livenessProbe": {"periodSeconds": 0}},
        {"metricsService": {"create": True, "port": 70000}},
        {"extraArgs": ["not-a-flag"]},
        {"extraEnv": [{"value": "no name"}]},
        {"args": {"deviceShares": 5000}},
        {"args": {"deviceShares": -1}},
        {"args": {"ipamConfigMap": "no-namespace"}},
        {"args": {"ipamConfigMap": "../etc/x"}},
        {"args": {"profileProvider": "dhcp"}},
    ):
        with pytest.raises(helm_python.HelmValuesError):
            render_chart(bad)


def test_probe_strategy_and_metrics_service_knobs() -> None:
    """Defaults: RollingUpdate one node at a time, a /healthz liveness probe, no Service."""
    (ds,) = by_kind(render_chart(), "DaemonSet")
    c = ds["spec"]["template"]["spec"]["containers"][0]
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1},
    }
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 9177}
    assert c["livenessProbe"]["failureThreshold"] == 3
    docs = render_chart(
        {
            "updateStrategy": {"type": "OnDelete"},
            "livenessProbe": {"enabled": False},
            "metricsService": {"create": True, "annotations": {"prometheus.io/scrape": "true"}},
            "metricsPort": 9300,
            "extraArgs": ["--nri-plugin-index=12", "--filter=x == 1"],
            "extraEnv": [{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"}],
        }
    )
    (ds,) = by_kind(docs, "DaemonSet")
    c = ds["spec"]["template"]["spec"]["containers"][0]
    assert ds["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert "livenessProbe" not in c
    assert c["args"][-2:] == ["--nri-plugin-index=12", "--filter=x == 1"]
    opts = parse_daemon_args([a.replace("$(NODE_NAME)", "n") for a in c["args"][1:]], {})
    assert opts.filter == "x == 1" and opts.nri_plugin_index == "12"  # the later flag wins
    assert {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"} in c["env"]
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == ds["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 9177, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert svc["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    for version in K8S_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_dockerfile_pins_its_inputs() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.11.7-slim-bookworm" in text
    assert "iproute2=" in text and "ethtool=" in text
    assert "requirements.runtime.lock" in text
    lock = (REPO / "requirements.runtime.lock").read_text()
    assert "pyroute2==" in lock and "pytest" not in lock and "helm-python-sdk" not in lock
    # It installs what `scripts/image build` installs: the lock less the `kubernetes` extra.
    assert "scripts/image packages" in text and "-r requirements.runtime.lock" not in text
    wheels = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "image"), "packages"],
        check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    names = {w.split("==")[0] for w in wheels}
    assert "pyroute2" in names and "grpcio" in names
    assert "kubernetes==" in lock and "kubernetes" not in names and "urllib3" not in names


# ---- DraNet's chart values ----------------------------------------------------------------------

#: Every key of DraNet's chart values (deployments/helm/dranet/values.yaml), with its commented
#: `args` filled in as a DraNet user would: restated here as data, not read from DraNet.
DRANET_VALUES: dict[str, Any] = {
    "nameOverride": "",
    "fullnameOverride": "",
    "global": {"imageRegistry": "registry.example"},
    "image": {"repository": "registry.example/knd", "tag": "v9", "pullPolicy": "IfNotPresent"},
    "imagePullSecrets": [],
    "rbac": {"create": True},
    "podAnnotations": {"a": "b"},
    "podLabels": {"team": "net"},
    "logVerbosity": 4,
    "metricsPort": None,
    "metricsPath": "/healthz",
    "args": {
        "filter": 'device.attributes["dra.net"].type != "veth"',
        "dbPath": "/var/run/dranet/dranet.db",
        "inventoryMinPollInterval": "2s",
        "inventoryMaxPollInterval": "1m",
        "inventoryPollBurst": 5,
        "moveIBInterfaces": True,
        "cloudProviderHint": "NONE",
        "profileProvider": "none",
        "webhookURL": "",
        "featureGates": "PersistentResourceSliceAttributes=true",
    },
    "kubeletRootDir": "/var/lib/kubelet",
    "extraVolumes": [{"name": "host-config", "hostPath": {"path": "/etc/host-config"}}],
    "extraVolumeMounts": [{"name": "host-config", "mountPath": "/etc/host-config"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "affinity": {},
    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
    "resources": {"requests": {"cpu": "100m", "memory": "50Mi"}, "limits": {}},
    "serviceAccount": {"annotations": {"iam.example/role": "x"}},
}


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (ds,) = by_kind(docs, "DaemonSet")
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_dranet_values_render_a_valid_install(version: str) -> None:
    docs = render_chart(DRANET_VALUES)
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    c = _container(docs)
    args = c["args"]
    for expected in (
        "--v=4",
        "--bind-address=:9177",
        "--state-path=/var/run/dranet/dranet.db",
        "--inventory-min-poll-interval=2s",
        "--inventory-max-poll-interval=1m",
        "--inventory-poll-burst=5",
        "--move-ib-interfaces=true",
        "--cloud-provider-hint=NONE",
        "--profile-provider=none",
        "--webhook-url=",
        "--feature-gates=PersistentResourceSliceAttributes=true",
    ):
        assert expected in args, expected
    argv = [a.replace("$(NODE_NAME)", "node-1") for a in args[1:]]
    opts = parse_daemon_args(argv, {"NODE_NAME": "node-1"})  # the daemon takes DraNet's syntax
    assert (opts.inventory_min_poll_interval, opts.inventory_max_poll_interval) == (2.0, 60.0)
    assert opts.feature_gates.persistent_slice_attributes
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/var/run/dranet", "/etc/host-config"} <= mounts
    assert c["image"] == "registry.example/knd:v9"
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": 9177}
    # Helm merges maps: DraNet's empty `limits` keeps knd's memory limit.
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": "50Mi"},
        "limits": {"memory": "256Mi"},
    }
    (sa,) = by_kind(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"] == {"iam.example/role": "x"}


def test_args_left_out_are_not_passed() -> None:
    """DraNet's rule: a key missing from `args` means the daemon's own default."""
    c = _container(render_chart({"args": None}))
    flags = {a.split("=", 1)[0] for a in c["args"]}
    assert not flags & {"--filter", "--inventory-min-poll-interval", "--move-ib-interfaces"}
    assert "--cloud-provider-hint" not in flags and "--feature-gates" not in flags


def test_knd_only_values_reach_the_daemon_and_rbac_grants_one_configmap() -> None:
    """IPAM, device shares and the metadata endpoint: flags the daemon accepts, and for
    `ipamConfigMap` a Role with get on that one ConfigMap in its namespace, bound to knd."""
    values = {
        "args": {
            "profileProvider": "local",
            "ipamRanges": "rdma=10.9.0.0/24:10.9.0.10-10.9.0.99",
            "ipamConfigMap": "net-ops/knd-ipam",
            "deviceShares": 8,
            "cloudMetadataEndpoint": "http://169.254.169.254",
        }
    }
    docs = render_chart(values)
    args = _container(docs)["args"]
    opts = parse_daemon_args([a.replace("$(NODE_NAME)", "n1") for a in args[1:]], {})
    assert (opts.profile_provider, opts.device_shares) == ("local", 8)
    assert opts.ipam_ranges == "rdma=10.9.0.0/24:10.9.0.10-10.9.0.99"
    assert opts.ipam_configmap == "net-ops/knd-ipam"
    assert opts.cloud_metadata_endpoint == "http://169.254.169.254"
    roles = {r["metadata"]["namespace"]: r for r in by_kind(docs, "Role")}
    assert roles["net-ops"]["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["knd-ipam"],
         "verbs": ["get"]}
    ]  # fmt: skip
    (binding,) = [
        b for b in by_kind(docs, "RoleBinding") if b["metadata"]["namespace"] == "net-ops"
    ]
    assert binding["roleRef"]["name"] == roles["net-ops"]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "knd", "namespace": "kube-system"}
    ]
    for version in K8S_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
    # left out: no flag, no extra Role
    plain = render_chart({})
    assert not {a.split("=", 1)[0] for a in _container(plain)["args"]} & {
        "--ipam-ranges", "--ipam-configmap", "--device-shares", "--cloud-metadata-endpoint"
    }  # fmt: skip
    assert [r["metadata"]["namespace"] for r in by_kind(plain, "Role")] == ["kube-system"]


@pytest.mark.parametrize(
    ("values", "fullname"),
    [
        ({}, "knd"),
        ({"nameOverride": "nic"}, "knd-nic"),
        ({"fullnameOverride": "net-driver"}, "net-driver"),
    ],
)
def test_name_overrides_name_every_object(values: dict[str, Any], fullname: str) -> None:
    docs = render_chart(values)
    named = [d for d in docs if d["kind"] not in ("DeviceClass",)]
    for d in named:
        assert d["metadata"]["name"].startswith(fullname), d["kind"]
    (ds,) = by_kind(docs, "DaemonSet")
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == fullname
    (vap,) = by_kind(docs, "ValidatingAdmissionPolicy")
    (cond,) = vap["spec"]["matchConditions"]
    assert f'"system:serviceaccount:kube-system:{fullname}"' in cond["expression"]
    # The selector never changes with the name (a DaemonSet's selector is immutable).
    assert ds["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "knd"


def test_chart_metadata_notes_readme_and_helmignore() -> None:
    chart = yaml.safe_load((REPO / "deploy/helm/knd/Chart.yaml").read_text())
    assert chart["maintainers"][0]["name"]
    # No placeholder or invented address: an address, when one is added, is a real https URL.
    text = (REPO / "deploy/helm/knd/Chart.yaml").read_text()
    assert ".invalid" not in text and "example." not in text
    for url in [chart.get("home"), *chart.get("sources", [])]:
        assert url is None or url.startswith("https://"), url
    base = REPO / "deploy/helm/knd"
    assert ".git/" in (base / ".helmignore").read_text().split()
    readme = (base / "README.md").read_text()
    values = yaml.safe_load((base / "values.yaml").read_text())
    for key in values:  # every top-level value is documented
        assert f"`{key}" in readme, key
    from knd.lab.manifests import render_chart_texts

    notes = render_chart_texts({"fullnameOverride": "net"})["knd/templates/NOTES.txt"]
    assert "daemonset/net" in notes and "helm uninstall" in notes


def test_device_classes_are_kept_on_uninstall(rendered: list[dict[str, Any]]) -> None:
    for dc in by_kind(rendered, "DeviceClass"):
        assert dc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# ---- an existing DeviceClass (DraNet's) does not break `helm install` ---------------------------


def _kubeconfig(url: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: e, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: c, context: {cluster: e, user: u}}]\ncurrent-context: c\n"
    )


def _device_class(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": meta,
        "spec": {"selectors": [{"cel": {"expression": 'device.driver == "dra.net"'}}]},
    }


@pytest.mark.parametrize(
    ("existing", "rendered_classes"),
    [
        pytest.param([], ["dra.net", "dra.net-rdma"], id="fresh cluster"),
        pytest.param(
            [_device_class("dra.net")], ["dra.net-rdma"], id="DraNet's hand-made dra.net is skipped"
        ),
        pytest.param(
            [
                _device_class(
                    "dra.net",
                    {
                        "meta.helm.sh/release-name": "knd",
                        "meta.helm.sh/release-namespace": "kube-system",
                    },
                )
            ],
            ["dra.net", "dra.net-rdma"],
            id="our own kept class is managed again (upgrade, reinstall)",
        ),
        pytest.param(
            [
                _device_class(
                    "dra.net",
                    {
                        "meta.helm.sh/release-name": "other",
                        "meta.helm.sh/release-namespace": "kube-system",
                    },
                )
            ],
            ["dra.net-rdma"],
            id="another release's class is left alone",
        ),
    ],
)
def test_existing_device_classes_are_looked_up_on_install(
    existing: list[dict[str, Any]], rendered_classes: list[str]
) -> None:
    """Helm renders with `lookup` answered by the API server emulator (the same discovery and
    GET paths kube-apiserver serves); a class the chart would clash with is not rendered, so
    `helm install` cannot fail with "exists and cannot be imported into the current release"."""
    import helm_python
    import kubernetes.client as k8s

    from knd.lab.apiserver import ApiServerEmulator, ObjectStore
    from knd.lab.manifests import CHART_DIR, NAMESPACE, RELEASE

    srv = ApiServerEmulator(ObjectStore(k8s_version="1.34")).start()
    try:
        with k8s.ApiClient(k8s.Configuration(host=srv.url)) as api:
            for obj in existing:
                k8s.ResourceV1Api(api).create_device_class(obj)  # type: ignore[arg-type]
        config = helm_python.Config(kubeconfig_content=_kubeconfig(srv.url), namespace=NAMESPACE)
        chart = helm_python.Chart.load(str(CHART_DIR))
        try:
            out = config.render(chart, None, name=RELEASE, namespace=NAMESPACE, is_install=True)
        finally:
            chart.close()
            config.close()
    finally:
        srv.stop()
    docs = [d for d in yaml.safe_load_all(out["knd/templates/deviceclasses.yaml"]) if d]
    assert [d["metadata"]["name"] for d in docs] == rendered_classes


# ---- the ValidatingAdmissionPolicy: its CEL, evaluated ------------------------------------------


def _policy(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    (vap,) = by_kind(rendered, "ValidatingAdmissionPolicy")
    (binding,) = by_kind(rendered, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    spec = vap["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["resourceslices"]
    assert sorted(rule["operations"]) == ["CREATE", "DELETE", "UPDATE"]
    return spec  # type: ignore[no-any-return]


def _admit(spec: dict[str, Any], request: dict[str, Any], obj: Any, old: Any) -> str | None:
    """None when the request is admitted, else the denial message (matchConditions, then the
    variables in order, then every validation), as the API server evaluates a policy."""
    from knd.inventory.cel_engine import compile as cel

    env: dict[str, Any] = {"request": request, "object": obj, "oldObject": old}
    if not all(cel(c["expression"]).execute(env) for c in spec["matchConditions"]):
        return None
    variables: dict[str, Any] = {}
    for var in spec["variables"]:
        variables[var["name"]] = cel(var["expression"]).execute({**env, "variables": variables})
    env["variables"] = variables
    for v in spec["validations"]:
        if cel(v["expression"]).execute(env) is not True:
            if "messageExpression" in v:
                return str(cel(v["messageExpression"]).execute(env))
            return str(v["message"])
    return None


KND_SA = "system:serviceaccount:kube-system:knd"


def _req(op: str, user: str = KND_SA, node: str | None = "node-a") -> dict[str, Any]:
    extra = {"authentication.kubernetes.io/node-name": [node]} if node else {}
    return {"operation": op, "userInfo": {"username": user, "extra": extra}}


def _slice(node: str | None) -> dict[str, Any]:
    return {"spec": {"nodeName": node} if node else {"perDeviceNodeSelection": True}}


@pytest.mark.parametrize(
    ("request_", "obj", "old", "denied"),
    [
        pytest.param(_req("CREATE"), _slice("node-a"), None, None, id="own slice: create"),
        pytest.param(_req("UPDATE"), _slice("node-a"), _slice("node-a"), None, id="own: update"),
        pytest.param(_req("DELETE"), None, _slice("node-a"), None, id="own slice: delete"),
        pytest.param(_req("CREATE"), _slice("node-b"), None, "node node-b", id="other: create"),
        pytest.param(_req("DELETE"), None, _slice("node-b"), "node node-b", id="other: delete"),
        pytest.param(
            _req("UPDATE"), _slice("node-a"), _slice("node-b"), "node-a", id="take over another's"
        ),
        pytest.param(_req("CREATE"), _slice(None), None, "without spec.nodeName", id="no node"),
        pytest.param(
            _req("CREATE", node=None), _slice("node-a"), None, "no node in its token", id="no claim"
        ),
        pytest.param(
            _req("DELETE", user="system:serviceaccount:kube-system:generic-garbage-collector"),
            None,
            _slice("node-b"),
            None,
            id="other users are not matched",
        ),
    ],
)
def test_admission_policy_confines_each_node_to_its_slices(
    rendered: list[dict[str, Any]],
    request_: dict[str, Any],
    obj: Any,
    old: Any,
    denied: str | None,
) -> None:
    """The policy's CEL, evaluated here with a CEL engine over the request shapes the API server
    builds. That the API server binds the node-name extra and enforces the binding is for the
    real-Kubernetes tests to prove (docs/deploy.md)."""
    message = _admit(_policy(rendered), request_, obj, old)
    if denied is None:
        assert message is None
    else:
        assert message is not None and denied in message, message


@pytest.mark.parametrize("values", [None, DRANET_VALUES], ids=["defaults", "dranet-values"])
def test_helm_lint_strict_is_clean(values: dict[str, Any] | None) -> None:
    """`helm lint --strict`: no warnings or errors (an "icon is recommended" note is info)."""
    import helm_python

    from knd.lab.manifests import CHART_DIR

    report = helm_python.lint(str(CHART_DIR), values, strict=True, kube_version="1.34.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > 1] == []
