"""Restart: prepare, SIGKILL the plugin process, start it again: the plan is still there, the
stale sockets are replaced, kubelet re-registers it and unprepare works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubelet_claims import DRIVER, claim, ref

from knd.driver.store import StateStore
from knd.lab.apiserver import ApiServerEmulator
from knd.lab.kubelet import KubeletEmulator

pytestmark = pytest.mark.unit


def _start(kroot: Path, db: Path, url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "knd.driver.kubelet_main",
            "--driver-name",
            DRIVER,
            "--kubelet-root-dir",
            str(kroot),
            "--db-path",
            str(db),
            "--apiserver",
            url,
            "--node-name",
            "node-a",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY "), f"plugin did not start: {line!r}"
    return proc


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
            p.wait(10)


def test_plan_survives_sigkill_and_unprepare_works(
    tmp_path: Path, kroot: Path, apiserver: ApiServerEmulator, procs: list[subprocess.Popen[str]]
) -> None:
    db = tmp_path / "state" / "knd.db"
    obj = apiserver.put_claim(claim("survivor", [("nic", DRIVER, "eth1"), ("nic", DRIVER, "eth2")]))
    uid = obj["metadata"]["uid"]
    procs.append(_start(kroot, db, apiserver.url))
    emu = KubeletEmulator(kroot).start()
    try:
        first_reg = emu.wait_registered(DRIVER)
        answer = emu.prepare(DRIVER, [ref(obj)])
        assert answer.claims[uid].error == ""
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(10)
        assert first_reg.socket.exists()  # a crash leaves the socket behind
        emu.forget(DRIVER)
        apiserver.delete_claim("default", "survivor")  # and the claim may be gone by now

        procs.append(_start(kroot, db, apiserver.url))
        emu.wait_registered(DRIVER)
        store = StateStore(db)
        try:
            assert [p.device for p in store.plans_for_claim(uid)] == ["eth1", "eth2"]
        finally:
            store.close()
        # the repeat answer comes from the store: the claim is no longer in the API server
        assert emu.prepare(DRIVER, [ref(obj)]) == answer
        assert emu.unprepare(DRIVER, [ref(obj)]).claims[uid].error == ""
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(10) == 0
        assert not first_reg.socket.exists()  # clean exit removes our sockets
        store = StateStore(db)
        try:
            assert store.claim(uid) is None and store.plans_for_claim(uid) == []
        finally:
            store.close()
    finally:
        emu.stop()
