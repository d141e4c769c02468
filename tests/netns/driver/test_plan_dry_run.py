"""`knd plan`: the real prepare path on a real veth, printed as attach steps; nothing changes.

The dry run must agree with prepare: the same plan (what NodePrepareResources would persist)
and the same error messages; and it must leave the host as it was (interface, addresses, routes,
state store, no DHCP traffic).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from knd.api.names import interface_device_name
from knd.cli.main import main
from knd.driver.claim_api import KubeClaimApi
from knd.driver.dry_run import PlanFailedError, plan_claim, plan_steps
from knd.driver.netns_plans import NetnsPlanBuilder
from knd.driver.prepare import PrepareEngine
from knd.driver.store import StateStore
from knd.kube.connection import connect_url
from knd.kubelet.types import ClaimRef
from knd.lab.apiserver import ApiServerEmulator
from knd.netns.steps import STEPS, AttachStep
from tests.netns.conftest import Lab, addrs, link, routes, sh

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "kubelet"))
from kubelet_claims import DRIVER, POOL, as_claim, claim, opaque


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[PrepareEngine, ApiServerEmulator, StateStore]]:
    server = ApiServerEmulator().start()
    store = StateStore(tmp_path / "knd.db")
    api = KubeClaimApi(connect_url(server.url), component=DRIVER, host=POOL)
    eng = PrepareEngine(
        driver=DRIVER,
        store=store,
        reader=api,
        events=api,
        plan_builder=NetnsPlanBuilder(),
        pool=POOL,
    )
    try:
        yield eng, server, store
    finally:
        store.close()
        server.stop()


def _host_view(name: str) -> tuple[object, ...]:
    data = link(None, name)
    return (
        data["ifname"],
        data["mtu"],
        data["address"],
        data["operstate"],
        addrs(None, name),
        sorted(r["dst"] for r in routes(None, name)),
    )


def test_plan_is_what_prepare_persists_and_changes_nothing(
    lab: Lab,
    engine: tuple[PrepareEngine, ApiServerEmulator, StateStore],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    eng, server, store = engine
    nic = lab.nic()
    sh("ip", "addr", "add", "192.0.2.77/24", "dev", nic.name)
    sh("ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.1", "dev", nic.name)
    params = {
        "interface": {"name": "eth42", "mtu": 1400, "arpIgnore": 1},
        "routes": [{"destination": "203.0.113.0/24", "gateway": "192.0.2.254"}],
    }
    obj = claim(
        "c1",
        [("nic", DRIVER, interface_device_name(nic.name))],
        configs=[opaque("FromClaim", params)],
    )
    before = _host_view(nic.name)

    plans = plan_claim(as_claim(obj), driver=DRIVER, pool=POOL)
    assert _host_view(nic.name) == before
    (dp,) = plans
    steps = plan_steps(dp.plan)
    names = [s for s, _ in steps]
    assert names[:3] == ["lookup", "down", "move"]
    move = dict(steps)["move"]
    assert "name eth42" in move and "mtu 1400 (host 1500)" in move
    assert ("sysctl", "net.ipv4.conf.eth42.arp_ignore = 1") in steps
    assert ("address", "192.0.2.77/24") in steps
    route_lines = [a for s, a in steps if s == "route"]
    assert route_lines[0].startswith("192.0.2.0/24")  # link scope first
    assert "203.0.113.0/24 via 192.0.2.254 table 254" in route_lines
    assert "198.51.100.0/24 via 192.0.2.1 table 254" in route_lines
    assert names[-1] == "detach"
    order = [STEPS.index(AttachStep(n)) for n in names[:-1]]
    assert order == sorted(order)  # the executor's step names (knd.netns.steps), in its order

    # Prepare with the same claim persists exactly the plan the dry run showed.
    stored = server.put_claim(obj)
    meta = stored["metadata"]
    result = eng.prepare([ClaimRef(meta["namespace"], meta["uid"], meta["name"])])
    assert not result[meta["uid"]].error
    (record,) = store.plans_for_claim(meta["uid"])
    assert record.plan == json.loads(dp.plan.to_json())

    # The CLI: a YAML claim file, text and JSON output; still nothing changed.
    path = tmp_path / "claim.yaml"
    path.write_text(yaml.safe_dump(obj))
    assert main(["plan", str(path), "--node-name", POOL]) == 0
    out = capsys.readouterr().out
    assert f"device {POOL}/{interface_device_name(nic.name)} (request nic):" in out
    assert "move" in out and "eth42" in out
    assert main(["plan", str(path), "--node-name", POOL, "-o", "json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["plan"] == record.plan
    assert _host_view(nic.name) == before


def test_dhcp_is_not_run_and_is_reported(lab: Lab) -> None:
    nic = lab.nic()  # no DHCP server on the wire: a real DHCP exchange would fail
    obj = claim(
        "c-dhcp",
        [("nic", DRIVER, interface_device_name(nic.name))],
        configs=[opaque("FromClaim", {"interface": {"dhcp": True}})],
    )
    (dp,) = plan_claim(as_claim(obj), driver=DRIVER, pool=POOL)
    addresses = [a for s, a in plan_steps(dp.plan) if s == "address"]
    assert addresses == [f"the DHCP lease's address (DHCP runs on {nic.name} at prepare)"]


def test_bad_input_gets_prepares_errors(
    lab: Lab,
    engine: tuple[PrepareEngine, ApiServerEmulator, StateStore],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    eng, server, _ = engine
    nic = lab.nic()
    device = interface_device_name(nic.name)
    bad = [
        claim(
            "bad-mtu",
            [("nic", DRIVER, device)],
            configs=[opaque("FromClaim", {"interface": {"mtu": "huge"}})],
        ),
        claim(
            "bad-route",
            [("nic", DRIVER, device)],
            configs=[opaque("FromClaim", {"routes": [{"destination": "10.0.0.0/8"}]})],
        ),
        claim("missing", [("nic", DRIVER, "no-such-nic")]),
        claim("unallocated", [("nic", DRIVER, device)], allocated=False),
        claim("two-pods", [("nic", DRIVER, device)], pods=[("a", "1"), ("b", "2")]),
    ]
    for obj in bad:
        with pytest.raises(PlanFailedError) as caught:
            plan_claim(as_claim(obj), driver=DRIVER, pool=POOL)
        stored = server.put_claim(obj)
        meta = stored["metadata"]
        result = eng.prepare([ClaimRef(meta["namespace"], meta["uid"], meta["name"])])
        assert caught.value.message == result[meta["uid"]].error, meta["name"]
    wrong_pool = claim("elsewhere", [("nic", DRIVER, device)])
    with pytest.raises(PlanFailedError, match="not to this node's pool 'other-node'"):
        plan_claim(as_claim(wrong_pool), driver=DRIVER, pool="other-node")

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad[0]))
    assert main(["plan", str(path), "--node-name", POOL]) == 1
    assert "interface.mtu" in capsys.readouterr().err
    (tmp_path / "empty.yaml").write_text("kind: ConfigMap\n")
    assert main(["plan", str(tmp_path / "empty.yaml")]) == 2
    assert "no ResourceClaim" in capsys.readouterr().err


def test_claim_by_name_from_the_api_server(
    lab: Lab,
    engine: tuple[PrepareEngine, ApiServerEmulator, StateStore],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, server, _ = engine
    nic = lab.nic()
    server.put_claim(claim("named", [("nic", DRIVER, interface_device_name(nic.name))]))
    args = ["plan", "-n", "default", "named", "--apiserver", server.url, "--node-name", POOL]
    assert main(args) == 0
    assert f"host interface {nic.name}" in capsys.readouterr().out
    assert main([*args[:3], "nope", *args[4:]]) == 2
    assert "not found" in capsys.readouterr().err
