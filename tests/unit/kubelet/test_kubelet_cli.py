"""`knd kubelet-plugin` parses the documented flags with their defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from knd.cli import kubelet_plugin_cmd
from knd.driver import kubelet_main

pytestmark = pytest.mark.unit


def test_flags_and_defaults() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    kubelet_plugin_cmd.register(sub)
    args = parser.parse_args(["kubelet-plugin"])
    assert args.kubelet_root_dir == Path("/var/lib/kubelet")
    assert args.driver_name == "dra.net"
    assert args.db_path == Path("/var/lib/knd/state.db")
    assert args.handler is kubelet_main.run
    args = parser.parse_args(
        ["kubelet-plugin", "--kubelet-root-dir", "/srv/kubelet", "--health-netdev", "n/eth1=eth1"]
    )
    assert args.kubelet_root_dir == Path("/srv/kubelet")
    assert kubelet_main._targets(args.health_netdev)[0].ifname == "eth1"
