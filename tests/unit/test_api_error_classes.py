"""API errors are classified once, by what the caller must do; one backoff policy as data.

A 422 on a bad status entry or a 404 for a deleted claim must not be retried like a 503: the
status writer drops a permanent refusal at once (logged, counted) and retries the rest after
the policy's delay, or the server's Retry-After when that is longer.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from knd.driver.claim_api import KubeClaimApi, _claim_error
from knd.driver.errors import ClaimNotFoundError, PermanentError, TransientError
from knd.driver.retry import Backoff, RetryPolicies
from knd.driver.status_writer import Condition, DeviceStatus, StatusWriter
from knd.kube.connection import ApiConnection, HttpRequest, HttpResponse, _retry_after
from knd.kube.errors import (
    Action,
    ApiError,
    ConflictError,
    InvalidError,
    NotFoundError,
    ThrottledError,
    classify,
    for_status,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("status", "message", "action"),
    [
        (0, "unreachable", Action.RETRY),
        (400, "bad request", Action.PERMANENT),
        (403, "forbidden", Action.PERMANENT),
        (404, "not found", Action.PERMANENT),
        (408, "timeout", Action.RETRY),
        (409, "the object has been modified", Action.CONFLICT),
        (
            409,
            "Precondition failed: UID in precondition: a, UID in object meta: b",
            Action.PERMANENT,
        ),
        (422, "status.devices[0]: Invalid value", Action.PERMANENT),
        (429, "too many requests", Action.RETRY),
        (500, "internal", Action.RETRY),
        (503, "unavailable", Action.RETRY),
        (200, "", Action.RETRY),
    ],
)
def test_classify_by_what_the_caller_must_do(status: int, message: str, action: Action) -> None:
    assert classify(status, message) is action
    assert for_status(status, message).action is action


def test_subclasses_by_status() -> None:
    assert type(for_status(404, "x")) is NotFoundError
    assert type(for_status(409, "x")) is ConflictError
    assert type(for_status(422, "x")) is InvalidError
    assert type(for_status(429, "x", retry_after_s=3.0)) is ThrottledError
    assert for_status(429, "x", retry_after_s=3.0).retry_after_s == 3.0
    assert type(for_status(503, "x")) is ApiError


def test_engine_errors_follow_the_one_classification() -> None:
    assert isinstance(_claim_error(for_status(422, "bad"), "applying"), PermanentError)
    assert isinstance(_claim_error(for_status(404, "gone"), "applying"), PermanentError)
    transient = _claim_error(for_status(503, "busy", retry_after_s=7.0), "applying")
    assert isinstance(transient, TransientError) and transient.retry_after_s == 7.0
    assert isinstance(_claim_error(for_status(409, "modified"), "applying"), TransientError)


def test_retry_after_header_is_bounded() -> None:
    assert _retry_after("5") == 5.0
    assert _retry_after(" 12 ") == 12.0
    assert _retry_after("999999") == 300.0
    assert _retry_after("9999999999") is None
    assert _retry_after("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert _retry_after("-1") is None
    assert _retry_after(None) is None


def test_backoff_is_data() -> None:
    b = Backoff(0.2, 10.0, attempts=64)
    assert b.delays()[:7] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0])
    assert len(b.delays()) == 63 and not b.gives_up(63) and b.gives_up(64)
    assert b.delay(1, hint_s=4.0) == 4.0  # the server's Retry-After wins when longer
    assert b.delay(9, hint_s=1.0) == 10.0
    assert b.delay(1, hint_s=3600.0) == 10.0  # ... and is capped like any delay
    policies = RetryPolicies()
    assert not policies.restore.gives_up(10**6)  # a NIC is never given up on
    assert [policies.publish.delay(n) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 20.0]
    with pytest.raises(ValueError, match="unbounded"):
        policies.restore.delays()


class _Applier:
    """Answers each apply with the next scripted error (None: success); records the calls."""

    def __init__(self, script: list[Exception | None]) -> None:
        self.script = script
        self.calls = 0
        self.done = threading.Event()

    def apply_devices(
        self,
        namespace: str,
        name: str,
        devices: list[dict[str, Any]],
        manager: str,
        uid: str | None = None,
    ) -> None:
        self.calls += 1
        outcome = self.script.pop(0) if self.script else None
        if not self.script:
            self.done.set()
        if outcome is not None:
            raise outcome


def _device() -> DeviceStatus:
    return DeviceStatus(pool="node", device="eth1", conditions=(Condition("Ready", True, "Ok"),))


@pytest.mark.parametrize("status", [404, 422, 403])
def test_status_writer_drops_a_permanent_refusal_at_once(status: int) -> None:
    applier = _Applier([_claim_error(for_status(status, "no"), "applying")])
    writer = StatusWriter(applier=applier, driver="dra.net", backoff=Backoff(0.01, 0.01))
    try:
        writer.submit("ns", "c", [_device()])
        assert writer.flush(timeout=10.0)
        assert applier.calls == 1 and writer.failed == 1 and writer.retries == 0
    finally:
        writer.close()


def test_status_writer_retries_a_503_until_it_succeeds() -> None:
    busy = _claim_error(for_status(503, "busy"), "applying")
    applier = _Applier([busy, busy, None])
    writer = StatusWriter(applier=applier, driver="dra.net", backoff=Backoff(0.01, 0.01))
    try:
        writer.submit("ns", "c", [_device()])
        assert applier.done.wait(10.0)
        assert writer.flush(timeout=10.0)
        assert applier.calls == 3 and writer.retries == 2 and writer.applied == 1
        assert writer.failed == 0
    finally:
        writer.close()


class _Handler:
    """A 20-line API server: answers from a dict of claims and a script of status writes."""

    def __init__(self, claims: dict[str, dict[str, Any]], writes: list[HttpResponse]) -> None:
        self.claims, self.writes = claims, writes
        self.seen: list[HttpRequest] = []

    def __call__(self, req: HttpRequest) -> HttpResponse:
        self.seen.append(req)
        name = req.target.split("?")[0].split("/")[7]
        if req.method == "GET":
            if name not in self.claims:
                body = {"kind": "Status", "reason": "NotFound", "message": f"{name} not found"}
                return HttpResponse(404, "Not Found", json.dumps(body).encode())
            return HttpResponse(200, "OK", json.dumps(self.claims[name]).encode())
        return self.writes.pop(0)


def test_the_claim_api_over_a_transport_callable() -> None:
    """ApiConnection's transport is a plain callable: no API server, no socket."""
    stored = {"metadata": {"name": "c", "namespace": "ns", "uid": "u1"}, "extra": {"kept": 1}}
    invalid = {"kind": "Status", "message": "status.devices[0].data: Invalid value"}
    handler = _Handler(
        {"c": stored},
        [
            HttpResponse(422, "Unprocessable Entity", json.dumps(invalid).encode()),
            HttpResponse(503, "Service Unavailable", b"{}", retry_after="7"),
            HttpResponse(200, "OK", b"{}"),
        ],
    )
    statuses: list[int] = []
    conn = ApiConnection("http://api.test", transport=handler)
    conn.observer = lambda _m, status, _s: statuses.append(status)
    api = KubeClaimApi(conn, component="dra.net")
    assert api.get("ns", "c") == stored  # the server's JSON, untouched
    with pytest.raises(ClaimNotFoundError):
        api.get("ns", "gone")
    with pytest.raises(PermanentError, match="Invalid value"):
        api.apply_devices("ns", "c", [], "dra.net", uid="u1")
    with pytest.raises(TransientError) as busy:
        api.apply_devices("ns", "c", [], "dra.net", uid="u1")
    assert busy.value.retry_after_s == 7.0
    api.apply_devices("ns", "c", [], "dra.net", uid="u1")
    assert statuses == [200, 404, 422, 503, 200]
    patch = handler.seen[-1]
    assert patch.method == "PATCH" and "fieldManager=dra.net" in patch.target
    assert json.loads(patch.body or b"")["metadata"]["uid"] == "u1"
