"""`knd driver` as a real process against the API server emulator and the kubelet emulator:
probes, registration, publishing, metrics, and a clean SIGTERM shutdown that leaves no socket."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pyroute2 import IPRoute

from knd.lab.apiserver import ApiServerEmulator
from knd.lab.kubelet import KubeletEmulator
from tests.netns.conftest import unique

KND = str(Path(sys.executable).parent / "knd")


def get(port: int, path: str) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


def wait(cond, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    return cond()


def test_daemon_registers_publishes_and_stops_cleanly(tmp_path: Path) -> None:
    nic = unique("kdm")
    with IPRoute() as ipr:
        ipr.link("add", ifname=nic, kind="veth", peer={"ifname": nic + "p"})
    srv = ApiServerEmulator().start()
    srv.add_node("node-d")
    kroot = tmp_path / "kubelet"
    kroot.mkdir()
    port = 19200 + int(time.time()) % 500
    proc = subprocess.Popen(
        [
            KND,
            "driver",
            "--apiserver",
            srv.url,
            "--hostname-override",
            "node-d",
            "--kubelet-root-dir",
            str(kroot),
            "--state-path",
            str(tmp_path / "s" / "state.db"),
            "--bind-address",
            f"127.0.0.1:{port}",
            "--nri-socket",
            str(tmp_path / "nri.sock"),
            "--filter",
            # Only this test's NIC: other veths on the host (parallel jobs) must not change
            # what this test sees.
            f'"ifName" in device.attributes["dra.net"] && '
            f'device.attributes["dra.net"].ifName == "{nic}"',
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    kubelet = KubeletEmulator(kroot)
    try:
        assert wait(lambda: get(port, "/healthz")[0] == 503), "probe server is up first"

        def published() -> list[str]:
            return [
                d["attributes"]["dra.net/ifName"]["string"]
                for s in srv.slices()
                for d in s["spec"]["devices"]
            ]

        names = wait(lambda: nic in published() and published())
        assert names == [nic]
        (slc,) = [s for s in srv.slices() if s["spec"]["nodeName"] == "node-d"]
        assert slc["metadata"]["ownerReferences"][0]["kind"] == "Node"
        kubelet.start()
        assert kubelet.wait_registered("dra.net").version == "v1.DRAPlugin"
        assert wait(lambda: get(port, "/healthz") == (200, "ok\n"))
        code, body = get(port, "/readyz")
        assert code == 503 and "nri_connected" in body  # no runtime socket here
        metrics = get(port, "/metrics")[1]
        assert "knd_driver_published_devices " in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert list((kroot / "plugins_registry").iterdir()) == []
        assert not (kroot / "plugins" / "dra.net" / "dra.sock").exists()
        state = tmp_path / "s" / "state.db"
        assert state.stat().st_mode & 0o077 == 0, "state file is root-only"
    finally:
        if proc.poll() is None:
            proc.kill()
        kubelet.stop()
        srv.stop()
        with IPRoute() as ipr:
            for idx in ipr.link_lookup(ifname=nic):
                ipr.link("del", index=idx)


def test_bad_filter_fails_start_up_with_the_compiler_message(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            KND,
            "driver",
            "--apiserver",
            "http://127.0.0.1:9",
            "--hostname-override",
            "n",
            "--kubelet-root-dir",
            str(tmp_path),
            "--state-path",
            str(tmp_path / "s.db"),
            "--filter",
            "device.attributes[",
            "--bind-address",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2  # a bad flag, before anything starts
    assert "--filter: invalid filter expression" in done.stderr
