"""Profiles and cloud device configs in prepare: node-local IPAM through a real PrepareEngine
and API server emulator; a hanging or garbage webhook fails only that claim, within its
timeout, with an Event and a Ready=False device condition; cloud config merges under users'."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubelet_claims import DRIVER, claim, opaque, ref

from knd.api.config import NetworkConfig, RouteConfig, RuleConfig
from knd.driver.claim_api import KubeClaimApi
from knd.driver.ipam import LocalIpam, parse_ranges
from knd.driver.prepare import PrepareEngine
from knd.driver.profiles import LocalProfiles, WebhookProfiles
from knd.driver.store import StateStore
from knd.inventory.cloud.base import DeviceIds
from knd.inventory.cloud.webhook import WebhookClient
from knd.kubelet.types import ClaimRef
from knd.lab.apiserver import ApiServerEmulator

pytestmark = pytest.mark.unit


def _profile_claim(
    name: str, device: str, profile: str, extra: dict[str, Any] | None = None
) -> Any:
    params: dict[str, Any] = {"profile": profile, **(extra or {})}
    return claim(name, [("nic", DRIVER, device)], configs=[opaque("FromClaim", params)])


def test_local_ipam_profile_prepares_and_releases(
    tmp_path: Path, store: StateStore, kube_api: KubeClaimApi, apiserver: ApiServerEmulator
) -> None:
    ipam = LocalIpam(tmp_path / "ipam.db")
    profiles = LocalProfiles(ipam, parse_ranges("blue=10.20.0.0/24"))
    eng = PrepareEngine(
        driver=DRIVER, store=store, reader=kube_api, events=kube_api, profiles=profiles
    )
    refs = []
    for i in range(3):
        obj = apiserver.put_claim(_profile_claim(f"c{i}", f"eth{i}", "blue"))
        refs.append(ClaimRef(*ref(obj)))
    results = eng.prepare(refs)
    assert all(r.error == "" for r in results.values())
    addresses = [
        store.plans_for_claim(r.uid)[0].plan["config"]["interface"]["addresses"] for r in refs
    ]
    assert addresses == [["10.20.0.1/24"], ["10.20.0.2/24"], ["10.20.0.3/24"]]
    assert eng.unprepare([refs[0]]) == {refs[0].uid: ""}
    assert ipam.addresses(f"{refs[0].uid}/eth0") == []
    # a user-set address wins over the profile's (users over providers)
    obj = apiserver.put_claim(
        _profile_claim("mine", "eth9", "blue", {"interface": {"addresses": ["10.20.0.200/24"]}})
    )
    r = ClaimRef(*ref(obj))
    assert eng.prepare([r])[r.uid].error == ""
    got = store.plans_for_claim(r.uid)[0].plan["config"]["interface"]["addresses"]
    assert "10.20.0.200/24" in got


def test_unknown_local_profile_fails_with_event_and_device_condition(
    tmp_path: Path, store: StateStore, kube_api: KubeClaimApi, apiserver: ApiServerEmulator
) -> None:
    failures: list[tuple[str, str, str]] = []
    profiles = LocalProfiles(LocalIpam(tmp_path / "ipam.db"), parse_ranges("blue=10.20.0.0/24"))
    eng = PrepareEngine(
        driver=DRIVER,
        store=store,
        reader=kube_api,
        events=kube_api,
        profiles=profiles,
        on_device_error=lambda c, pool, dev, msg: failures.append((pool, dev, msg)),
    )
    obj = apiserver.put_claim(_profile_claim("nope", "eth1", "purple"))
    r = ClaimRef(*ref(obj))
    err = eng.prepare([r])[r.uid].error
    assert "profile 'purple' is not a node-local IPAM profile" in err
    assert failures and failures[0][1] == "eth1" and "purple" in failures[0][2]
    events = apiserver.events()
    assert events[-1]["reason"] == "ClaimPrepareFailed" and "purple" in events[-1]["message"]
    assert store.claim(r.uid) is None


class _Hook:
    def __init__(self) -> None:
        self.mode = "hang"
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._raw(
                    200, json.dumps({"cloudProvider": False, "profileProvider": True}).encode()
                )

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                if owner.mode == "hang":
                    owner.release.wait(30)
                    self._raw(200, b"{}")
                elif owner.mode == "garbage":
                    self._raw(200, b'{"interface": {"mtu": "big"}}')
                else:
                    self._raw(
                        200,
                        json.dumps({"interface": {"addresses": ["10.200.200.200/24"]}}).encode(),
                    )

            def _raw(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def hook() -> Iterator[_Hook]:
    h = _Hook()
    yield h
    h.release.set()
    h.server.shutdown()
    h.server.server_close()


def test_hanging_or_garbage_webhook_fails_the_claim_within_its_timeout(
    hook: _Hook, store: StateStore, kube_api: KubeClaimApi, apiserver: ApiServerEmulator
) -> None:
    client = WebhookClient(hook.url, timeout=0.5)
    profiles = WebhookProfiles(client, lambda name: DeviceIds(name, mac="02:00:00:00:00:01"))
    eng = PrepareEngine(
        driver=DRIVER, store=store, reader=kube_api, events=kube_api, profiles=profiles
    )
    obj = apiserver.put_claim(_profile_claim("slow", "eth1", "acme.com/overlay"))
    r = ClaimRef(*ref(obj))
    start = time.monotonic()
    err = eng.prepare([r])[r.uid].error
    assert time.monotonic() - start < 0.5 * 20  # bounded by the client timeout (20x margin)
    assert "profile 'acme.com/overlay': webhook /GetProfileConfig" in err and "timed out" in err
    hook.mode = "garbage"
    err = eng.prepare([r])[r.uid].error
    assert "answer is not a valid config: interface.mtu: must be an integer" in err
    hook.mode = "ok"
    assert eng.prepare([r])[r.uid].error == ""
    plan = store.plans_for_claim(r.uid)[0].plan
    assert plan["config"]["interface"]["addresses"] == ["10.200.200.200/24"]
    reasons = [e["reason"] for e in apiserver.events()]
    assert reasons.count("ClaimPrepareFailed") == 2


def test_cloud_device_config_merges_under_the_users(
    store: StateStore, kube_api: KubeClaimApi, apiserver: ApiServerEmulator
) -> None:
    azure = NetworkConfig(
        rules=[RuleConfig(source="10.9.255.0/24", table=101)],
        routes=[RouteConfig(destination="0.0.0.0/0", gateway="10.9.255.1", table=101)],
        interface=None,
    )
    eng = PrepareEngine(
        driver=DRIVER,
        store=store,
        reader=kube_api,
        events=kube_api,
        device_configs=lambda dev: azure if dev == "eth1" else None,
    )
    user = {
        "interface": {"name": "net1"},
        "routes": [{"destination": "10.1.0.0/16", "gateway": "10.9.255.7"}],
    }
    obj = apiserver.put_claim(
        claim("az", [("nic", DRIVER, "eth1")], configs=[opaque("FromClaim", user)])
    )
    r = ClaimRef(*ref(obj))
    assert eng.prepare([r])[r.uid].error == ""
    cfg = store.plans_for_claim(r.uid)[0].plan["config"]
    assert cfg["rules"] == [{"source": "10.9.255.0/24", "table": 101}]
    assert {"destination": "0.0.0.0/0", "gateway": "10.9.255.1", "table": 101} in cfg["routes"]
    assert {"destination": "10.1.0.0/16", "gateway": "10.9.255.7"} in cfg["routes"]
    assert cfg["interface"]["name"] == "net1"


class _ChildBuilder:
    """A plan builder that marks sub-interface plans the way NetnsPlanBuilder does."""

    def build(
        self, device_name: str, pod_uid: str, claim: Any, request: str, config: NetworkConfig
    ) -> dict[str, Any]:
        sub = config.sub_interface
        return {
            "device": device_name,
            "sub": None if sub is None else {"kind": sub.type, "mode": sub.mode or "bridge"},
        }


def test_sub_interface_claims_share_a_device_that_is_never_moved_meanwhile(
    store: StateStore, kube_api: KubeClaimApi, apiserver: ApiServerEmulator
) -> None:
    released: list[tuple[str, str]] = []
    eng = PrepareEngine(
        driver=DRIVER,
        store=store,
        reader=kube_api,
        events=kube_api,
        plan_builder=_ChildBuilder(),
        on_ipam_release=lambda uid, dev: released.append((uid, dev)),
    )
    child = {"subInterface": {"type": "macvlan"}, "interface": {"name": "net1"}}

    def put(name: str, params: dict[str, Any]) -> ClaimRef:
        obj = apiserver.put_claim(
            claim(name, [("nic", DRIVER, "eth1")], configs=[opaque("FromClaim", params)])
        )
        return ClaimRef(*ref(obj))

    a, b = put("child-a", child), put("child-b", child)
    results = eng.prepare([a, b])
    assert results[a.uid].error == "" and results[b.uid].error == ""
    whole = put("whole", {"interface": {"name": "net9"}})
    err = eng.prepare([whole])[whole.uid].error
    assert "has sub-interfaces" in err and "cannot be moved into a pod while it has children" in err
    assert eng.unprepare([a, b]) == {a.uid: "", b.uid: ""}
    assert (a.uid, "eth1") in released and (b.uid, "eth1") in released
    assert eng.prepare([whole])[whole.uid].error == ""  # no children left: it may move
    late = put("child-late", child)
    err = eng.prepare([late])[late.uid].error
    assert "a subInterface needs its parent in the host" in err


def test_sub_interface_config_rules() -> None:
    from knd.api.check import finalize
    from knd.api.config import decode
    from knd.api.errors import ConfigError

    ok = finalize(
        decode(
            {
                "subInterface": {
                    "type": "ipvlan",
                    "mode": "l3s",
                    "flag": "private",
                    "ipRanges": [{"subnet": "fd00::/64", "start": "fd00::10", "end": "fd00::20"}],
                }
            }
        )
    )
    assert ok.sub_interface is not None and ok.sub_interface.ip_ranges is not None
    bad = {
        "subInterface": {
            "type": "vlan",
            "ipRanges": [{"subnet": "10.0.0.0/24", "end": "10.1.0.1"}],
        },
        "interface": {"mtu": 9000, "dhcp": True},
        "ethtool": {"features": {"tso": False}},
    }
    with pytest.raises(ConfigError) as info:
        finalize(decode(bad))
    text = str(info.value)
    for expected in (
        "subInterface.type: must be one of macvlan, ipvlan",
        "subInterface.ipRanges[0].end: must be inside 10.0.0.0/24",
        "interface.mtu: not supported with subInterface",
        "interface.dhcp: not supported with subInterface",
        "ethtool: not supported with subInterface",
    ):
        assert expected in text
    with pytest.raises(ConfigError, match=r"subInterface.flag: is only valid for type ipvlan"):
        finalize(decode({"subInterface": {"type": "macvlan", "flag": "vepa"}}))
