"""The MAC in a move-back or restore request is sent only when it must change: ipvlan (which
shares its lower device's MAC) refuses any IFLA_ADDRESS, and the whole request with it (found
on a real kernel by tests/vm/test_subinterfaces.py)."""

from __future__ import annotations

import pytest

from knd.netns.rawlink import LinkFacts
from knd.netns.restore import mac_change

pytestmark = pytest.mark.unit


def test_mac_sent_only_when_it_differs() -> None:
    link = LinkFacts(index=7, name="net1", mac="02:aa:bb:cc:dd:ee")
    assert mac_change(link, "02:AA:BB:CC:DD:EE") is None
    assert mac_change(link, "02:00:00:00:00:01") == "02:00:00:00:00:01"
    assert mac_change(link, None) is None
    assert mac_change(None, "02:00:00:00:00:01") == "02:00:00:00:00:01"  # unknown: send it
    assert mac_change(LinkFacts(7, "net1", None), "02:00:00:00:00:01") == "02:00:00:00:00:01"
