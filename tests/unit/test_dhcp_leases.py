"""DHCP lease keeping (knd.driver.leases) with a fake clock and a fake renewal exchange: RFC 2131
timers (T1 renew, T2 rebind, expiry), NAK, retry spacing, tracking through the NRI hooks; and the
renewal REQUEST on the wire. The real exchange against dnsmasq is in tests/netns/test_dhcp.py."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from knd.api.config import decode
from knd.driver.hooks import NetworkHooks, NullStatus
from knd.driver.leases import LeaseKeeper
from knd.driver.metrics import DriverMetrics
from knd.driver.store import ClaimRecord, PlanRecord, PodRecord, StateStore
from knd.netns.attach import Attached
from knd.netns.builder import build_plan
from knd.netns.detach import Detached
from knd.netns.dhcp import REQUEST, encode_request, parse_options
from knd.netns.errors import DhcpError, DhcpNakError, PlanError
from knd.netns.hoststate import DhcpLease, HostState
from knd.netns.plan import AttachPlan, HostSide
from knd.nri.types import PodInfo
from tests.unit.fake_status import FakeStatus

pytestmark = pytest.mark.unit

HOST = HostSide(name="eth1", ifindex=7, mac="02:00:00:00:00:07", mtu=1500, up=True)
LEASE = DhcpLease(
    address="10.33.0.55/24", router="10.33.0.1", server="10.33.0.1", lease_time=100,
    obtained_at=1000,
)  # fmt: skip


def dhcp_plan(device: str = "dev-a", lease: DhcpLease = LEASE) -> AttachPlan:
    cfg = decode({"interface": {"name": "net1", "dhcp": True}})
    return build_plan(device, "pod-1", cfg, HostState(host=HOST), lease=lease)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeServer:
    """Answers renewals from a script: a DhcpLease (ACK) or an exception per call."""

    def __init__(self, *answers: DhcpLease | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str, str, str, str | None, bool]] = []

    def __call__(
        self, netns: str, ifname: str, mac: str, address: str, server: str | None, rebind: bool
    ) -> DhcpLease:
        self.calls.append((netns, ifname, mac, address, server, rebind))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def keeper(server: FakeServer, clock: Clock, counted: list[str]) -> LeaseKeeper:
    return LeaseKeeper(server, clock=clock, count=counted.append, min_retry_s=5, expired_retry_s=30)


def test_plan_carries_the_binding_and_it_round_trips() -> None:
    plan = dhcp_plan()
    assert plan.pod is not None and plan.pod.dhcp is not None
    assert plan.pod.dhcp.address == "10.33.0.55/24"
    assert (plan.pod.dhcp.server, plan.pod.dhcp.lease_time) == ("10.33.0.1", 100)
    assert plan.pod.dhcp.obtained_at == 1000
    assert AttachPlan.from_json(plan.to_json()) == plan
    bad = json.loads(plan.to_json())
    bad["pod"]["dhcp"]["server"] = "not-an-ip"
    with pytest.raises(PlanError, match=r"dhcp\.server"):
        AttachPlan.from_json(json.dumps(bad))
    infinite = dhcp_plan(lease=DhcpLease(address="10.33.0.55/24", lease_time=0xFFFFFFFF))
    assert infinite.pod is not None and infinite.pod.dhcp is not None
    assert infinite.pod.dhcp.lease_time is None
    static = build_plan("d", "p", decode({"interface": {"name": "n"}}), HostState(host=HOST))
    assert static.pod is not None and static.pod.dhcp is None


def test_renews_at_t1_unicast_and_restarts_the_timers_on_ack() -> None:
    clock, counted = Clock(1049), list[str]()
    server = FakeServer(DhcpLease(address="10.33.0.55/24", server="10.33.0.1", lease_time=200))
    k = keeper(server, clock, counted)
    assert k.track("pod-1", "/run/netns/p1", [dhcp_plan()]) == 1
    assert k.run_due() == 0  # T1 = 1000 + 100/2 = 1050
    clock.now = 1050
    assert k.run_due() == 1
    assert server.calls == [
        ("/run/netns/p1", "net1", "02:00:00:00:00:07", "10.33.0.55/24", "10.33.0.1", False)
    ]
    (item,) = k.tracked()
    assert item.binding.lease_time == 200 and item.binding.obtained_at == 1050
    assert item.due == 1150
    assert counted == ["ack"]


def test_no_answer_retries_then_rebinds_after_t2_then_reports_expiry() -> None:
    clock, counted = Clock(1050), list[str]()
    server = FakeServer(DhcpError("timed out"), DhcpError("timed out"), DhcpError("timed out"))
    k = keeper(server, clock, counted)
    k.track("pod-1", "/run/netns/p1", [dhcp_plan()])
    k.run_due()
    (item,) = k.tracked()
    assert item.due == 1050 + (1087.5 - 1050) / 2  # half the time left to T2
    clock.now = 1088  # past T2 = 1087.5: broadcast
    k.run_due()
    assert server.calls[-1][-1] is True
    (item,) = k.tracked()
    assert item.due == 1088 + max(5, (1100 - 1088) / 2)
    clock.now = 1101  # past the lease's end
    k.run_due()
    (item,) = k.tracked()
    assert item.due == 1101 + 30
    assert counted == ["error", "error", "expired"]


def test_nak_stops_renewing_and_forget_drops_the_pod() -> None:
    clock, counted = Clock(1050), list[str]()
    k = keeper(FakeServer(DhcpNakError("NAK")), clock, counted)
    k.track("pod-1", "/run/netns/p1", [dhcp_plan("dev-a"), dhcp_plan("dev-b")])
    assert len(k.tracked()) == 2
    clock.now = 1050
    k.forget("pod-2")  # another pod: nothing happens
    assert len(k.tracked()) == 2
    k.track("pod-1", "/run/netns/p1", [dhcp_plan("dev-a")])  # idempotent
    assert len(k.tracked()) == 2
    k.forget("pod-1")
    assert k.tracked() == []
    k.track("pod-1", "/run/netns/p1", [dhcp_plan("dev-a")])
    k.run_due()
    assert k.tracked() == [] and counted == ["nak"]


def test_observer_hears_a_loss_once_and_the_recovery() -> None:
    clock, counted = Clock(1101), list[str]()  # already past the lease's end (1000 + 100)
    heard: list[tuple[str, bool, str]] = []
    server = FakeServer(
        DhcpError("timed out"),
        DhcpError("timed out"),
        DhcpLease(address="10.33.0.55/24", lease_time=100),
        DhcpNakError("NAK"),
    )
    k = keeper(server, clock, counted)
    k.set_observer(lambda item, valid, reason, _msg: heard.append((item.device, valid, reason)))
    k.track("pod-1", "/run/netns/p1", [dhcp_plan()])
    k.run_due()
    clock.now += 30
    k.run_due()  # still expired: not reported again
    assert heard == [("dev-a", False, "DHCPLeaseExpired")]
    clock.now += 30
    k.run_due()  # renewed
    assert heard[-1] == ("dev-a", True, "DHCPLeaseRenewed")
    clock.now += 50
    k.run_due()  # NAK
    assert heard[-1] == ("dev-a", False, "DHCPLeaseRefused")
    assert counted == ["expired", "expired", "ack", "nak"]


def test_infinite_and_static_addresses_are_not_tracked() -> None:
    k = keeper(FakeServer(), Clock(0), [])
    infinite = dhcp_plan(lease=DhcpLease(address="10.33.0.55/24", lease_time=0xFFFFFFFF))
    static = build_plan("d", "p", decode({"interface": {"name": "n"}}), HostState(host=HOST))
    assert k.track("pod-1", "/run/netns/p1", [infinite, static]) == 0


def test_the_keeper_thread_renews_when_due() -> None:
    renewed = threading.Event()

    def renew(*args: object) -> DhcpLease:
        renewed.set()
        return DhcpLease(address="10.33.0.55/24", lease_time=3600)

    k = LeaseKeeper(renew)
    k.start()
    try:
        due_now = DhcpLease(
            address="10.33.0.55/24", lease_time=100, obtained_at=int(time.time()) - 60
        )
        k.track("pod-1", "/run/netns/p1", [dhcp_plan(lease=due_now)])
        assert renewed.wait(10), "the keeper thread did not renew a due lease"
    finally:
        k.stop()
    (item,) = k.tracked()
    assert item.binding.lease_time == 3600


def test_renewal_request_on_the_wire() -> None:
    """RENEWING/REBINDING: ciaddr carries the address, no broadcast flag, no requested-IP or
    server-id option (RFC 2131 §4.3.2)."""
    msg = encode_request(REQUEST, 0x01020304, "02:00:00:00:00:07", ciaddr="10.33.0.55")
    (flags,) = struct.unpack_from("!H", msg, 10)
    assert flags == 0
    assert socket.inet_ntoa(msg[12:16]) == "10.33.0.55"
    opts = parse_options(msg[240:])
    assert opts[53] == bytes([REQUEST]) and 50 not in opts and 54 not in opts
    first = encode_request(REQUEST, 1, "02:00:00:00:00:07", requested_ip="10.33.0.55")
    assert struct.unpack_from("!H", first, 10)[0] == 0x8000 and first[12:16] == b"\0" * 4


# -- through the NRI hooks ---------------------------------------------------------------------


class Recorder:
    def attach(self, plans: Sequence[AttachPlan], netns: str) -> list[Attached]:
        return [Attached(p.device, "net1", HOST.mac, ("10.33.0.55/24",)) for p in plans]

    def detach(self, plans: Sequence[AttachPlan], netns: str | None) -> list[Detached]:
        return [Detached(p.device, "returned", ()) for p in plans]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "knd.db")
    claim = ClaimRecord("claim-1", "ns", "c1", "pod-1", time.time(), {})
    record = PlanRecord(
        "claim-1", "node", "dev-a", "nic", "pod-1", json.loads(dhcp_plan().to_json())
    )
    s.save_prepared(claim, PodRecord("pod-1", "ns", "p1"), [record])
    try:
        yield s
    finally:
        s.close()


def test_hooks_keep_leases_of_attached_pods_and_drop_them_on_stop(store: StateStore) -> None:
    rec = Recorder()
    status = FakeStatus()
    k = keeper(FakeServer(DhcpNakError("NAK")), Clock(1050), [])
    h = NetworkHooks(
        store=store, status=status, metrics=DriverMetrics(), attach_fn=rec.attach,
        detach_fn=rec.detach, leases=k, host_links=set,
    )  # fmt: skip
    k.set_observer(h.report_lease)
    pod = PodInfo(id="sb1", uid="pod-1", name="p1", namespace="ns", netns="/run/netns/cni-1")
    h.run_pod_sandbox(pod)
    assert [(t.device, t.netns) for t in k.tracked()] == [("dev-a", "/run/netns/cni-1")]
    assert status.conditions()["DHCPLease"] == (True, "DHCPLeaseBound")
    k.run_due()  # the server refuses the renewal: the claim status says so
    assert status.submitted[-1][:2] == ("ns", "c1")
    got = status.conditions()
    assert got["DHCPLease"] == (False, "DHCPLeaseRefused")
    assert got["Ready"] == (True, "NetworkDeviceReady")  # the interface is still configured
    assert status.submitted[-1][2][0].network is not None
    assert k.tracked() == []  # a refused lease is no longer renewed
    k.track("pod-1", "/run/netns/cni-1", [dhcp_plan()])  # (kept again, to see stop drop it)
    assert len(k.tracked()) == 1
    h.stop_pod_sandbox(pod)
    assert k.tracked() == []
    # a restarted daemon finds the pod attached at Synchronize: the lease is kept again
    restarted = keeper(FakeServer(), Clock(0), [])
    h2 = NetworkHooks(
        store=store, status=NullStatus(), metrics=DriverMetrics(), attach_fn=rec.attach,
        detach_fn=rec.detach,
        leases=restarted, host_links=set, netns_exists=lambda _p: True,
    )  # fmt: skip
    h2.synchronize([pod], [])
    assert [t.device for t in restarted.tracked()] == ["dev-a"]
