"""knd against real Kubernetes: upstream kube-apiserver, controller-manager, scheduler, kubelet.

The lab (`knd lab up`, knd.lab.cluster) runs etcd and the four upstream components built by
`scripts/kubernetes install` from the k8s.io/kubernetes module, a kubelet on the project-local
containerd 2 with CNI, knd as the node daemon with a ServiceAccount token bound to the chart's
RBAC, and a stand-in GPU DRA driver. Every assertion reads the real API server (claims, pods,
slices, managedFields, authorization answers), the real kubelet (its metrics and log), or the
kernel (inside the pod via CRI exec, or the host's links) — never knd's own memory.

Skips (with the reason printed) only when not root or when the runtime or Kubernetes is not
installed; CI installs both. One lab per module (start-up ~30-60 s on a busy 2-core machine).
"""

from __future__ import annotations

import io
import json
import re
import ssl
import urllib.error
import urllib.request
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute, NetNS

from knd.cli.main import main as knd_main
from knd.lab import lab as labmod
from knd.lab.restapi import RestClient, RestError
from tests.e2e.k8s_support import (
    DRA_V1,
    NODE,
    PREFIX,
    ROOT,
    Lab,
    _host_nics,
    _wait,
    clean,
    dra_calls,
    knd_entries,
    kubelet_log,
    kubelet_metrics,
    lab_fixture,
    nic_claim,
    pod,
    sh,
    start,
    uniq,
)

pytestmark = pytest.mark.e2e
lab = lab_fixture()
__all__ = ["clean"]  # fixtures used by name


# -- scenarios --------------------------------------------------------------------------------
def test_lab_status_json_names_kubeconfig_and_version(lab: Lab) -> None:
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = knd_main(["lab", "--state-dir", str(lab.cfg.state_dir), "status", "-o", "json"])
    assert rc == 0
    info = json.loads(buf.getvalue())
    assert info["mode"] == "real"
    assert Path(info["kubeconfig"]).is_file()
    version = RestClient.from_kubeconfig(Path(info["kubeconfig"])).call("GET", "/version")
    assert info["kubernetesVersion"] == version["gitVersion"] or version["gitVersion"].startswith(
        info["kubernetesVersion"]
    )
    node = lab.api.get("Node", NODE)
    assert node is not None
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith(info["kubernetesVersion"])


def test_slices_published_through_the_real_api(lab: Lab) -> None:
    def names(slices: list[dict[str, Any]]) -> set[str]:
        """The published ifNames (a NIC still in a pod, or just back and not yet rescanned,
        has none: the lab may have served another module's pods a moment ago)."""
        return {
            d["attributes"]["dra.net/ifName"]["string"]
            for s in slices
            if s["spec"]["driver"] == "dra.net"
            for d in s["spec"]["devices"]
            if "dra.net/ifName" in d["attributes"]
        }

    def published() -> list[dict[str, Any]] | None:
        got: list[dict[str, Any]] = lab.api.list("ResourceSlice")
        return got if {lab.nic(i) for i in range(8)} <= names(got) else None

    slices = _wait(published, 60, "the 8 lab NICs published with their ifName")
    knd = [s for s in slices if s["spec"]["driver"] == "dra.net"]
    gpu = [s for s in slices if s["spec"]["driver"] == "gpu.nvidia.com"]
    assert all(s["spec"]["nodeName"] == NODE for s in knd + gpu)
    roots = {
        d["attributes"]["resource.kubernetes.io/pcieRoot"]["string"]
        for s in gpu
        for d in s["spec"]["devices"]
    }
    assert len(roots) == 8
    # knd wrote its slice itself, with its ServiceAccount (the chart's RBAC) as field manager
    managers = {m["manager"] for s in knd for m in s["metadata"].get("managedFields") or []}
    assert managers, "no managedFields on knd's slice"


def test_nic_with_addresses_routes_mtu_rename_mac(clean: Lab) -> None:
    lab, c = clean, uniq("nic")
    params = {
        "interface": {
            "name": "eth99",
            "addresses": ["192.0.2.10/24"],
            "mtu": 4321,
            "hardwareAddr": "00:11:22:33:44:55",
        },
        "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}],
    }
    p = start(lab, nic_claim(c, lab.nic(0), params), pod(lab, uniq("p"), {"nic": c}))
    assert "inet 192.0.2.10/24" in sh(lab, p, "ip", "-o", "addr", "show", "dev", "eth99")
    assert sh(lab, p, "cat", "/sys/class/net/eth99/mtu").strip() == "4321"
    assert sh(lab, p, "cat", "/sys/class/net/eth99/address").strip() == "00:11:22:33:44:55"
    assert "198.51.100.0/24 via 192.0.2.1 dev eth99" in sh(lab, p, "ip", "route")
    assert lab.nic(0) not in _host_nics(lab)


def test_claim_status_network_data_and_conditions_from_the_api(clean: Lab) -> None:
    lab, c = clean, uniq("st")
    params = {"interface": {"name": "net1", "addresses": ["192.0.2.11/24"]}}
    start(lab, nic_claim(c, lab.nic(1), params), pod(lab, uniq("p"), {"nic": c}))
    (entry,) = knd_entries(lab, c)
    assert entry["networkData"]["interfaceName"] == "net1"
    assert entry["networkData"]["ips"] == ["192.0.2.11/24"]
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", entry["networkData"]["hardwareAddress"])
    conds = {x["type"]: x for x in entry.get("conditions") or []}
    assert conds["Ready"]["status"] == "True"
    claim = lab.api.get("ResourceClaim", c, "default")
    assert claim is not None
    results = claim["status"]["allocation"]["devices"]["results"]
    assert (entry["pool"], entry["device"]) == (results[0]["pool"], results[0]["device"])
    # written by server-side apply under knd's field manager, to the status subresource
    owners = [
        m
        for m in claim["metadata"]["managedFields"]
        if m.get("manager") == "dra.net" and m.get("subresource") == "status"
    ]
    assert owners and owners[0]["operation"] == "Apply"


def _admin_request(lab: Lab, method: str, path: str, raw: bytes, ctype: str) -> tuple[int, Any]:
    """One request as the lab's admin with `raw` as the body, byte for byte (RestClient would
    re-encode it); (HTTP status, decoded answer)."""
    kcfg = json.loads(Path(lab.state["kubernetes"]["kubeconfig"]).read_text())
    cluster = kcfg["clusters"][0]["cluster"]
    ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
    req = urllib.request.Request(
        cluster["server"] + path,
        data=raw,
        method=method,
        headers={
            "Authorization": f"Bearer {kcfg['users'][0]['user']['token']}",
            "Content-Type": ctype,
            "Accept": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _claim_path(name: str, sub: str = "") -> str:
    return f"/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/{name}" + sub


def _claim_events(lab: Lab, claim: str) -> list[dict[str, Any]]:
    return [
        e
        for e in lab.api.list("Event", "default")
        if e.get("involvedObject", {}).get("kind") == "ResourceClaim"
        and e["involvedObject"].get("name") == claim
    ]


def test_a_claim_stored_as_pretty_json_gets_its_nic_and_an_event_saying_why_no_status(
    clean: Lab,
) -> None:
    """kube-apiserver keeps opaque parameters byte for byte but re-encodes them canonically on
    every patch; a claim created with pretty JSON (kubectl sends canonical JSON) makes the real
    server refuse every later status patch (422 on status.allocation). knd still attaches the
    NIC, does not retry, and says why on the claim."""
    lab, c = clean, uniq("pretty")
    claim = nic_claim(c, lab.nic(4), {"interface": {"name": "net4"}})
    code, _ = _admin_request(
        lab,
        "POST",
        "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims",
        json.dumps(claim, indent=2).encode(),
        "application/json",
    )
    assert code == 201
    p = start(lab, pod(lab, uniq("p"), {"nic": c}))
    assert "net4" in sh(lab, p, "ip", "-o", "link", "show", "dev", "net4")
    (event,) = _wait(
        lambda: [e for e in _claim_events(lab, c) if e["reason"] == "ClaimStatusRefused"],
        60,
        "a ClaimStatusRefused event on the claim",
    )
    assert event["type"] == "Warning"
    assert "status.allocation" in event["message"] and "canonical JSON" in event["message"]
    stored = lab.api.get("ResourceClaim", c, "default") or {}
    assert not (stored.get("status") or {}).get("devices")
    # the same refusal for an admin's merge patch: the server's behaviour, not knd's request
    code, answer = _admin_request(
        lab, "PATCH", _claim_path(c, "/status"), b'{"metadata":{"labels":{"a":"b"}}}',
        "application/merge-patch+json",
    )  # fmt: skip
    assert code == 422 and "status.allocation" in answer["message"]


def test_another_manager_cannot_silently_take_knds_status_fields(clean: Lab) -> None:
    """Server-side apply on the real server: a second field manager that applies a different
    value to a field knd owns gets 409 naming knd's manager; knd's value stays."""
    lab, c = clean, uniq("own")
    start(
        lab,
        nic_claim(c, lab.nic(5), {"interface": {"name": "net5"}}),
        pod(lab, uniq("p"), {"nic": c}),
    )
    (entry,) = knd_entries(lab, c)
    intruder = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": c, "namespace": "default"},
        "status": {
            "devices": [
                {
                    "driver": "dra.net",
                    "pool": entry["pool"],
                    "device": entry["device"],
                    "networkData": {"interfaceName": "evil0"},
                }
            ]
        },
    }
    code, answer = _admin_request(
        lab, "PATCH", _claim_path(c, "/status?fieldManager=intruder"),
        json.dumps(intruder, separators=(",", ":")).encode(), "application/apply-patch+yaml",
    )  # fmt: skip
    assert code == 409, answer
    assert "dra.net" in answer["message"] and "interfaceName" in answer["message"]
    (after,) = knd_entries(lab, c)
    assert after["networkData"]["interfaceName"] == "net5"


def test_a_claim_recreated_under_the_same_name_gets_only_its_own_status(clean: Lab) -> None:
    """Delete a pod and its claim, re-create both under the same names with another config:
    the claim's status (read from the API) is the new one's, with the new claim's uid."""
    lab, c, name = clean, uniq("again"), uniq("p")
    start(
        lab, nic_claim(c, lab.nic(6), {"interface": {"name": "old6"}}), pod(lab, name, {"nic": c})
    )
    assert knd_entries(lab, c)[0]["networkData"]["interfaceName"] == "old6"
    lab.api.delete("Pod", name, "default")
    _wait(lambda: lab.api.get("Pod", name, "default") is None, 120, "pod deleted")
    lab.api.delete("ResourceClaim", c, "default")
    _wait(lambda: lab.api.get("ResourceClaim", c, "default") is None, 60, "claim deleted")
    _wait(lambda: lab.nic(6) in _host_nics(lab), 60, "NIC back on the host")
    created = lab.api.create(nic_claim(c, lab.nic(6), {"interface": {"name": "new6"}}))
    p = start(lab, pod(lab, name, {"nic": c}))
    assert "new6" in sh(lab, p, "ip", "-o", "link", "show", "dev", "new6")
    (entry,) = knd_entries(lab, c)
    assert entry["networkData"]["interfaceName"] == "new6"
    again = lab.api.get("ResourceClaim", c, "default") or {}
    assert again["metadata"]["uid"] == created["metadata"]["uid"]


def _pod_device_health(lab: Lab, name: str) -> dict[str, str]:
    """resourceID → health from the pod's status, as the real kubelet reports it (KEP-4680)."""
    p = lab.api.get("Pod", name, "default") or {}
    out: dict[str, str] = {}
    for cs in (p.get("status") or {}).get("containerStatuses") or []:
        for claim in cs.get("allocatedResourcesStatus") or []:
            for res in claim.get("resources") or []:
                out[res["resourceID"]] = res.get("health", "")
    return out


def _set_fabric_peer(lab: Lab, i: int, up: bool) -> None:
    with NetNS(lab.cfg.fabric) as ns:
        (idx,) = ns.link_lookup(ifname=f"{PREFIX}p{i}")
        ns.link("set", index=idx, state="up" if up else "down")


def test_device_health_of_an_attached_nic_reaches_the_pods_status(clean: Lab) -> None:
    """knd judges an attached NIC by its link inside the pod (the host no longer sees it) and
    streams that to the real kubelet, which puts it in the pod's status: Healthy, Unhealthy
    when the link's far end goes down, Healthy again when it comes back."""
    lab, c, name = clean, uniq("hl"), uniq("p")
    start(
        lab, nic_claim(c, lab.nic(7), {"interface": {"name": "net7"}}), pod(lab, name, {"nic": c})
    )
    first = _wait(lambda: _pod_device_health(lab, name) or None, 90, "allocatedResourcesStatus")
    (rid,) = first
    assert rid.startswith("dra.net/"), first
    _wait(
        lambda: _pod_device_health(lab, name).get(rid) == "Healthy",
        90,
        "Healthy in the pod's status, judged inside the pod",
    )
    try:
        _set_fabric_peer(lab, 7, up=False)
        _wait(
            lambda: _pod_device_health(lab, name).get(rid) == "Unhealthy",
            90,
            "Unhealthy in the pod's status after the link's far end went down",
        )
    finally:
        _set_fabric_peer(lab, 7, up=True)
    _wait(
        lambda: _pod_device_health(lab, name).get(rid) == "Healthy",
        90,
        "Healthy again once the far end is back",
    )


def test_resource_claim_template_turned_into_a_claim_by_the_controller(clean: Lab) -> None:
    lab, t = clean, uniq("tmpl")
    template = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": t, "namespace": "default"},
        "spec": {
            "spec": nic_claim("x", lab.nic(2), {"interface": {"addresses": ["192.0.2.12/24"]}})[
                "spec"
            ]
        },
    }
    name = uniq("p")
    p = start(lab, template, pod(lab, name, {"nic": t}, template=True))
    (status,) = p["status"]["resourceClaimStatuses"]
    claim = lab.api.get("ResourceClaim", status["resourceClaimName"], "default")
    assert claim is not None
    assert claim["metadata"]["ownerReferences"][0]["name"] == name
    assert claim["metadata"]["annotations"]["resource.kubernetes.io/pod-claim-name"] == "nic"
    assert "inet 192.0.2.12/24" in sh(lab, p, "ip", "-o", "addr", "show", "dev", lab.nic(2))
    lab.api.delete("Pod", name, "default")
    _wait(
        lambda: lab.api.get("ResourceClaim", status["resourceClaimName"], "default") is None,
        120,
        "the template's claim deleted with its pod",
    )


def test_nic_back_with_host_state_after_pod_delete(clean: Lab) -> None:
    lab, c = clean, uniq("back")
    nic = lab.nic(3)
    with IPRoute() as ipr:
        (idx,) = ipr.link_lookup(ifname=nic)
        ipr.link("set", index=idx, mtu=1400)
        before = ipr.get_links(idx)[0]
    mac = before.get_attr("IFLA_ADDRESS")
    params = {"interface": {"name": "net9", "mtu": 3000, "addresses": ["192.0.2.13/24"]}}
    name = uniq("p")
    start(lab, nic_claim(c, nic, params), pod(lab, name, {"nic": c}))
    assert nic not in _host_nics(lab)
    lab.api.delete("Pod", name, "default")
    _wait(lambda: lab.api.get("Pod", name, "default") is None, 120, "pod deleted")
    _wait(lambda: nic in _host_nics(lab), 60, f"{nic} back on the host")
    with IPRoute() as ipr:
        (idx,) = ipr.link_lookup(ifname=nic)
        after = ipr.get_links(idx)[0]
    assert after.get_attr("IFLA_MTU") == 1400
    assert after.get_attr("IFLA_ADDRESS") == mac
    # the kubelet un-prepared the claim through knd (its own count of the gRPC call)
    assert sum(dra_calls(kubelet_metrics(lab), "dra.net", "NodeUnprepareResources").values()) >= 1


def test_registration_and_dra_service_version_chosen_by_the_kubelet(clean: Lab) -> None:
    lab, c = clean, uniq("ver")
    start(lab, nic_claim(c, lab.nic(7), {}), pod(lab, uniq("p"), {"nic": c}))
    registered = [
        ln
        for ln in kubelet_log(lab).splitlines()
        if "Registered DRA plugin" in ln and '"dra.net"' in ln
    ]
    assert registered, "the kubelet's plugin watcher never registered dra.net"
    assert 'chosenService="v1.DRAPlugin"' in registered[-1]
    calls = dra_calls(kubelet_metrics(lab), "dra.net", "NodePrepareResources")
    assert calls, "the kubelet never called knd's NodePrepareResources"
    assert all(m.startswith(DRA_V1) for m in calls), calls


def test_rbac_is_enough_and_no_more(clean: Lab) -> None:
    lab, c = clean, uniq("rbac")
    start(lab, nic_claim(c, lab.nic(4), {}), pod(lab, uniq("p"), {"nic": c}))
    # enough: knd's token published the slice (above) and the kubelet prepared the claim
    knd = lab.knd_api
    with pytest.raises(RestError) as denied:
        knd.list("Pod")
    assert denied.value.code == 403
    with pytest.raises(RestError) as denied:
        knd.create(nic_claim(uniq("forged"), lab.nic(5), None))
    assert denied.value.code == 403
    claim = lab.api.get("ResourceClaim", c, "default")
    assert claim is not None
    result = claim["status"]["allocation"]["devices"]["results"][0]
    forged: dict[str, Any] = {
        "driver": "gpu.nvidia.com",
        "pool": result["pool"],
        "device": result["device"],
        "conditions": [],
    }
    patch = {"status": {"devices": [*(claim["status"].get("devices") or []), forged]}}
    with pytest.raises(RestError) as denied:
        knd.merge_patch("ResourceClaim", c, "default", patch, sub="status")
    assert denied.value.code in (403, 422)
    assert "resourceclaims/driver" in denied.value.message


def test_admission_policy_confines_knd_to_its_own_nodes_slices(lab: Lab) -> None:
    """The chart's ValidatingAdmissionPolicy, enforced by the real kube-apiserver: knd's own
    token (bound to this node) publishes this node's slices (above) but cannot create one
    for another node, while the admin can."""
    other = uniq("other-node")
    forged: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": uniq("forged-slice")},
        "spec": {
            "driver": "dra.net",
            "nodeName": other,
            "pool": {"name": other, "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": "eth9"}],
        },
    }
    with pytest.raises(RestError) as denied:
        lab.knd_api.create(forged)
    assert denied.value.code in (403, 422), denied.value
    assert f"may only write ResourceSlices of its own node, not node {other}" in (
        denied.value.message
    )
    # The policy matches knd's service account only: the same object from the admin passes.
    created = lab.api.create(forged)
    assert created["spec"]["nodeName"] == other
    assert lab.api.delete("ResourceSlice", forged["metadata"]["name"])


def test_gpu_nic_aligned_example_on_the_real_scheduler(clean: Lab) -> None:
    lab = clean
    example = ROOT / "examples" / "lab" / "gpu-nic-aligned.yaml"
    base = ["lab", "--state-dir", str(lab.cfg.state_dir)]
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = knd_main([*base, "apply", str(example), "--timeout", "120"])
    assert rc == 0, buf.getvalue()
    p = lab.api.get("Pod", "trainer-0", "default")
    assert p is not None
    (st,) = p["status"]["resourceClaimStatuses"]
    claim = lab.api.get("ResourceClaim", st["resourceClaimName"], "default")
    assert claim is not None
    results = {r["request"]: r for r in claim["status"]["allocation"]["devices"]["results"]}
    attrs = {
        (s["spec"]["driver"], d["name"]): d["attributes"]
        for s in lab.api.list("ResourceSlice")
        for d in s["spec"]["devices"]
    }

    def root(r: dict[str, Any]) -> str:
        a = attrs[(r["driver"], r["device"])]
        return str(a["resource.kubernetes.io/pcieRoot"]["string"])

    assert root(results["gpu"]) == root(results["nic"])
    assert "mtu 4000" in sh(lab, p, "ip", "link", "show", "net1")
    with redirect_stdout(io.StringIO()):
        knd_main([*base, "delete", str(example)])


def _claim(name: str, requests: list[Any], constraints: list[Any] | None = None) -> str:
    devices: dict[str, Any] = {"requests": requests}
    if constraints:
        devices["constraints"] = constraints
    return json.dumps(
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name},
            "spec": {"devices": devices},
        }
    )


def _nic(name: str, cel: str | None = None, **extra: Any) -> dict[str, Any]:
    exactly: dict[str, Any] = {"deviceClassName": "dra.net", **extra}
    if cel:
        exactly["selectors"] = [{"cel": {"expression": cel}}]
    return {"name": name, "exactly": exactly}


NUMA = 'device.attributes["resource.kubernetes.io"].numaNode == '
GPU0 = {
    "name": "gpu",
    "exactly": {
        "deviceClassName": "gpu.nvidia.com",
        "selectors": [{"cel": {"expression": NUMA + "0"}}],
    },
}
#: Claims beyond the examples, mostly ones the lab node cannot satisfy (JSON is YAML).
CROSS_CHECK = {
    "nic-on-numa-7": _claim("numa7", [_nic("nic", NUMA + "7")]),
    "nine-nics": _claim("nine", [_nic("nics", None, count=9)]),
    "no-such-interface": _claim(
        "noif", [_nic("nic", 'device.attributes["dra.net"].ifName == "x"')]
    ),
    "gpu-numa0-nic-numa1-one-root": _claim(
        "split",
        [GPU0, _nic("nic", NUMA + "1")],
        [{"matchAttribute": "resource.kubernetes.io/pcieRoot"}],
    ),
    "gpu-numa0-nic-same-root": _claim(
        "joined", [GPU0, _nic("nic")], [{"matchAttribute": "resource.kubernetes.io/pcieRoot"}]
    ),
    "all-nics": _claim("all", [_nic("nics", None, allocationMode="All")]),
    "first-available-falls-back": _claim(
        "fallback",
        [
            {
                "name": "nic",
                "firstAvailable": [
                    {
                        "name": "far",
                        "deviceClassName": "dra.net",
                        "selectors": [{"cel": {"expression": NUMA + "7"}}],
                    },
                    {"name": "any", "deviceClassName": "dra.net"},
                ],
            }
        ],
    ),
}
SCENARIOS = {
    **{f"example-{p.stem}": p for p in sorted((ROOT / "examples" / "lab").glob("*.yaml"))},
    **CROSS_CHECK,
}


def _real_scheduler_allocates(lab: Lab, docs: list[dict[str, Any]]) -> tuple[bool, str]:
    """Create the scenario's objects (a pod for its claims when it has none) and wait for the
    real scheduler's answer: the pod bound with every claim allocated, or the pod `Unschedulable`
    because the DRA plugin `cannot allocate all claims`. Returns (allocated, what was seen)."""
    pods = [d for d in docs if d["kind"] == "Pod"]
    if not pods:
        claims = {
            f"c{i}": d["metadata"]["name"]
            for i, d in enumerate(docs)
            if d["kind"] == "ResourceClaim"
        }
        assert claims, "scenario without a pod or a claim"
        docs = [*docs, pod(lab, uniq("xc"), claims)]
    with redirect_stdout(io.StringIO()):
        (created,) = labmod.apply(lab.api, docs, cfg=lab.cfg)
    name = created["metadata"]["name"]

    def answer() -> tuple[bool, str] | None:
        p = lab.api.get("Pod", name, "default") or {}
        if (p.get("spec") or {}).get("nodeName"):
            return True, "bound to " + p["spec"]["nodeName"]
        for cond in (p.get("status") or {}).get("conditions") or []:
            msg = cond.get("message") or ""
            if cond["type"] == "PodScheduled" and "cannot allocate all claims" in msg:
                return False, msg
        return None

    allocated, seen = _wait(answer, 120, f"the real scheduler's answer for pod {name}")
    if allocated:  # bound: every claim of the pod carries the scheduler's allocation
        p = lab.api.get("Pod", name, "default") or {}
        statuses = (p.get("status") or {}).get("resourceClaimStatuses") or []
        names = [s["resourceClaimName"] for s in statuses] + [
            r["resourceClaimName"]
            for r in p["spec"]["resourceClaims"]
            if r.get("resourceClaimName")
        ]
        for claim_name in names:
            claim = lab.api.get("ResourceClaim", claim_name, "default") or {}
            assert (claim.get("status") or {}).get("allocation"), claim
    return allocated, seen


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_explain_verdict_equals_the_real_scheduler(
    clean: Lab, scenario: str, tmp_path: Path
) -> None:
    """`knd explain --lab` (knd's allocator) and kube-scheduler's DRA plugin agree on every
    lab scenario: the examples and claims the lab node cannot satisfy."""
    lab = clean
    source = SCENARIOS[scenario]
    if isinstance(source, Path):
        path = source
    else:
        path = tmp_path / f"{scenario}.yaml"
        path.write_text(str(source))
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = knd_main(["explain", str(path), "--lab", "--lab-state-dir", str(lab.cfg.state_dir)])
    assert rc in (0, 1), buf.getvalue()
    explained = rc == 0
    allocated, seen = _real_scheduler_allocates(lab, labmod.load_manifests([path]))
    assert explained == allocated, (
        f"knd explain says {'allocatable' if explained else 'unsatisfiable'}, the real "
        f"scheduler: {seen}\n{buf.getvalue()}"
    )
