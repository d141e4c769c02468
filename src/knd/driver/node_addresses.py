"""The node's own addresses (Node `status.addresses` IPs), for refusing the node's interface.

`get()` (prepare, 45 s budget) re-reads the Node when the cached value is older than `ttl_s`;
`cached()` (NRI hooks, 2 s budget) never calls the API server. A failed read keeps the last
value (empty at first) and is logged; the default-route check works without it.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def addresses_of(node: dict[str, Any]) -> frozenset[str]:
    """The IP addresses in a Node's `status.addresses` (host names skipped)."""
    out = set()
    for entry in (node.get("status") or {}).get("addresses") or []:
        value = entry.get("address") if isinstance(entry, dict) else None
        if not isinstance(value, str):
            continue
        try:
            out.add(str(ipaddress.ip_address(value)))
        except ValueError:
            continue
    return frozenset(out)


class NodeAddresses:
    def __init__(self, read_node: Callable[[], dict[str, Any]], ttl_s: float = 60.0) -> None:
        self._read = read_node
        self._ttl = ttl_s
        self._value: frozenset[str] = frozenset()
        self._at: float | None = None
        self._lock = threading.Lock()

    def get(self) -> frozenset[str]:
        with self._lock:
            if self._at is not None and time.monotonic() - self._at < self._ttl:
                return self._value
            try:
                self._value = addresses_of(self._read())
            except Exception as exc:
                log.warning("cannot read the node's addresses: %s", exc)
            self._at = time.monotonic()
            return self._value

    def cached(self) -> frozenset[str]:
        return self._value
