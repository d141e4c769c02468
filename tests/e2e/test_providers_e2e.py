"""Providers end to end with the real daemon and containerd (DraNet's python-webhook bats test,
and NIC sharing): `knd driver` as a subprocess against the API server and kubelet emulators.

1. A provider webhook with both capabilities (`--cloud-provider-hint=webhook
   --profile-provider=webhook`): the published slice carries its attribute, and a pod whose
   claim names a profile gets the profile's address and the webhook's baseline MTU; unprepare
   releases the profile.
2. Two pods share one NIC through macvlan children with node-local IPAM (`subInterface` with
   `ipRanges`): each pod has its own child and address, the NIC stays in the host, a claim that
   would move the NIC is refused while the children exist.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from knd.lab.apiserver import CLAIMS
from knd.lab.cri import PodSpec
from tests.e2e.knd_node import (
    DRIVER,
    NODE,
    FaultNode,
    Nic,
    Pod,
    host_state,
    pod_nic,
    wait_for,
)

pytestmark = pytest.mark.e2e


class _Hook:
    """DraNet's tests/webhook.py, in spirit: both capabilities, fixed answers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._send({"cloudProvider": True, "profileProvider": True})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.calls.append((self.path, body))
                answers: dict[str, Any] = {
                    "/GetDeviceAttributes": {"dra.net/webhook_attr": {"string": "python"}},
                    "/GetDeviceConfig": {"interface": {"mtu": 1450}},
                    "/GetProfileConfig": {"interface": {"addresses": ["10.200.200.200/24"]}},
                }
                self._send(answers.get(self.path, {}))

            def _send(self, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def node(runtime: dict[str, Any], tmp_path: Path) -> Iterator[FaultNode]:
    tag = "2" if runtime["version"] == "2" else "7"
    n = FaultNode(runtime, tmp_path, f"kv{tag}{os.getpid() % 1000}")
    try:
        yield n
    finally:
        if n.daemon is not None and n.daemon.proc.poll() is None:
            assert n.daemon.terminate() == 0, n.daemon.output()[-3000:]
        n.close()


def _claim_pod(node: FaultNode, nic: Nic, params: dict[str, Any]) -> Pod:
    spec = PodSpec(f"kv-{uuid.uuid4().hex[:8]}", uid=str(uuid.uuid4()))
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": f"c-{spec.name}", "namespace": "default"},
        "spec": {
            "devices": {"requests": [{"name": "nic", "exactly": {"deviceClassName": DRIVER}}]}
        },
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "nic", "driver": DRIVER, "pool": NODE, "device": nic.device}
                    ],
                    "config": [
                        {"source": "FromClaim", "opaque": {"driver": DRIVER, "parameters": params}}
                    ],
                },
                "nodeSelector": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": [NODE]}
                            ]
                        }
                    ]
                },
            },
            "reservedFor": [{"resource": "pods", "name": spec.name, "uid": spec.uid}],
        },
    }
    return Pod(spec, node.api.store.create(CLAIMS, "default", body), nic)


def _slice_device(node: FaultNode, device: str) -> dict[str, Any] | None:
    for s in node.api.slices():
        for d in s["spec"].get("devices") or []:
            if d["name"] == device:
                return dict(d)
    return None


def test_webhook_cloud_and_profile_provider(node: FaultNode) -> None:
    hook = _Hook()
    nic = node.new_nic(published=True)
    node.start_daemon(
        env={
            "KND_CLOUD_PROVIDER_HINT": "webhook",
            "KND_PROFILE_PROVIDER": "webhook",
            "KND_WEBHOOK_URL": hook.url,
        }
    )
    dev = wait_for(lambda: _slice_device(node, nic.device), timeout=30)
    assert dev is not None
    assert dev["attributes"]["dra.net/webhook_attr"] == {"string": "python"}
    asked = [body for path, body in hook.calls if path == "/GetDeviceAttributes"]
    ids = next(body for body in asked if body["name"] == nic.host)
    assert ids["mac_address"]  # joined on the MAC like DraNet
    pod = _claim_pod(node, nic, {"profile": "python-profile", "interface": {"name": "net1"}})
    node.prepare(pod)
    node.run_pod(pod)
    assert pod_nic(pod.netns) == {"mtu": 1450, "up": True, "addrs": ["10.200.200.200/24"]}
    profile_call = next(body for path, body in hook.calls if path == "/GetProfileConfig")
    assert profile_call["claim_uid"] == pod.ref[1]
    assert profile_call["config"]["profile"] == "python-profile"
    node.delete_pod(pod)
    node.unprepare(pod)
    assert any(path == "/ReleaseProfileConfig" for path, _ in hook.calls)
    hook.server.shutdown()
    hook.server.server_close()


def test_two_pods_share_one_nic_through_macvlan_children(node: FaultNode) -> None:
    nic = node.new_nic()
    node.start_daemon()
    child = {
        "interface": {"name": "net1"},
        "subInterface": {"type": "macvlan", "ipRanges": [{"subnet": "10.201.0.0/24"}]},
    }
    pods = [_claim_pod(node, nic, child) for _ in range(2)]
    for pod in pods:
        node.prepare(pod)
        node.run_pod(pod)
    got = [pod_nic(p.netns) for p in pods]
    assert got == [
        {"mtu": 1500, "up": True, "addrs": ["10.201.0.1/24"]},
        {"mtu": 1500, "up": True, "addrs": ["10.201.0.2/24"]},
    ]
    assert host_state(nic.host) is not None  # the parent never left the host
    mover = _claim_pod(node, nic, {"interface": {"name": "net1"}})
    resp = node.kubelet.prepare(DRIVER, [mover.ref])
    assert "has sub-interfaces" in resp.claims[mover.ref[1]].error
    for pod in pods:
        node.delete_pod(pod)
        node.unprepare(pod)
    assert host_state(nic.host) is not None
    node.prepare(mover)  # no children left: the NIC may move now
    node.unprepare(mover)
