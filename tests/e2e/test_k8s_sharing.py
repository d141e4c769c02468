"""One NIC shared by sub-interface claims, bounded by the real kube-scheduler.

knd runs with `--device-shares 2`: its slice publishes every lab NIC with
`allowMultipleAllocations` and the consumable capacity `dra.net/shares` = 2 (KEP-5075). Three
pods each claim a macvlan child of the same NIC. The real scheduler allocates the first two
(one share each, distinct shareIDs) and leaves the third Unschedulable; deleting one pod frees
its share and the third is scheduled and gets its child. `knd explain --lab` (knd's allocator)
must reach the scheduler's verdicts over the same API objects, and say which capacity is short.
Everything is read from the real API server (slices, claims, pods) or inside the pods (CRI
exec), never from knd's memory.

Own lab (one per module): knd's flag differs from test_k8s_lab's. Skips as that module does.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from knd.cli.main import main as knd_main
from knd.lab import lab as labmod
from knd.lab.restapi import RestClient
from tests.e2e.k8s_support import (
    Lab,
    _k8s_skip_reason,
    _wait,
    nic_claim,
    pod,
    running,
    sh,
    uniq,
)

pytestmark = pytest.mark.e2e
PREFIX = "kks"
SHARES = 2


class SharingLab(Lab):
    def nic(self, i: int) -> str:
        return f"{PREFIX}{i}"


def _on_host(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = _k8s_skip_reason()
    if reason:
        print(f"SKIP e2e: {reason}")
        pytest.skip(reason)
    cfg = labmod.LabConfig(
        # a short name: the kubelet's sockets below it must fit in 107 bytes
        state_dir=tmp_path_factory.mktemp("ks") / "state",
        nic_prefix=PREFIX,
        fabric=f"kks-fabric-{os.getpid()}",
    )
    log = io.StringIO()
    try:
        state = labmod.up(cfg, out=log, driver_args=("--device-shares", str(SHARES)))
        yield SharingLab(cfg, RestClient.from_kubeconfig(Path(state["kubeconfig"])), state)
    finally:
        print(log.getvalue())
        logs = [cfg.state_dir / "driver.log", cfg.state_dir / "gpu_driver.log"]
        logs += sorted((cfg.state_dir / "kubernetes" / "logs").glob("kube-*.log"))
        for path in logs:
            if path.exists():
                tail = "\n".join(path.read_text(errors="replace").splitlines()[-25:])
                print(f"--- {path.name} (tail)\n{tail}")
        labmod.down(cfg, out=io.StringIO())


def _knd_device(lab: Lab, ifname: str) -> dict[str, Any]:
    for s in lab.api.list("ResourceSlice"):
        if s["spec"].get("driver") != "dra.net":
            continue
        for d in s["spec"].get("devices") or []:
            if (d.get("attributes") or {}).get("dra.net/ifName", {}).get("string") == ifname:
                return dict(d)
    raise AssertionError(f"no dra.net device for {ifname} in the API server's slices")


def _result(lab: Lab, claim: str) -> dict[str, Any] | None:
    c = lab.api.get("ResourceClaim", claim, "default") or {}
    results = (((c.get("status") or {}).get("allocation") or {}).get("devices") or {}).get(
        "results"
    ) or []
    return dict(results[0]) if results else None


def _unschedulable(lab: Lab, name: str) -> bool:
    got = lab.api.get("Pod", name, "default") or {}
    conds = (got.get("status") or {}).get("conditions") or []
    return any(x["type"] == "PodScheduled" and x.get("reason") == "Unschedulable" for x in conds)


def test_the_real_api_server_stores_the_share_count(lab: Lab) -> None:
    dev = _knd_device(lab, lab.nic(0))
    assert dev.get("allowMultipleAllocations") is True
    assert dev["capacity"]["dra.net/shares"]["value"] == str(SHARES)
    assert dev["capacity"]["dra.net/shares"]["requestPolicy"]["default"] == "1"
    assert len(dev["attributes"]) + len(dev["capacity"]) <= 32


def _explain(lab: Lab, claim_name: str, tmp_path: Path) -> tuple[int, str]:
    """`knd explain --lab -v` on the claim as the API server has it (exit status, output)."""
    doc = lab.api.get("ResourceClaim", claim_name, "default")
    path = tmp_path / f"{claim_name}.json"
    path.write_text(json.dumps(doc))
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = knd_main(
            ["explain", str(path), "--lab", "--lab-state-dir", str(lab.cfg.state_dir), "-v"]
        )
    return rc, buf.getvalue()


def test_the_scheduler_admits_n_children_of_one_nic_and_holds_the_next(
    lab: Lab, tmp_path: Path
) -> None:
    nic = lab.nic(0)
    names, claims, pods = [], [], []
    for i in range(SHARES + 1):
        c = uniq(f"share{i}")
        params = {
            "subInterface": {"type": "macvlan", "mode": "bridge"},
            "interface": {"name": "net1", "addresses": [f"192.0.2.{21 + i}/24"]},
        }
        lab.api.create(nic_claim(c, nic, params))
        p = pod(lab, uniq(f"sp{i}"), {"nic": c})
        claims.append(c)
        pods.append(p)
        names.append(p["metadata"]["name"])
    try:
        for p in pods[:SHARES]:
            lab.api.create(p)
        up = [running(lab, n) for n in names[:SHARES]]
        for i, p in enumerate(up):
            assert f"inet 192.0.2.{21 + i}/24" in sh(
                lab, p, "ip", "-o", "addr", "show", "dev", "net1"
            )
        shares = []
        for c in claims[:SHARES]:
            r = _result(lab, c)
            assert r is not None and r["device"] == _knd_device(lab, nic)["name"]
            assert r.get("consumedCapacity") == {"dra.net/shares": "1"}, r
            shares.append(r["shareID"])
        assert len(set(shares)) == SHARES  # one share each
        assert _on_host(nic)  # the parent never leaves the host
        # The N+1th: the real scheduler does not allocate the NIC a third time, and knd
        # explain (knd's allocator, over the same API objects) agrees, saying why.
        lab.api.create(pods[SHARES])
        _wait(lambda: _unschedulable(lab, names[SHARES]), 60, "the N+1th pod Unschedulable")
        assert _result(lab, claims[SHARES]) is None
        rc, out = _explain(lab, claims[SHARES], tmp_path)
        assert rc == 1 and f"capacity dra.net/shares: 1 needed, 0 of {SHARES} left" in out, out
        # One leaves (pod and claim): its share comes back and the waiting pod gets the NIC.
        lab.api.delete("Pod", names[0], "default")
        lab.api.delete("ResourceClaim", claims[0], "default")
        last = running(lab, names[SHARES], timeout=180)
        assert f"inet 192.0.2.{21 + SHARES}/24" in sh(
            lab, last, "ip", "-o", "addr", "show", "dev", "net1"
        )
        r = _result(lab, claims[SHARES])
        assert r is not None and r["shareID"] not in shares[1:]
        # full again: a claim that asks for both shares is refused by both allocators
        greedy = uniq("greedy")
        greedy_claim = nic_claim(greedy, nic, None)
        exact = greedy_claim["spec"]["devices"]["requests"][0]["exactly"]
        exact["capacity"] = {"requests": {"dra.net/shares": str(SHARES)}}
        lab.api.create(greedy_claim)
        claims.append(greedy)
        rc, out = _explain(lab, greedy, tmp_path)
        assert rc == 1 and f"{SHARES} needed, 0 of {SHARES} left" in out, out
    finally:
        for n in names:
            lab.api.delete("Pod", n, "default")
        _wait(lambda: not lab.api.list("Pod", "default"), 120, "pods deleted by the kubelet")
        for c in claims:
            lab.api.delete("ResourceClaim", c, "default")
