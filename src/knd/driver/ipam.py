"""knd's node-local IPAM: addresses for claims from named ranges, never handed out twice.

Ranges: `CIDR` (every host address: IPv4 skips the network and broadcast addresses of prefixes
shorter than /31) or `CIDR:FIRST-LAST` (inclusive, inside the CIDR). A profile is a name and a
list of ranges; `parse_ranges("a=10.0.0.0/24;b=10.1.0.0/24:10.1.0.10-10.1.0.20,fd00::/120")`.

`LocalIpam` keeps its allocations in its own SQLite file (next to the state store), so:
* an address belongs to at most one owner (a claim's device) at a time, across restarts;
* asking again for the same owner returns the same addresses (kubelet retries prepare);
* the next address is taken after the last one handed out in that range (a cursor, persisted),
  so a released address is not reused until the range wraps around: a stale peer cache or an
  old pod's TCP state rarely meets a new owner;
* at most one address per IP family and range list.
`release(owner)` frees the owner's addresses (idempotent). Every call is one short transaction.
"""

from __future__ import annotations

import ipaddress
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_PROFILES = 256
MAX_RANGES_PER_PROFILE = 16
_SCHEMA = """
CREATE TABLE IF NOT EXISTS allocations (
    address TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    range_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS allocations_owner ON allocations(owner);
CREATE TABLE IF NOT EXISTS cursors (range_key TEXT PRIMARY KEY, last TEXT NOT NULL);
"""


class IpamError(ValueError):
    """A range is malformed or exhausted (the message names it)."""


@dataclass(frozen=True, slots=True)
class IpRange:
    network: IPNetwork
    first: IPAddress
    last: IPAddress

    @property
    def key(self) -> str:
        return f"{self.network}:{self.first}-{self.last}"

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def cidr(self, address: IPAddress) -> str:
        return f"{address}/{self.network.prefixlen}"


def parse_range(text: str) -> IpRange:
    """One range (see the module docstring); IpamError naming the problem."""
    text = text.strip()
    slash = text.find("/")
    sep = text.find(":", slash) if slash >= 0 else -1  # the ':' after the prefix length
    cidr, bounds = (text[:sep], text[sep + 1 :]) if sep >= 0 else (text, "")
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise IpamError(f"{text!r}: {exc}") from None
    if bounds:
        lo, dash, hi = bounds.partition("-")
        if not dash:
            raise IpamError(f"{text!r}: the bounds after the CIDR must be FIRST-LAST")
        try:
            first, last = ipaddress.ip_address(lo.strip()), ipaddress.ip_address(hi.strip())
        except ValueError as exc:
            raise IpamError(f"{text!r}: {exc}") from None
        if first not in net or last not in net or int(first) > int(last):
            raise IpamError(f"{text!r}: FIRST-LAST must be an ordered range inside {net}")
    else:
        first, last = net.network_address, net.broadcast_address
        if net.version == 4 and net.prefixlen < 31:
            first, last = first + 1, last - 1
        elif net.version == 6 and net.prefixlen < 127:
            first = first + 1  # the subnet-router anycast address
    return IpRange(net, first, last)


def range_of(subnet: str, start: str | None = None, end: str | None = None) -> IpRange:
    """A range from the claim schema's `{subnet, start, end}` (either bound may be unset)."""
    full = parse_range(subnet)
    first = ipaddress.ip_address(start) if start else full.first
    last = ipaddress.ip_address(end) if end else full.last
    if first not in full.network or last not in full.network or int(first) > int(last):
        raise IpamError(f"{subnet} {start or ''}-{end or ''}: not an ordered range in {subnet}")
    return IpRange(full.network, first, last)


def parse_ranges(text: str) -> dict[str, list[IpRange]]:
    """`NAME=RANGE[,RANGE...][;NAME=...]` → profiles; "" → {}."""
    profiles: dict[str, list[IpRange]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, sep, ranges = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise IpamError(f"{part!r}: expected NAME=RANGE[,RANGE...]")
        profiles[name] = parse_range_list(ranges, name)
    if len(profiles) > MAX_PROFILES:
        raise IpamError(f"more than {MAX_PROFILES} profiles")
    return profiles


def parse_range_list(text: str, label: str) -> list[IpRange]:
    items = [r for r in (x.strip() for x in text.split(",")) if r]
    if not items:
        raise IpamError(f"profile {label!r} has no ranges")
    if len(items) > MAX_RANGES_PER_PROFILE:
        raise IpamError(f"profile {label!r} has more than {MAX_RANGES_PER_PROFILE} ranges")
    return [parse_range(r) for r in items]


class LocalIpam:
    """Persistent allocator (see the module docstring). Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        os.chmod(path, 0o600)  # like the state file: node-local state, root only
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def addresses(self, owner: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT address FROM allocations WHERE owner = ? ORDER BY address", (owner,)
            ).fetchall()
        return [r[0] for r in rows]

    def allocate(self, owner: str, ranges: Sequence[IpRange]) -> list[str]:
        """One address (as `ip/prefix`) per IP family from `ranges`, for `owner`.

        Idempotent per owner. Raises IpamError when a family's ranges are all exhausted."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                existing = dict(
                    db.execute(
                        "SELECT range_key, address FROM allocations WHERE owner = ?", (owner,)
                    ).fetchall()
                )
                out: list[str] = []
                families_done: set[int] = set()
                for r in ranges:
                    if r.key in existing:
                        out.append(r.cidr(ipaddress.ip_address(existing[r.key])))
                        families_done.add(r.network.version)
                for family in sorted({r.network.version for r in ranges} - families_done):
                    candidates = [r for r in ranges if r.network.version == family]
                    out.append(self._take(owner, candidates))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return out

    def _take(self, owner: str, ranges: Sequence[IpRange]) -> str:
        for r in ranges:
            row = self._db.execute(
                "SELECT last FROM cursors WHERE range_key = ?", (r.key,)
            ).fetchone()
            start = int(ipaddress.ip_address(row[0])) + 1 if row else int(r.first)
            taken = {
                int(ipaddress.ip_address(a))
                for (a,) in self._db.execute(
                    "SELECT address FROM allocations WHERE range_key = ?", (r.key,)
                )
            }
            if len(taken) >= r.size:
                continue
            lo, hi = int(r.first), int(r.last)
            value = start if lo <= start <= hi else lo
            for _ in range(r.size):
                if value not in taken:
                    address = ipaddress.ip_address(value)
                    self._db.execute(
                        "INSERT INTO allocations(address, owner, range_key) VALUES (?, ?, ?)",
                        (str(address), owner, r.key),
                    )
                    self._db.execute(
                        "INSERT INTO cursors(range_key, last) VALUES (?, ?) "
                        "ON CONFLICT(range_key) DO UPDATE SET last = excluded.last",
                        (r.key, str(address)),
                    )
                    return r.cidr(address)
                value = value + 1 if value < hi else lo
        names = ", ".join(r.key for r in ranges)
        raise IpamError(f"no free address left in {names}")

    def release(self, owner: str) -> list[str]:
        """Free the owner's addresses; returns them (empty when it held none)."""
        with self._lock:
            rows = self._db.execute(
                "DELETE FROM allocations WHERE owner = ? RETURNING address", (owner,)
            ).fetchall()
        return [r[0] for r in rows]

    def owners(self) -> Mapping[str, list[str]]:
        with self._lock:
            rows = self._db.execute("SELECT owner, address FROM allocations").fetchall()
        out: dict[str, list[str]] = {}
        for owner, address in rows:
            out.setdefault(owner, []).append(address)
        return out
