"""Who asks the real API server for what: its audit log, counted by client.

kube-apiserver's own metrics cannot attribute load to a client: `apiserver_request_total` is
labelled by verb, group, resource, subresource, scope, component and code, not by user or user
agent, and the flow-control metrics (`apiserver_flowcontrol_*`) only by FlowSchema and priority
level. The audit log can: every event carries `user.username`, `userAgent`, `verb`,
`objectRef` and `responseStatus.code`. `POLICY` logs every request at the `Metadata` level
(no bodies) once it completes (a watch also when its stream starts), so the log holds one
event per request, or two for a watch, both with one `auditID`.

`read_events(path, offset)` streams the log from a byte offset (bounded lines: a longer one is
skipped and counted, never loaded whole); `count(events, ...)` counts requests, one per
`auditID`, by client and by (verb, resource) or (code).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Every request at Metadata level, written once it completes (watches also when they start).
POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}
#: One audit event is a few hundred bytes at Metadata level; anything longer is not ours.
MAX_LINE_BYTES = 1 << 20


def write_policy(path: Path) -> Path:
    """Write `POLICY` (JSON is YAML) to `path`; returns it."""
    path.write_text(json.dumps(POLICY, indent=1) + "\n")
    return path


@dataclass
class Events:
    """Audit events read from a log, and how many lines were not usable."""

    events: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    end_offset: int = 0


def read_events(path: Path, offset: int = 0, end: int | None = None) -> Events:
    """The events between byte offsets `offset` and `end` (default: the end now). Lines longer
    than MAX_LINE_BYTES, or not a JSON object, are skipped and counted."""
    out = Events(end_offset=offset)
    with path.open("rb") as f:
        f.seek(offset)
        limit = (end if end is not None else path.stat().st_size) - offset
        read = 0
        while read < limit:
            line = f.readline(min(MAX_LINE_BYTES + 1, limit - read))
            if not line:
                break
            read += len(line)
            if not line.endswith(b"\n"):
                if len(line) > MAX_LINE_BYTES:  # too long: skip to its end
                    while line and not line.endswith(b"\n"):
                        line = f.readline(MAX_LINE_BYTES)
                        read += len(line)
                    out.skipped += 1
                    continue
                read -= len(line)  # a line still being written: leave it for the next read
                break
            try:
                ev = json.loads(line)
            except ValueError:
                out.skipped += 1
                continue
            if isinstance(ev, dict):
                out.events.append(ev)
            else:
                out.skipped += 1
        out.end_offset = offset + read
    return out


def agent(ev: dict[str, Any]) -> str:
    """The program name of an event's User-Agent (`kubelet/v1.37.2 (linux/amd64) …` → kubelet)."""
    return str(ev.get("userAgent") or "").split("/", 1)[0].split(" ", 1)[0] or "-"


def resource(ev: dict[str, Any]) -> str:
    """`resource[/subresource]` of an event, or its non-resource URL."""
    ref = ev.get("objectRef") or {}
    if not ref.get("resource"):
        return str(ev.get("requestURI") or "-").split("?", 1)[0]
    sub = ref.get("subresource")
    return f"{ref['resource']}/{sub}" if sub else str(ref["resource"])


def requests(events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """One event per request (the first seen of each auditID)."""
    seen: set[str] = set()
    for ev in events:
        aid = str(ev.get("auditID") or "")
        if aid and aid in seen:
            continue
        seen.add(aid)
        yield ev


def by_client(events: Iterable[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """Requests per (user agent program, username)."""
    return Counter(
        (agent(ev), str((ev.get("user") or {}).get("username") or "-")) for ev in requests(events)
    )


def count(
    events: Iterable[dict[str, Any]], *, user_agent: str | None = None, username: str | None = None
) -> Counter[tuple[str, str, int]]:
    """Requests per (verb, resource, response code), only those of `user_agent` (program name)
    and `username` when given."""
    out: Counter[tuple[str, str, int]] = Counter()
    for ev in requests(events):
        if user_agent is not None and agent(ev) != user_agent:
            continue
        if username is not None and (ev.get("user") or {}).get("username") != username:
            continue
        code = int((ev.get("responseStatus") or {}).get("code") or 0)
        out[(str(ev.get("verb") or "-"), resource(ev), code)] += 1
    return out
