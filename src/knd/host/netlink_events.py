"""Netlink change notifications: link, address and route events, delivered as a callback.

`NetlinkEvents(callback, netns=None)` subscribes (RTMGRP_LINK, IPv4/IPv6 address and route
groups) and runs a daemon thread that drains each burst of messages and calls `callback()` once
per burst; the callback must be cheap and non-blocking (the rescan loop coalesces). `stop()`
ends the thread within `poll_s`. If subscribing fails, `start()` raises `NetlinkError` and the
caller falls back to periodic polling.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable
from typing import Any

from pyroute2 import IPRoute

from knd.host.netlink import NetlinkError
from knd.host.rtnl import enter_netns

log = logging.getLogger(__name__)

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE
)


class NetlinkEvents:
    def __init__(self, callback: Callable[[], None], netns: str | None = None, poll_s: float = 0.2):
        self._callback = callback
        self._netns = netns
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ipr: Any = None
        self.events = 0

    def start(self) -> None:
        """Subscribe (in the thread, which first enters `netns` if given) and start reading."""
        subscribed = threading.Event()
        errors: list[Exception] = []
        self._thread = threading.Thread(
            target=self._run, args=(subscribed, errors), name="netlink-events", daemon=True
        )
        self._thread.start()
        subscribed.wait(10)
        if errors or self._ipr is None:
            cause = errors[0] if errors else None
            raise NetlinkError(f"netlink subscription failed: {cause}") from cause

    def _subscribe(self) -> Any:
        if self._netns:
            enter_netns(self._netns)  # only this thread moves; it never returns
        ipr = IPRoute()
        ipr.bind(groups=GROUPS)
        return ipr

    def _run(self, subscribed: threading.Event, errors: list[Exception]) -> None:
        try:
            self._ipr = self._subscribe()
        except Exception as exc:
            errors.append(exc)
            return
        finally:
            subscribed.set()
        ipr = self._ipr
        fd = ipr.fileno()
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], self._poll_s)
                if not ready:
                    continue
                while ready:
                    msgs = ipr.get()
                    self.events += len(msgs)
                    ready, _, _ = select.select([fd], [], [], 0)
            except Exception as exc:  # socket closed or overrun: still trigger a rescan
                if self._stop.is_set():
                    return
                log.warning("netlink event read failed: %s", exc)
            self._callback()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._ipr is not None:
            self._ipr.close()
