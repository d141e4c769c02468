"""knd.lab.audit: counting kube-apiserver audit events by client (bench/paper.py's API load)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from knd.lab import audit

KND = "system:serviceaccount:kube-system:knd"


def event(aid: str, stage: str, verb: str, res: str, code: int, ua: str, user: str) -> str:
    resource, _, sub = res.partition("/")
    ev: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": aid,
        "stage": stage,
        "verb": verb,
        "user": {"username": user},
        "userAgent": ua,
        "objectRef": {"resource": resource, "namespace": "default"},
        "responseStatus": {"code": code},
    }
    if sub:
        ev["objectRef"]["subresource"] = sub
    return json.dumps(ev) + "\n"


def test_policy_is_metadata_for_everything_and_readable_as_yaml(tmp_path: Path) -> None:
    path = audit.write_policy(tmp_path / "policy.yaml")
    policy = yaml.safe_load(path.read_text())
    assert policy["kind"] == "Policy"
    assert policy["rules"] == [{"level": "Metadata"}]
    assert policy["omitStages"] == ["RequestReceived"]


def test_counts_one_request_per_audit_id_by_agent_and_user(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text(
        event("a1", "ResponseComplete", "patch", "resourceclaims/status", 422, "knd", KND)
        + event("a2", "ResponseStarted", "watch", "resourceclaims", 200, "knd", KND)
        + event("a2", "ResponseComplete", "watch", "resourceclaims", 200, "knd", KND)
        + event("a3", "ResponseComplete", "get", "pods", 200, "knd", "admin")
        + event("a4", "ResponseComplete", "patch", "pods/status", 200, "kubelet/v1.37.2", "n")
    )
    got = audit.read_events(log)
    assert got.skipped == 0
    assert got.end_offset == log.stat().st_size
    knd = audit.count(got.events, user_agent="knd", username=KND)
    assert knd == {("patch", "resourceclaims/status", 422): 1, ("watch", "resourceclaims", 200): 1}
    # the same user agent with another identity (the bench's admin client) is not knd
    assert audit.count(got.events, user_agent="knd")[("get", "pods", 200)] == 1
    clients = audit.by_client(got.events)
    assert clients[("knd", KND)] == 2
    assert clients[("kubelet", "n")] == 1


def test_reads_from_an_offset_and_leaves_a_partial_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    first = event("a1", "ResponseComplete", "get", "pods", 200, "knd", KND)
    second = event("a2", "ResponseComplete", "list", "pods", 200, "knd", KND)
    log.write_text(first + second + second[:20])
    got = audit.read_events(log, offset=len(first))
    assert [e["auditID"] for e in got.events] == ["a2"]
    assert got.end_offset == len(first) + len(second)  # the partial line is left for later


def test_garbage_and_overlong_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    ok = event("a1", "ResponseComplete", "get", "pods", 200, "knd", KND)
    log.write_bytes(
        b"not json\n" + b"[1]\n" + b"x" * (audit.MAX_LINE_BYTES + 10) + b"\n" + ok.encode()
    )
    got = audit.read_events(log)
    assert got.skipped == 3
    assert [e["auditID"] for e in got.events] == ["a1"]


def test_agent_and_resource_names() -> None:
    assert audit.agent({"userAgent": "kube-scheduler/v1.37.2 (linux/amd64) kubernetes/abc"}) == (
        "kube-scheduler"
    )
    assert audit.agent({}) == "-"
    assert audit.resource({"requestURI": "/readyz?verbose"}) == "/readyz"
    assert audit.resource({"objectRef": {"resource": "pods", "subresource": "status"}}) == (
        "pods/status"
    )
