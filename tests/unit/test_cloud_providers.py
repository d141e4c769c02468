"""Cloud providers against fake metadata servers on 127.0.0.1 that answer like each cloud's
documented API: attribute names/types, join by MAC or PCI address, endpoint overrides, the
headers and token handshakes each cloud requires, detection, and the webhook protocol."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from knd.api.config import NetworkConfig, RouteConfig, RuleConfig
from knd.host.http_fetch import fetch
from knd.host.sysfs import SysfsRoot
from knd.inventory.cloud import alibaba, aws, azure, detect, gce, oke
from knd.inventory.cloud.base import CloudError, DeviceIds, canonical_hint, endpoint
from knd.inventory.cloud.state import CloudState
from knd.inventory.cloud.webhook import WebhookClient, WebhookCloud, WebhookError
from knd.inventory.discover import Options, discover
from knd.inventory.model import AttrValue
from knd.inventory.scanner import Inventory
from knd.lab.sysfs_fixture import SysfsBuilder, build_erdma, build_gpu_node
from tests.fixtures import metadata as md
from tests.fixtures.metadata import MetadataServer, Route

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _no_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GCE_METADATA_HOST", "AWS_EC2_METADATA_SERVICE_ENDPOINT", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


# -- GCE -------------------------------------------------------------------------------------


def test_gce_attributes_by_mac_with_the_metadata_flavor_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with MetadataServer(md.gce_routes()) as srv:
        monkeypatch.setenv("GCE_METADATA_HOST", f"127.0.0.1:{srv.port}")  # the SDK's spelling
        inst = gce.load()
        # every request carried the header (the fake refuses with 403 otherwise)
        assert all(h.get("metadata-flavor") == "Google" for _, _, h in srv.requests)
    second = inst.attributes(DeviceIds("eth1", mac="42:01:C0:A8:01:02"))
    assert second == {
        "gce.dra.net/machineType": "a3-ultragpu-8g",
        "gce.dra.net/block": "CCCC",
        "gce.dra.net/subBlock": "BBBB",
        "gce.dra.net/host": "AAAA",
        "gce.dra.net/networkName": "dra-net-1",
        "gce.dra.net/networkProjectNumber": 628944397724,
    }
    assert isinstance(second["gce.dra.net/networkProjectNumber"], int)
    first = inst.attributes(DeviceIds("eth0", mac="42:01:0a:80:00:46"))
    assert first["gce.dra.net/ipAliases"] == "10.24.3.0/24"
    assert first["gce.dra.net/networkName"] == "default"
    unknown = inst.attributes(DeviceIds("eth9", mac="02:00:00:00:00:09"))
    assert set(unknown) == {
        "gce.dra.net/machineType",
        "gce.dra.net/block",
        "gce.dra.net/subBlock",
        "gce.dra.net/host",
    }
    assert inst.device_config(DeviceIds("eth1", mac="42:01:c0:a8:01:02")) is None


def test_gce_without_the_header_is_refused_like_the_real_server() -> None:
    with MetadataServer(md.gce_routes()) as srv:
        bare = fetch(srv.url, md.GCE_ROOT + "instance/machine-type", timeout=2.0)
        assert bare.status == 403  # so the load above proves the header is sent
        assert gce.probe(srv.url, 2.0)
        assert not azure.probe(srv.url, 2.0)


def test_gce_without_physical_host_has_no_topology() -> None:
    with MetadataServer(md.gce_routes(physical_host=None)) as srv:
        inst = gce.load(srv.url)
    attrs = inst.attributes(DeviceIds("eth1", mac="42:01:c0:a8:01:02"))
    assert "gce.dra.net/block" not in attrs
    assert attrs["gce.dra.net/machineType"] == "a3-ultragpu-8g"


# -- AWS -------------------------------------------------------------------------------------


def _efa_sysfs(tmp_path: Path, bdfs: list[str], driver: str = "efa") -> SysfsRoot:
    b = SysfsBuilder(tmp_path / "sys")
    host = b.bridge("pci0000:00")
    for bdf in bdfs:
        b.pci(host, bdf, "1d0f", "efa3", driver=driver)
    return SysfsRoot(tmp_path / "sys")


def test_aws_efa_device_groups_on_trainium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = aws.efa_table("trn2.48xlarge")
    assert len(table) == 16
    sysfs = _efa_sysfs(tmp_path, table[:5])
    with MetadataServer(md.aws_routes("trn2.48xlarge")) as srv:
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.url)
        inst = aws.load(sysfs=sysfs)
        methods = [(m, p) for m, p, _ in srv.requests]
    assert methods[0] == ("PUT", "/latest/api/token")  # IMDSv2 first
    attrs = inst.attributes(DeviceIds("eth1", pci_address=table[4]))
    want4 = hashlib.sha256(",".join(sorted(table[4:8])).encode()).hexdigest()[:16]
    want16 = hashlib.sha256(",".join(sorted(table)).encode()).hexdigest()[:16]
    assert attrs == {
        "resource.aws.com/devicegroup1_id": table[4],
        "resource.aws.com/devicegroup4_id": want4,
        "resource.aws.com/devicegroup8_id": attrs["resource.aws.com/devicegroup8_id"],
        "resource.aws.com/devicegroup16_id": want16,
    }
    # devices 4..7 share the group of 4; device 0 does not; all 16 share the group of 16
    other = inst.attributes(DeviceIds("eth0", pci_address=table[0]))
    assert other["resource.aws.com/devicegroup4_id"] != want4
    assert other["resource.aws.com/devicegroup16_id"] == want16
    assert other["resource.aws.com/devicegroup8_id"] == attrs["resource.aws.com/devicegroup8_id"]


def test_aws_only_efa_bound_devices_of_neuron_instances(tmp_path: Path) -> None:
    table = aws.efa_table("trn2.48xlarge")
    sysfs = _efa_sysfs(tmp_path, table[:1], driver="ena")
    ids = DeviceIds("eth0", pci_address=table[0])
    assert aws.AwsInstance("trn2.48xlarge", sysfs).attributes(ids) == {}  # not bound to efa
    sysfs2 = _efa_sysfs(tmp_path / "b", table[:1])
    assert aws.AwsInstance("p5.48xlarge", sysfs2).attributes(ids) == {}  # not Neuron
    assert aws.AwsInstance("trn2.48xlarge", sysfs2).attributes(ids) != {}


def test_aws_falls_back_to_imdsv1_when_the_token_call_is_refused() -> None:
    routes = md.aws_routes("inf2.xlarge")
    routes[("PUT", "/latest/api/token")] = Route("forbidden", status=403)
    routes[("GET", "/latest/dynamic/instance-identity/document")] = Route(
        {"instanceType": "inf2.xlarge"}
    )
    with MetadataServer(routes) as srv:
        assert aws.load(srv.url).instance_type == "inf2.xlarge"


# -- Azure -----------------------------------------------------------------------------------


def test_azure_attributes_and_per_nic_policy_routing() -> None:
    with MetadataServer(md.azure_routes()) as srv:
        inst = azure.load(srv.url)
    ids = DeviceIds("eth1", mac="00:0d:3a:00:00:02")
    assert inst.attributes(ids) == {
        "azure.dra.net/vmSize": "Standard_ND96isr_H100_v5",
        "azure.dra.net/placementGroupId": "7bd4a4f5-58a3-4b4f-ae1f-0bb6e3b9f6a1",
        "azure.dra.net/interconnectGroupId": "ig-0001",
    }
    assert inst.device_config(ids) == NetworkConfig(
        rules=[RuleConfig(source="10.9.255.0/24", table=101)],
        routes=[RouteConfig(destination="0.0.0.0/0", gateway="10.9.255.1", table=101)],
    )
    first = inst.device_config(DeviceIds("eth0", mac="00-0D-3A-00-00-01"))
    assert first is not None and first.routes is not None
    assert first.routes[0].table == 100 and first.routes[0].gateway == "10.0.0.1"
    assert inst.device_config(DeviceIds("eth7", mac="02:00:00:00:00:07")) is None


def test_azure_ipv6_rule_and_route_when_the_host_has_an_ipv6_gateway_on_the_nic() -> None:
    with MetadataServer(md.azure_routes()) as srv:
        inst = azure.load(srv.url)
    asked: list[str] = []

    def gateways(ifname: str) -> str:
        asked.append(ifname)
        return {"eth2": "fe80::1234:5678:9abc", "eth1": "fe80::1"}.get(ifname, "")

    inst.ipv6_gateway = gateways
    assert inst.device_config(DeviceIds("eth2", mac="00:0d:3a:00:00:03")) == NetworkConfig(
        rules=[
            RuleConfig(source="10.144.133.128/26", table=102),
            RuleConfig(source="fda0:ad0a:cdcb:2000::5/128", table=102),
        ],
        routes=[
            RouteConfig(destination="0.0.0.0/0", gateway="10.144.133.129", table=102),
            RouteConfig(destination="::/0", gateway="fe80::1234:5678:9abc", table=102),
        ],
    )
    assert asked == ["eth2"]  # looked up by the device's interface name
    # A gateway but no IPv6 address in IMDS: IPv4 only, and the host is not even asked.
    v4_only = inst.device_config(DeviceIds("eth1", mac="00:0d:3a:00:00:02"))
    assert v4_only is not None and v4_only.routes is not None
    assert [r.destination for r in v4_only.routes] == ["0.0.0.0/0"]
    assert asked == ["eth2"]
    # An address but no IPv6 default route through the NIC on the host: IPv4 only.
    inst.ipv6_gateway = lambda ifname: ""
    no_gw = inst.device_config(DeviceIds("eth2", mac="00:0d:3a:00:00:03"))
    assert no_gw is not None and no_gw.rules is not None and no_gw.routes is not None
    assert [r.source for r in no_gw.rules] == ["10.144.133.128/26"]
    assert [r.destination for r in no_gw.routes] == ["0.0.0.0/0"]


def test_azure_ipv6_link_local_empty_or_garbage_address_and_ipv6_only_nic() -> None:
    gw = "fe80::1"
    for address in ("", "fe80::5", "not-an-address", "10.0.0.5"):
        inst = azure.AzureInstance(
            nics=[azure.Nic("000D3A000009", "10.0.0.0", "24", address)],
            ipv6_gateway=lambda ifname: gw,
        )
        cfg = inst.device_config(DeviceIds("eth0", mac="00:0d:3a:00:00:09"))
        assert cfg is not None and cfg.routes is not None, address
        assert [r.destination for r in cfg.routes] == ["0.0.0.0/0"], address
    # No usable IPv4 subnet: the IPv6 half still applies (DraNet does the same).
    inst = azure.AzureInstance(
        nics=[azure.Nic("000D3A000009", "", "", "2001:db8::7")], ipv6_gateway=lambda n: gw
    )
    assert inst.device_config(DeviceIds("eth0", mac="00:0d:3a:00:00:09")) == NetworkConfig(
        rules=[RuleConfig(source="2001:db8::7/128", table=100)],
        routes=[RouteConfig(destination="::/0", gateway=gw, table=100)],
    )


def test_azure_default_ipv6_gateway_lookup_never_raises() -> None:
    # The real lookup on a name no host has: '' (no route), not an exception.
    assert azure.host_ipv6_gateway("kn-absent-nic0") == ""


def test_azure_subnet_that_is_not_a_network_base_gets_no_routing() -> None:
    inst = azure.AzureInstance(nics=[azure.Nic("000D3A000009", "10.0.0.5", "24")])
    assert inst.device_config(DeviceIds("eth0", mac="00:0d:3a:00:00:09")) is None
    assert azure.first_address("10.9.255.0", "24") == "10.9.255.1"


# -- OKE ---------------------------------------------------------------------------------------


def test_oke_topology_from_ocid_suffixes() -> None:
    with MetadataServer(md.oke_routes()) as srv:
        inst = oke.load(srv.url)
        assert all(h.get("authorization") == "Bearer Oracle" for _, _, h in srv.requests)
    attrs = inst.attributes(DeviceIds("eth0"))
    assert attrs == {
        "oke.dra.net/hpcIslandId": "a" * 60,
        "oke.dra.net/networkBlockId": "b" * 60,
        "oke.dra.net/localBlockId": "c" * 60,
        "oke.dra.net/rackId": "rack-42",
        "oke.dra.net/gpuMemoryFabricId": "d" * 60,
    }


def test_oke_without_rdma_topology_publishes_block_and_rack_only() -> None:
    with MetadataServer(md.oke_routes(rdma=False)) as srv:
        inst = oke.load(srv.url)
    assert inst.attributes(DeviceIds("eth0")) == {
        "oke.dra.net/networkBlockId": "nb-1",
        "oke.dra.net/rackId": "rack-42",
    }


def test_oke_rejects_a_value_that_is_not_an_ocid() -> None:
    with pytest.raises(CloudError, match="customerLocalBlock is not an OCID"):
        oke.parse_host({"rdmaTopologyData": {"customerLocalBlock": "garbage"}})


# -- Alibaba ---------------------------------------------------------------------------------


def test_alibaba_instance_type_and_erdma_by_pci_address(tmp_path: Path) -> None:
    build_erdma(tmp_path / "sys")
    sysfs = SysfsRoot(tmp_path / "sys")
    with MetadataServer(md.alibaba_routes()) as srv:
        inst = alibaba.load(srv.url, sysfs=sysfs)
        tokens = [h.get("x-aliyun-ecs-metadata-token") for m, _, h in srv.requests if m == "GET"]
    assert tokens == [md.ALI_TOKEN]
    assert inst.attributes(DeviceIds("erdma_0", pci_address="0000:00:06.0")) == {
        "alibaba.dra.net/instanceType": "ecs.ebmgn8v.48xlarge",
        "alibaba.dra.net/erdma": True,
    }
    assert inst.attributes(DeviceIds("eth0", pci_address="0000:00:05.0")) == {
        "alibaba.dra.net/instanceType": "ecs.ebmgn8v.48xlarge"
    }


# -- detection, hints, endpoints ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("routes", "want"),
    [
        (md.gce_routes(), "GCE"),
        (md.aws_routes(), "AWS"),
        (md.azure_routes(), "AZURE"),
        (md.oke_routes(), "OKE"),
        (md.alibaba_routes(), "ALIBABA"),
    ],
)
def test_detect_by_probing_the_metadata_endpoint(
    tmp_path: Path, routes: dict[tuple[str, str], Route], want: str
) -> None:
    empty = SysfsRoot(tmp_path / "nosys")
    with MetadataServer(routes) as srv:
        assert detect.detect(empty, srv.url, probe_timeout=2.0, environ={}) == want


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_detect_off_cloud_is_none(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert detect.detect(SysfsRoot(tmp_path), url, environ={}) == "NONE"


@pytest.mark.parametrize(
    ("files", "want"),
    [
        ({"sys_vendor": "Google", "product_name": "Google Compute Engine"}, "GCE"),
        ({"sys_vendor": "Amazon EC2", "product_name": "trn2.48xlarge"}, "AWS"),
        (
            {"sys_vendor": "Microsoft Corporation", "chassis_asset_tag": detect.AZURE_ASSET_TAG},
            "AZURE",
        ),
        ({"chassis_asset_tag": "OracleCloud.com"}, "OKE"),
        ({"sys_vendor": "Alibaba Cloud", "product_name": "Alibaba Cloud ECS"}, "ALIBABA"),
        ({"sys_vendor": "QEMU", "product_name": "Standard PC"}, ""),
    ],
)
def test_detect_by_dmi_identity(tmp_path: Path, files: dict[str, str], want: str) -> None:
    d = tmp_path / "class" / "dmi" / "id"
    d.mkdir(parents=True)
    for name, text in files.items():
        (d / name).write_text(text + "\n")
    assert detect.from_dmi(SysfsRoot(tmp_path)) == want


def test_hints_and_endpoint_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert canonical_hint("gce") == "GCE"
    assert canonical_hint("none") == "NONE"
    assert canonical_hint("Webhook") == "webhook"
    assert canonical_hint("") == ""
    with pytest.raises(ValueError, match="unknown cloud provider hint 'digitalocean'"):
        canonical_hint("digitalocean")
    monkeypatch.setenv("GCE_METADATA_HOST", "10.1.2.3:8080")
    assert gce.base_url() == "http://10.1.2.3:8080"
    assert gce.base_url("http://127.0.0.1:9") == "http://127.0.0.1:9"  # the flag wins
    assert endpoint("http://169.254.169.254") == "http://169.254.169.254"


# -- the webhook protocol ----------------------------------------------------------------------


class _Webhook:
    """A provider webhook with both capabilities, recording bodies."""

    def __init__(self, caps: dict[str, bool] | None = None) -> None:
        self.caps = caps or {"cloudProvider": True, "profileProvider": True}
        self.bodies: list[tuple[str, Any]] = []
        self.mode = "ok"  # ok | garbage | fail
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._send(200, owner.caps if self.path == "/health" else {})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.bodies.append((self.path, body))
                if owner.mode == "fail":
                    self._send(500, {"error": "down"})
                elif owner.mode == "garbage":
                    self._raw(200, b"<html>not json")
                elif self.path == "/GetDeviceAttributes":
                    self._send(
                        200,
                        {
                            "dra.net/webhook_attr": {"string": "python"},
                            "example.com/rank": {"int": 3},
                            "example.com/bad": {"float": 1.5},
                        },
                    )
                elif self.path == "/GetDeviceConfig":
                    self._send(200, {"interface": {"mtu": 1450}})
                elif self.path == "/GetProfileConfig":
                    self._send(200, {"interface": {"addresses": ["10.200.200.200/24"]}})
                else:
                    self._send(200, {})

            def _send(self, status: int, obj: Any) -> None:
                self._raw(status, json.dumps(obj).encode())

            def _raw(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return

        self.handler = Handler


@pytest.fixture
def webhook() -> Iterator[tuple[_Webhook, str]]:
    hook = _Webhook()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), hook.handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield hook, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_webhook_cloud_provider_keeps_last_answers_through_an_outage(
    webhook: tuple[_Webhook, str],
) -> None:
    hook, url = webhook
    inst = detect.load("webhook", SysfsRoot(), webhook_url=url)
    assert isinstance(inst, WebhookCloud)
    ids = DeviceIds("dummy1", mac="02:00:00:00:00:01", pci_address="")
    attrs = inst.attributes(ids)
    assert attrs == {"dra.net/webhook_attr": "python", "example.com/rank": 3}
    assert hook.bodies[0] == (
        "/GetDeviceAttributes",
        {"name": "dummy1", "mac_address": "02:00:00:00:00:01"},
    )
    assert inst.device_config(ids) == NetworkConfig.model_validate({"interface": {"mtu": 1450}})
    for mode in ("fail", "garbage"):
        hook.mode = mode
        inst._retry_at = 0.0
        assert inst.attributes(ids) == attrs  # outage/garbage: the last good answer stays
        assert inst.device_config(ids) is not None
    asked = len(hook.bodies)
    other = DeviceIds("dummy2", mac="02:00:00:00:00:02")
    assert inst.attributes(other) == {}  # failing: not asked again for a while, nothing cached
    assert len(hook.bodies) == asked
    hook.mode = "ok"
    inst._retry_at = 0.0  # the back-off is over
    assert inst.attributes(other) == attrs


def test_webhook_profile_calls_and_capability_gating(webhook: tuple[_Webhook, str]) -> None:
    hook, url = webhook
    client = WebhookClient(url)
    assert client.health().profile_provider
    cfg = NetworkConfig.model_validate({"profile": "acme.com/overlay"})
    got = client.profile_config(
        DeviceIds("pci-0000-01-00-0", mac="aa:bb:cc:00:00:01"), "uid-1", cfg
    )
    assert got.interface is not None and got.interface.addresses == ["10.200.200.200/24"]
    path, body = hook.bodies[-1]
    assert path == "/GetProfileConfig"
    assert body == {
        "device": {"name": "pci-0000-01-00-0", "mac_address": "aa:bb:cc:00:00:01"},
        "claim_uid": "uid-1",
        "config": {"profile": "acme.com/overlay"},
    }
    hook.mode = "garbage"
    with pytest.raises(WebhookError, match="GetProfileConfig: answer is not JSON"):
        client.profile_config(DeviceIds("d"), "uid-1", cfg)
    hook.mode = "fail"
    with pytest.raises(WebhookError, match="HTTP 500"):
        client.profile_config(DeviceIds("d"), "uid-1", cfg)
    client.caps = client.caps.__class__(cloud_provider=True, profile_provider=False)
    with pytest.raises(WebhookError, match="did not declare profileProvider"):
        client.profile_config(DeviceIds("d"), "uid-1", cfg)


def test_webhook_hint_without_cloud_capability_is_an_error(tmp_path: Path) -> None:
    hook = _Webhook({"cloudProvider": False, "profileProvider": True})
    sock = str(tmp_path / "hook.sock")

    class UnixServer(ThreadingHTTPServer):
        address_family = socket.AF_UNIX

        def server_bind(self) -> None:
            self.socket.bind(self.server_address)
            self.server_name, self.server_port = "localhost", 0

    srv = UnixServer(sock, hook.handler)  # type: ignore[arg-type]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        assert WebhookClient(f"unix://{sock}").health().profile_provider  # unix:// URLs work
        with pytest.raises(CloudError, match="cloudProvider=false"):
            detect.load("webhook", SysfsRoot(), webhook_url=f"unix://{sock}")
    finally:
        srv.shutdown()
        srv.server_close()
        os.unlink(sock)


# -- the state: enrich scans, survive outages --------------------------------------------------


def test_cloud_state_enriches_discovery_and_survives_a_metadata_outage(tmp_path: Path) -> None:
    build_gpu_node(tmp_path / "sys")
    sysfs = SysfsRoot(tmp_path / "sys")
    routes = md.gce_routes()
    routes[("GET", md.GCE_ROOT + "instance/network-interfaces/?recursive=true&alt=json")] = Route(
        [
            {"mac": "42:01:0a:80:00:02", "network": "projects/1/networks/default"},
            {"mac": "02:00:00:00:0d:01", "network": "projects/1/networks/rdma-0"},
        ],
        require=md.GCE,
    )
    srv = MetadataServer(routes).__enter__()
    state = CloudState("GCE", sysfs=sysfs, endpoint_override=srv.url)
    state.start(wait=10.0)
    srv.stop()  # the metadata server goes away after start-up
    assert state.instance is not None
    inv = Inventory(sysfs=sysfs, options=Options(enrich=state.enrich))
    for _ in range(2):  # a rescan during the outage publishes the same attributes
        devices = inv.scan().discovery.by_name()
        nic = devices["pci-0000-11-00-0"].attributes
        assert nic["gce.dra.net/networkName"] == "rdma-0"
        assert nic["gce.dra.net/networkProjectNumber"] == 1
        assert nic["gce.dra.net/block"] == "CCCC"
        assert devices["pci-0000-11-00-0"].attributes["dra.net/ifName"] == "eth1"
    assert state.device_config("pci-0000-11-00-0") is None


def test_enrich_never_overrides_discovered_attributes(tmp_path: Path) -> None:
    build_gpu_node(tmp_path / "sys")

    class Liar:
        name = "webhook"

        def attributes(self, ids: DeviceIds) -> dict[str, AttrValue]:
            return {"dra.net/ifName": "evil", "example.com/x": 1}

        def device_config(self, ids: DeviceIds) -> NetworkConfig | None:
            return None

    state = CloudState("webhook")
    state.set_instance(Liar())
    found = discover(SysfsRoot(tmp_path / "sys"), _no_ids(), None, Options(enrich=state.enrich))
    nic = found.by_name()["pci-0000-11-00-0"].attributes
    assert nic["dra.net/ifName"] == "eth1"
    assert nic["example.com/x"] == 1


def _no_ids() -> Any:
    from knd.host import pciids

    return pciids.load(Path("/nonexistent/pci.ids"))


def test_detect_against_a_server_that_never_answers_gives_up(tmp_path: Path) -> None:
    """A metadata address that accepts connections and then says nothing (a black hole):
    every probe gives up at its own timeout and detection answers NONE."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        assert detect.detect(SysfsRoot(tmp_path), url, probe_timeout=0.2, environ={}) == "NONE"
    finally:
        listener.close()


# -- `knd inventory` ---------------------------------------------------------------------------


def _gpu_node_gce_routes() -> dict[tuple[str, str], Route]:
    routes = md.gce_routes()
    routes[("GET", md.GCE_ROOT + "instance/network-interfaces/?recursive=true&alt=json")] = Route(
        [{"mac": "02:00:00:00:0d:01", "network": "projects/42/networks/rdma-0"}], require=md.GCE
    )
    return routes


def test_inventory_offline_shows_cloud_attributes_when_hinted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from knd.cli.main import main

    root = build_gpu_node(tmp_path / "sys").root
    with MetadataServer(_gpu_node_gce_routes()) as srv:
        argv = ["inventory", "--sysfs-root", str(root), "--cloud-provider-hint", "gce"]
        code = main([*argv, "--cloud-metadata-endpoint", srv.url, "-o", "json"])
        listed = json.loads(capsys.readouterr().out)
        devices = {d["name"]: d["attributes"] for d in listed["items"]}
        assert code == 0
        nic = devices["pci-0000-11-00-0"]
        assert nic["gce.dra.net/networkName"] == {"string": "rdma-0"}
        assert nic["gce.dra.net/networkProjectNumber"] == {"int": 42}
        assert devices["pci-0000-21-00-0"]["gce.dra.net/machineType"] == {
            "string": "a3-ultragpu-8g"
        }
        assert main([*argv, "--cloud-metadata-endpoint", srv.url]) == 0
        out = capsys.readouterr().out
    assert "CLOUD (GCE)" in out
    assert "pci-0000-11-00-0  gce.dra.net/block=CCCC" in out


def test_inventory_detects_the_cloud_from_the_trees_dmi(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from knd.cli.main import main

    root = build_gpu_node(tmp_path / "sys").root
    dmi = root / "class" / "dmi" / "id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("Google\n")
    with MetadataServer(_gpu_node_gce_routes()) as srv:
        code = main(["inventory", "--sysfs-root", str(root), "--cloud-metadata-endpoint", srv.url])
    assert code == 0
    assert "CLOUD (GCE)" in capsys.readouterr().out
    # without a cloud nothing cloud-ish is printed, and an unknown hint is refused
    assert main(["inventory", "--sysfs-root", str(root), "--cloud-provider-hint", "NONE"]) == 0
    assert "CLOUD" not in capsys.readouterr().out
    assert main(["inventory", "--sysfs-root", str(root), "--cloud-provider-hint", "ibm"]) == 1
    assert "unknown cloud provider hint 'ibm'" in capsys.readouterr().err


def test_inventory_reports_a_hinted_cloud_without_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from knd.cli.main import main

    root = build_gpu_node(tmp_path / "sys").root
    url = f"http://127.0.0.1:{_closed_port()}"
    argv = ["inventory", "--sysfs-root", str(root), "--cloud-provider-hint", "AZURE"]
    assert main([*argv, "--cloud-metadata-endpoint", url, "--cloud-wait", "0.5"]) == 0
    captured = capsys.readouterr()
    assert "cloud provider AZURE: no metadata" in captured.err
    assert "CLOUD" not in captured.out
