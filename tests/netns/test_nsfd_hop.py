"""knd.netns.nsfd.open_in: a socket opened inside another netns by the hop thread, which goes
back to the host netns after every call (and ends, to be replaced, if it ever cannot); and
what a detach does when the hop thread cannot enter the pod."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator

import pytest

from knd.netns import nsfd
from knd.netns.attach import attach
from knd.netns.detach import detach
from knd.netns.errors import NetnsOpenError
from knd.netns.rawlink import LinkSocket

from .conftest import Lab, link_absent
from .helpers import plan_for

pytestmark = pytest.mark.netns


def _own_netns() -> str:
    """The netns of the calling thread (its inode as the kernel names it)."""
    return os.readlink("/proc/thread-self/ns/net")


def _hop_thread_netns() -> str:
    """Where the hop thread stands between calls (entering the host netns is a no-op there)."""
    host_fd = nsfd.open_host_netns()
    try:
        return nsfd.open_in(host_fd, _own_netns)
    finally:
        os.close(host_fd)


@pytest.fixture
def pod_fd(lab: Lab) -> Iterator[tuple[int, str]]:
    """A fresh netns with one veth NIC in it: (fd, the NIC's name)."""
    nic = lab.nic()
    pod, path = lab.netns()
    subprocess.run(["ip", "link", "set", nic.name, "netns", pod], check=True)
    fd = nsfd.open_netns(path)
    try:
        yield fd, nic.name
    finally:
        os.close(fd)


def test_the_socket_lives_in_the_pod_and_no_thread_stays_there(pod_fd: tuple[int, str]) -> None:
    fd, nic = pod_fd
    host = _own_netns()
    pod = f"net:[{nsfd.netns_inode(fd)}]"
    assert pod != host
    sock = nsfd.open_in(fd, LinkSocket)
    try:
        assert sock.index_of(nic) is not None  # sees the pod's NIC ...
        assert sock.index_of("lo") is not None
    finally:
        sock.close()
    assert LinkSocket().index_of(nic) is None  # ... which the host does not have
    # The factory ran in the pod; the hop thread and the caller are in the host afterwards.
    assert nsfd.open_in(fd, _own_netns) == pod
    assert _own_netns() == host
    assert _hop_thread_netns() == host


def test_a_failing_factory_or_fd_leaves_the_hop_thread_in_the_host(
    pod_fd: tuple[int, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    fd, _ = pod_fd
    host = _own_netns()

    def boom() -> None:
        raise ValueError("factory failed")

    with pytest.raises(ValueError, match="factory failed"):
        nsfd.open_in(fd, boom)
    not_a_netns = os.open(tmp_path_factory.mktemp("hop"), os.O_RDONLY)
    try:
        with pytest.raises(NetnsOpenError, match="setns failed"):
            nsfd.open_in(not_a_netns, _own_netns)
    finally:
        os.close(not_a_netns)
    assert _hop_thread_netns() == host


def test_a_hop_thread_that_cannot_go_home_ends_and_is_replaced(
    pod_fd: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stranded thread still answers its caller, refuses what was queued behind it (never
    lost, never served from the pod's netns), and the next request gets a fresh thread."""
    fd, _ = pod_fd
    pod = f"net:[{nsfd.netns_inode(fd)}]"
    real_setns = nsfd.setns
    calls: list[int] = []
    stranded: list[threading.Thread] = []
    queued = threading.Event()

    def setns_home_fails(target: int) -> None:
        calls.append(target)
        if len(calls) == 2:  # the way back of the first request
            stranded.append(threading.current_thread())
            assert queued.wait(5)
            raise NetnsOpenError("setns failed: injected")
        real_setns(target)

    hopper = nsfd._Hopper()
    monkeypatch.setattr(nsfd, "setns", setns_home_fails)
    first = hopper.submit(fd, _own_netns)
    behind = hopper.submit(fd, _own_netns)  # queued while the first one is away
    queued.set()
    assert first.result() == pod  # the result still reaches the caller
    with pytest.raises(NetnsOpenError, match="could not return to the host netns"):
        behind.result()
    (thread,) = stranded
    thread.join(5)
    assert not thread.is_alive()  # it ended instead of serving from the pod's netns
    assert hopper.run(fd, _own_netns) == pod
    assert hopper._thread is not thread and hopper._thread is not None  # a fresh thread
    assert hopper._thread.is_alive()
    host_fd = nsfd.open_host_netns()
    try:
        assert hopper.run(host_fd, _own_netns) == _own_netns()  # and it stands in the host
    finally:
        os.close(host_fd)


def test_a_background_request_overlaps_the_callers_work(pod_fd: tuple[int, str]) -> None:
    """open_in_background returns before the socket exists; result() hands it over, and an
    exception inside the netns reaches result(), on every call."""
    fd, nic = pod_fd
    pending = nsfd.open_in_background(fd, LinkSocket)
    sock = pending.result()
    try:
        assert sock.index_of(nic) is not None
        assert pending.result() is sock
    finally:
        sock.close()

    def boom() -> None:
        raise ValueError("factory failed")

    failed = nsfd.open_in_background(fd, boom)
    for _ in range(2):
        with pytest.raises(ValueError, match="factory failed"):
            failed.result()


def test_detach_with_a_pod_the_hop_thread_cannot_enter_reports_and_can_retry(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod's socket is collected when the detach session opens: a pod netns the hop thread
    cannot enter sends every device down the host-only path (here: `gone`, as the NIC is
    still in the pod), never a traceback; the next detach, with the pod reachable, brings the
    NIC home."""
    nic = lab.nic()
    plan = plan_for(nic, {"interface": {"name": "net1"}})
    pod, path = lab.netns()
    attach([plan], path)
    host_fd = nsfd.open_host_netns()
    host_ino = nsfd.netns_inode(host_fd)
    os.close(host_fd)
    real_setns = nsfd.setns

    def only_home(target: int) -> None:
        if nsfd.netns_inode(target) != host_ino:
            raise NetnsOpenError("setns failed: injected")
        real_setns(target)

    monkeypatch.setattr(nsfd, "setns", only_home)
    (first,) = detach([plan], path)
    assert first.outcome == "gone" and not first.home
    assert not link_absent(pod, "net1")  # untouched in the pod
    monkeypatch.setattr(nsfd, "setns", real_setns)
    (second,) = detach([plan], path)
    assert second.outcome == "returned" and second.home, second
    assert not link_absent(None, nic.name)
