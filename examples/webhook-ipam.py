#!/usr/bin/env python3
"""A whereabouts-style provider webhook for knd and DraNet (`--profile-provider=webhook`).

Profiles are named ranges given on the command line; each claim's device gets the next free
address of its profile's range, kept in a JSON file keyed by (claim UID, device), so a retried
`GetProfileConfig` answers the same address and `ReleaseProfileConfig` frees it. Like whereabouts,
the allocation table is the source of truth; unlike it, the table is node-local (one file).

    python3 examples/webhook-ipam.py --listen 127.0.0.1:8080 --state /var/lib/knd/hook.json \
        --range storage-net=10.50.0.0/24
    knd driver --profile-provider=webhook --webhook-url=http://127.0.0.1:8080

Protocol: GET /health → {"cloudProvider": false, "profileProvider": true};
POST /GetProfileConfig {"device", "claim_uid", "config"} → {"interface": {"addresses": [...]}}
(404 unknown profile, 409 range full); POST /ReleaseProfileConfig → 200 (idempotent).
Standard library only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 1 << 20
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Table:
    """(claim UID, device) → address per profile, persisted atomically after each change."""

    def __init__(self, path: Path, ranges: dict[str, Network]) -> None:
        self.path = path
        self.ranges = ranges
        self.lock = threading.Lock()
        self.owners: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.owners, sort_keys=True))
        os.replace(tmp, self.path)

    def allocate(self, profile: str, owner: str) -> str:
        net = self.ranges[profile]
        with self.lock:
            key = f"{profile}|{owner}"
            if key in self.owners:
                return self.owners[key]
            taken = set(self.owners.values())
            for host in net.hosts():
                cidr = f"{host}/{net.prefixlen}"
                if cidr not in taken:
                    self.owners[key] = cidr
                    self._save()
                    return cidr
        raise LookupError(f"range {net} of profile {profile} is full")

    def release(self, profile: str, owner: str) -> None:
        with self.lock:
            if self.owners.pop(f"{profile}|{owner}", None) is not None:
                self._save()


def handler(table: Table) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"cloudProvider": False, "profileProvider": True})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self._send(400, {"error": "body missing or too large"})
                return
            try:
                req = json.loads(self.rfile.read(length))
                profile = str(req["config"]["profile"])
                owner = f"{req['claim_uid']}|{req['device']['name']}"
            except (ValueError, KeyError, TypeError) as exc:
                self._send(400, {"error": f"malformed request: {exc}"})
                return
            if profile not in table.ranges:
                self._send(404, {"error": f"unknown profile {profile!r}"})
            elif self.path == "/GetProfileConfig":
                try:
                    address = table.allocate(profile, owner)
                except LookupError as exc:
                    self._send(409, {"error": str(exc)})
                    return
                self._send(200, {"interface": {"addresses": [address]}})
            elif self.path == "/ReleaseProfileConfig":
                table.release(profile, owner)
                self._send(200, {})
            else:
                self._send(501, {"error": "not implemented"})

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT")
    ap.add_argument("--state", type=Path, required=True, help="allocation table (JSON)")
    ap.add_argument("--range", action="append", default=[], help="PROFILE=CIDR (repeatable)")
    args = ap.parse_args()
    ranges: dict[str, Network] = {}
    for item in args.range:
        name, _, cidr = item.partition("=")
        ranges[name] = ipaddress.ip_network(cidr, strict=True)
    host, _, port = args.listen.rpartition(":")
    table = Table(args.state, ranges)
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), handler(table))
    print(f"listening on {args.listen}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
