"""knd's node-local IPAM: range syntax, one owner per address across restarts, idempotent
retries, cursor order (no early reuse), exhaustion, release, concurrency; LocalProfiles with a
ConfigMap source; the provider options."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from knd.driver import options
from knd.driver.ipam import IpamError, LocalIpam, parse_range, parse_ranges
from knd.driver.profiles import LocalProfiles, ProfileError

pytestmark = pytest.mark.unit


def test_range_syntax() -> None:
    r = parse_range("10.0.0.0/24")
    assert (str(r.first), str(r.last), r.size) == ("10.0.0.1", "10.0.0.254", 254)
    r = parse_range("10.0.0.0/24:10.0.0.10-10.0.0.12")
    assert (str(r.first), str(r.last)) == ("10.0.0.10", "10.0.0.12")
    r = parse_range("fd00::/120:fd00::5-fd00::9")
    assert (str(r.first), str(r.last), r.network.prefixlen) == ("fd00::5", "fd00::9", 120)
    assert parse_range("10.0.0.4/31").size == 2
    profiles = parse_ranges("blue=10.0.0.0/24, fd00::/64 ; red=192.168.5.0/28")
    assert sorted(profiles) == ["blue", "red"] and len(profiles["blue"]) == 2
    assert parse_ranges("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.1/24", "has host bits set"),
        ("10.0.0.0/24:10.0.1.1-10.0.1.5", "ordered range inside 10.0.0.0/24"),
        ("10.0.0.0/24:10.0.0.9-10.0.0.3", "ordered range inside"),
        ("10.0.0.0/24:10.0.0.9", "must be FIRST-LAST"),
        ("banana", "does not appear to be an IPv4 or IPv6 network"),
    ],
)
def test_range_errors_name_the_range(text: str, message: str) -> None:
    with pytest.raises(IpamError, match=message) as info:
        parse_range(text)
    assert repr(text) in str(info.value)


def test_profile_list_errors() -> None:
    with pytest.raises(IpamError, match="expected NAME=RANGE"):
        parse_ranges("10.0.0.0/24")
    with pytest.raises(IpamError, match="profile 'blue' has no ranges"):
        parse_ranges("blue=")


def test_one_owner_per_address_idempotent_and_dual_stack(tmp_path: Path) -> None:
    ipam = LocalIpam(tmp_path / "ipam.db")
    ranges = parse_ranges("p=10.0.0.0/29,fd00::/125")["p"]
    a = ipam.allocate("claim-a/dev0", ranges)
    assert a == ["10.0.0.1/29", "fd00::1/125"]
    assert ipam.allocate("claim-a/dev0", ranges) == a  # kubelet retried prepare
    b = ipam.allocate("claim-b/dev0", ranges)
    assert b == ["10.0.0.2/29", "fd00::2/125"]
    ipam.close()


def test_never_the_same_address_twice_across_restarts_and_releases(tmp_path: Path) -> None:
    path = tmp_path / "ipam.db"
    ranges = parse_ranges("p=10.0.0.0/29")["p"]  # 6 host addresses
    ipam = LocalIpam(path)
    first = ipam.allocate("c1/d", ranges)
    ipam.close()
    ipam = LocalIpam(path)  # the daemon restarted
    assert ipam.allocate("c1/d", ranges) == first  # the owner keeps its address
    second = ipam.allocate("c2/d", ranges)
    assert second != first
    assert ipam.release("c1/d") == ["10.0.0.1"]
    assert ipam.release("c1/d") == []  # idempotent
    # the released address is not handed out again until the range wraps around
    seen = [ipam.allocate(f"n{i}/d", ranges)[0] for i in range(4)]
    assert seen == ["10.0.0.3/29", "10.0.0.4/29", "10.0.0.5/29", "10.0.0.6/29"]
    assert ipam.allocate("wrap/d", ranges) == ["10.0.0.1/29"]
    with pytest.raises(IpamError, match=r"no free address left in 10\.0\.0\.0/29"):
        ipam.allocate("full/d", ranges)
    owners = ipam.owners()
    addresses = [a for values in owners.values() for a in values]
    assert len(addresses) == len(set(addresses)) == 6


def test_concurrent_allocations_never_collide(tmp_path: Path) -> None:
    ipam = LocalIpam(tmp_path / "ipam.db")
    ranges = parse_ranges("p=10.1.0.0/24")["p"]
    got: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(10):
            addr = ipam.allocate(f"w{n}-{i}/d", ranges)[0]
            with lock:
                got.append(addr)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 80


def test_local_profiles_from_flag_and_configmap(tmp_path: Path) -> None:
    ipam = LocalIpam(tmp_path / "ipam.db")
    reads: list[int] = []
    answers: list[object] = [{"green": "172.16.0.0/30", "bad": "not-a-range"}]

    def configmap() -> dict[str, str]:
        reads.append(1)
        answer = answers[-1]
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, dict)
        return answer

    prof = LocalProfiles(ipam, parse_ranges("blue=10.0.0.0/30"), configmap)
    blue = prof.resolve("uid-1", "eth1", "blue")
    assert blue.interface is not None and blue.interface.addresses == ["10.0.0.1/30"]
    green = prof.resolve("uid-1", "eth2", "green")
    assert green.interface is not None and green.interface.addresses == ["172.16.0.1/30"]
    answers.append(RuntimeError("apiserver down"))
    prof._cache = (0.0, prof._cache[1]) if prof._cache else None  # expire the cache
    again = prof.resolve("uid-2", "eth2", "green")  # outage: the last good ranges are used
    assert again.interface is not None and again.interface.addresses == ["172.16.0.2/30"]
    with pytest.raises(ProfileError, match="profile 'bad' is not a node-local IPAM profile"):
        prof.resolve("uid-3", "eth3", "bad")
    with pytest.raises(ProfileError, match="no free address left"):
        prof.resolve("uid-4", "eth4", "blue")
        prof.resolve("uid-5", "eth5", "blue")
    prof.release("uid-1", "eth1", "blue")
    assert ipam.addresses("uid-1/eth1") == []


def test_provider_options_parse_and_fail_with_the_flag_name() -> None:
    o = options.parse(
        [
            "--cloud-provider-hint=gce",
            "--profile-provider=local",
            "--ipam-ranges=blue=10.0.0.0/24",
            "--ipam-configmap=kube-system/knd-ipam",
        ],
        environ={},
    )
    assert (o.cloud_provider_hint, o.profile_provider) == ("gce", "local")
    env = {"KND_WEBHOOK_URL": "unix:///run/hook.sock", "KND_PROFILE_PROVIDER": "webhook"}
    assert options.parse([], environ=env).webhook_url == "unix:///run/hook.sock"
    for argv, message in [
        (["--cloud-provider-hint=ibm"], "--cloud-provider-hint: unknown cloud provider hint"),
        (["--profile-provider=magic"], "--profile-provider must be one of"),
        (["--profile-provider=webhook"], "--webhook-url is required"),
        (["--cloud-provider-hint=webhook"], "--webhook-url is required"),
        (["--webhook-url=ftp://x"], r"--webhook-url must be http\(s\)://"),
        (["--ipam-ranges=blue=10.0.0.1/24"], "--ipam-ranges: '10.0.0.1/24'"),
        (["--ipam-configmap=just-a-name"], "--ipam-configmap must be NAMESPACE/NAME"),
    ]:
        with pytest.raises(options.OptionsError, match=message):
            options.parse(argv, environ={})


def test_the_whereabouts_style_example_webhook_serves_the_protocol(tmp_path: Path) -> None:
    """examples/webhook-ipam.py against knd's webhook profile provider."""
    import socket
    import subprocess
    import sys
    import time

    from knd.driver.profiles import WebhookProfiles
    from knd.inventory.cloud.base import DeviceIds
    from knd.inventory.cloud.webhook import WebhookClient, WebhookError

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    example = Path(__file__).resolve().parents[2] / "examples" / "webhook-ipam.py"
    state = tmp_path / "hook.json"
    argv = [sys.executable, str(example), "--listen", f"127.0.0.1:{port}", "--state", str(state)]
    proc = subprocess.Popen([*argv, "--range", "storage-net=10.50.0.0/29"])
    try:
        client = WebhookClient(f"http://127.0.0.1:{port}", timeout=2.0)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.health()
                break
            except WebhookError:
                assert time.monotonic() < deadline, "example webhook did not start"
                time.sleep(0.1)
        prof = WebhookProfiles(client, DeviceIds)
        a = prof.resolve("uid-a", "eth1", "storage-net")
        assert a.interface is not None and a.interface.addresses == ["10.50.0.1/29"]
        assert prof.resolve("uid-a", "eth1", "storage-net") == a  # idempotent per claim
        b = prof.resolve("uid-b", "eth1", "storage-net")
        assert b.interface is not None and b.interface.addresses == ["10.50.0.2/29"]
        with pytest.raises(ProfileError, match="HTTP 404"):
            prof.resolve("uid-c", "eth1", "unknown-net")
        prof.release("uid-a", "eth1", "storage-net")
        assert "uid-a" not in state.read_text()
    finally:
        proc.terminate()
        proc.wait(10)


def test_profile_provider_selection(tmp_path: Path) -> None:
    from knd.driver.profiles import WebhookProfiles
    from knd.driver.providers import build, ipam_path
    from knd.host.sysfs import SysfsRoot

    def make(*argv: str) -> object:
        opts = options.parse([f"--state-path={tmp_path / 'state.db'}", *argv], environ={})
        providers = build(opts, SysfsRoot(tmp_path))
        providers.ipam.close()
        return providers.profiles

    assert make() is None  # cloud (default) without a webhook or ranges: nobody
    assert isinstance(make("--ipam-ranges=blue=10.0.0.0/24"), LocalProfiles)
    assert make("--ipam-ranges=blue=10.0.0.0/24", "--profile-provider=none") is None
    hook = ["--webhook-url=http://127.0.0.1:9", "--cloud-provider-hint=webhook"]
    assert isinstance(make(*hook), WebhookProfiles)
    assert isinstance(
        make("--profile-provider=webhook", "--webhook-url=unix:///run/x.sock"), WebhookProfiles
    )
    assert ipam_path(tmp_path / "state.db") == tmp_path / "ipam.db"
