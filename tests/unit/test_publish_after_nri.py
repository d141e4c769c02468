"""The first publish waits for NRI's first Synchronize (knd.driver.daemon.Daemon._await_nri):
devices are not offered before the runtime can reach knd's hooks, bounded, and only where the
runtime has an NRI socket."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import pytest

import knd.driver.daemon as daemon_mod
from knd.driver.daemon import Daemon
from knd.driver.options import parse
from knd.kube.connection import connect_url
from knd.nri.handler import NullHandler
from knd.nri.plugin import NriPlugin, PluginConfig
from tests.unit.fake_runtime import FakeRuntime, rt

pytestmark = pytest.mark.unit
__all__ = ["rt"]  # the fixture, shared from tests.unit.fake_runtime


def _daemon(nri_socket: Path) -> Daemon:
    opts = parse(
        ["--bind-address", "127.0.0.1:0", "--nri-socket", str(nri_socket)],
        environ={"NODE_NAME": "n1"},
    )
    return Daemon(opts, connect_url("http://127.0.0.1:1"))


def _plugin(path: Path) -> NriPlugin:
    cfg = PluginConfig(
        socket_path=str(path), backoff_initial_s=0.01, backoff_max_s=0.05, use_env_socket=False
    )
    return NriPlugin(NullHandler(), cfg)


def test_publishing_waits_for_the_first_synchronize(rt: FakeRuntime) -> None:
    d = _daemon(Path(rt.path))
    d.nri = _plugin(Path(rt.path))
    d.nri.start()
    done = threading.Event()

    def publish_step() -> None:
        d._await_nri()
        done.set()

    waiter = threading.Thread(target=publish_step, daemon=True)
    try:
        waiter.start()
        assert not done.wait(0.3), "published before the runtime could reach knd's hooks"
        rt.handshake()
        assert done.wait(5), "still waiting after Synchronize"
    finally:
        d.nri.stop()


def test_the_wait_is_bounded_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "nri.sock"
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a runtime that never answers
    mute.bind(str(path))
    mute.listen(1)
    monkeypatch.setattr(daemon_mod, "NRI_BEFORE_PUBLISH_S", 0.3)
    d = _daemon(path)
    d.nri = _plugin(path)
    d.nri.start()
    try:
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING):
            d._await_nri()
        assert 0.3 <= time.monotonic() - t0 < 5
        lines = [r.getMessage() for r in caplog.records]
        (line,) = [text for text in lines if "publishing anyway" in text]
        assert "NRI is not connected after 0.3 s" in line
    finally:
        d.nri.stop()
        mute.close()


def test_no_wait_without_a_runtime_socket(tmp_path: Path) -> None:
    d = _daemon(tmp_path / "absent.sock")
    d.nri = _plugin(tmp_path / "absent.sock")
    t0 = time.monotonic()
    d._await_nri()
    assert time.monotonic() - t0 < 0.2
