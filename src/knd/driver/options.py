"""Daemon options: DraNet-compatible flags, each also settable by an environment variable.

Precedence: command line > environment (`KND_<FLAG>` with dashes as underscores, plus
`NODE_NAME` for the node, as the DaemonSet passes it) > default. DraNet's spellings are accepted
as aliases (`--db-path` for `--state-path`) so existing manifests keep working, with DraNet's
value syntax (knd.driver.goflags): Go durations, bare booleans, `--feature-gates`, klog's
flags, and Go's single-dash long form (`-v=4`, `-kubeconfig=PATH`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from knd.api.attributes import DEFAULT_DRIVER_NAME
from knd.api.limits import check_driver_name
from knd.driver import goflags
from knd.driver.goflags import FeatureGates
from knd.driver.retry import RetryPolicies

DEFAULT_FILTER = 'device.attributes["dra.net"].type != "veth"'


@dataclass(frozen=True)
class DaemonOptions:
    """Everything `knd driver` is configured with (see `add_arguments` for meanings)."""

    node_name: str
    kubeconfig: str
    driver_name: str
    filter: str
    state_path: Path
    kubelet_root_dir: Path
    bind_address: str
    inventory_min_poll_interval: float
    inventory_max_poll_interval: float
    inventory_poll_burst: int
    move_ib_interfaces: bool
    nri_socket: str
    nri_plugin_index: str
    nri_plugin_name: str
    shutdown_grace_period: float
    log_format: str
    verbosity: int
    feature_gates: FeatureGates = field(default_factory=FeatureGates)
    # -- clouds / profiles / IPAM (see the block at the end of _FLAGS) --
    cloud_provider_hint: str = ""
    cloud_metadata_endpoint: str = ""
    profile_provider: str = "cloud"
    webhook_url: str = ""
    ipam_ranges: str = ""
    ipam_configmap: str = ""
    #: Retry delays of status writes, restores and publishing (data, not flags).
    retry: RetryPolicies = field(default_factory=RetryPolicies)
    # -- sharing (knd's): the share count published as consumable capacity; 0 = off --
    device_shares: int = 0


MAX_DEVICE_SHARES = 4096


class OptionsError(ValueError):
    """An option value is invalid (fatal at start-up)."""


def _env_name(flag: str) -> str:
    return "KND_" + flag.upper().replace("-", "_")


_FLAGS: list[tuple[tuple[str, ...], dict[str, object]]] = [
    (
        ("--hostname-override",),
        {
            "dest": "node_name",
            "default": "",
            "help": "node name (default: $NODE_NAME, else the hostname)",
        },
    ),
    (("--kubeconfig",), {"default": "", "help": "kubeconfig path; empty = in-cluster config"}),
    (("--driver-name",), {"default": DEFAULT_DRIVER_NAME, "help": "DRA driver name"}),
    (
        ("--filter",),
        {
            "default": DEFAULT_FILTER,
            "help": "CEL admin filter over devices; empty disables filtering",
        },
    ),
    (
        ("--state-path", "--db-path"),
        {
            "dest": "state_path",
            "default": "/var/lib/knd/state.db",
            "help": "SQLite state file (DraNet: --db-path)",
        },
    ),
    (("--kubelet-root-dir",), {"default": "/var/lib/kubelet", "help": "kubelet root dir"}),
    (("--bind-address",), {"default": ":9177", "help": "address for /metrics and /healthz"}),
    (
        ("--inventory-min-poll-interval",),
        {
            "type": goflags.go_duration,
            "default": 2.0,
            "help": "minimum interval between scans (Go duration: 2s; or seconds)",
        },
    ),
    (
        ("--inventory-max-poll-interval",),
        {
            "type": goflags.go_duration,
            "default": 60.0,
            "help": "periodic resync (Go duration: 1m; or seconds)",
        },
    ),
    (("--inventory-poll-burst",), {"type": int, "default": 5, "help": "scan burst"}),
    (
        ("--move-ib-interfaces",),
        {
            "type": goflags.go_bool,
            "nargs": "?",
            "const": True,
            "default": True,
            "help": "move IPoIB netdevs (=false: expose IB-only RDMA)",
        },
    ),
    (
        ("--feature-gates",),
        {
            "type": goflags.feature_gates,
            "default": FeatureGates(),
            "help": "Name=true,... (DRAListTypeAttributes, PersistentResourceSliceAttributes)",
        },
    ),
    (("--nri-socket",), {"default": "/var/run/nri/nri.sock", "help": "NRI socket path"}),
    (("--nri-plugin-index",), {"default": "00", "help": "two-digit NRI plugin index"}),
    (("--nri-plugin-name",), {"default": "", "help": "NRI plugin name (default: driver name)"}),
    (
        ("--shutdown-grace-period",),
        {
            "type": float,
            "default": 25.0,
            "help": "max seconds to wait for prepared pods on SIGTERM",
        },
    ),
    (("--log-format",), {"choices": ("text", "json"), "default": "text"}),
    (("-v", "--v"), {"dest": "verbosity", "type": int, "default": 2, "help": "log verbosity"}),
    # ---- clouds, profile providers, IPAM (DraNet's flags) ----
    (
        ("--cloud-provider-hint",),
        {
            "default": "",
            "help": "cloud provider: GCE, AWS, AZURE, OKE, ALIBABA, CKS, webhook, NONE "
            "(default: detect; off a cloud detection costs under a second)",
        },
    ),
    (
        ("--cloud-metadata-endpoint",),
        {
            "default": "",
            "help": "base URL of the cloud's metadata server (default: the cloud's own, or "
            "GCE_METADATA_HOST / AWS_EC2_METADATA_SERVICE_ENDPOINT / IMDS_ENDPOINT)",
        },
    ),
    (
        ("--profile-provider",),
        {
            "default": "cloud",
            "help": "who resolves a config's `profile`: cloud (the cloud provider, if it can), "
            "webhook, local (knd's node-local IPAM), none",
        },
    ),
    (("--webhook-url",), {"default": "", "help": "provider webhook: http(s)://... or unix:///p"}),
    (
        ("--ipam-ranges",),
        {
            "default": "",
            "help": "node-local IPAM profiles: NAME=RANGE[,RANGE...][;NAME=...], a RANGE is a "
            "CIDR or CIDR:FIRST-LAST",
        },
    ),
    (
        ("--ipam-configmap",),
        {"default": "", "help": "NAMESPACE/NAME of a ConfigMap with more IPAM profiles"},
    ),
    (
        ("--device-shares",),
        {
            "type": int,
            "default": 0,
            "help": "publish each device that has a netdev as shareable by this many "
            "subInterface claims (DRA consumable capacity dra.net/shares, KEP-5075); "
            "0 (default): one claim per device, as DraNet",
        },
    ),
]


def long_flag_names() -> set[str]:
    """Every long flag name of the daemon (without dashes), klog's included."""
    names = {n[2:] for flag_names, _ in _FLAGS for n in flag_names if n.startswith("--")}
    return names | set(goflags.KLOG_BOOL_FLAGS) | set(goflags.KLOG_VALUE_FLAGS)


def go_style(argv: Sequence[str]) -> list[str]:
    """`argv` with Go's single-dash long flags (`-kubeconfig=x`) spelled `--kubeconfig=x`."""
    return goflags.double_dash(list(argv), long_flag_names())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every daemon flag to `parser` (defaults are resolved later, with the environment)."""
    for names, kwargs in _FLAGS:
        opts = dict(kwargs)
        opts["default"] = None
        parser.add_argument(*names, **opts)  # type: ignore[arg-type]
    klog = parser  # klog's flags: accepted for DraNet manifests, no effect, not in --help
    for name in goflags.KLOG_BOOL_FLAGS:
        klog.add_argument(
            f"--{name}",
            type=goflags.go_bool,
            nargs="?",
            const=True,
            dest=f"klog_{name}",
            help=argparse.SUPPRESS,
        )
    for name in goflags.KLOG_VALUE_FLAGS:
        klog.add_argument(f"--{name}", dest=f"klog_{name}", help=argparse.SUPPRESS)


def resolve(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> DaemonOptions:
    """Merge parsed flags with the environment and defaults; validate. Raises OptionsError."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for names, kwargs in _FLAGS:
        dest = str(kwargs.get("dest") or names[-1].lstrip("-").replace("-", "_"))
        value = getattr(args, dest, None)
        if value is None:
            raw = env.get(_env_name(names[0].lstrip("-")))
            if raw is not None:
                convert = kwargs.get("type", str)
                try:
                    value = convert(raw)  # type: ignore[operator]
                except (ValueError, argparse.ArgumentTypeError) as exc:
                    raise OptionsError(f"{_env_name(names[0].lstrip('-'))}: {exc}") from exc
        if value is None:
            value = kwargs["default"]
        values[dest] = value
    if not values["node_name"]:
        values["node_name"] = env.get("NODE_NAME") or os.uname().nodename
    if not values["nri_plugin_name"]:
        values["nri_plugin_name"] = values["driver_name"]
    opts = DaemonOptions(
        node_name=str(values["node_name"]),
        kubeconfig=str(values["kubeconfig"]),
        driver_name=str(values["driver_name"]),
        filter=str(values["filter"]),
        state_path=Path(str(values["state_path"])),
        kubelet_root_dir=Path(str(values["kubelet_root_dir"])),
        bind_address=str(values["bind_address"]),
        inventory_min_poll_interval=float(values["inventory_min_poll_interval"]),  # type: ignore[arg-type]
        inventory_max_poll_interval=float(values["inventory_max_poll_interval"]),  # type: ignore[arg-type]
        inventory_poll_burst=int(values["inventory_poll_burst"]),  # type: ignore[call-overload]
        move_ib_interfaces=bool(values["move_ib_interfaces"]),
        nri_socket=str(values["nri_socket"]),
        nri_plugin_index=str(values["nri_plugin_index"]),
        nri_plugin_name=str(values["nri_plugin_name"]),
        shutdown_grace_period=float(values["shutdown_grace_period"]),  # type: ignore[arg-type]
        log_format=str(values["log_format"]),
        verbosity=int(values["verbosity"]),  # type: ignore[call-overload]
        feature_gates=values["feature_gates"],  # type: ignore[arg-type]
        **_provider_values(values),
        device_shares=int(values["device_shares"]),  # type: ignore[call-overload]
    )
    validate(opts)
    return opts


def validate(opts: DaemonOptions) -> None:
    """Reject values that cannot work; raises OptionsError naming the flag."""
    problems = check_driver_name(opts.driver_name)
    if len(opts.nri_plugin_index) != 2 or not opts.nri_plugin_index.isdigit():
        problems.append(f"--nri-plugin-index must be two digits, got {opts.nri_plugin_index!r}")
    if opts.inventory_min_poll_interval <= 0 or opts.inventory_max_poll_interval <= 0:
        problems.append("--inventory-*-poll-interval must be positive")
    if opts.inventory_poll_burst < 1:
        problems.append("--inventory-poll-burst must be at least 1")
    if opts.shutdown_grace_period < 0:
        problems.append("--shutdown-grace-period must not be negative")
    host, sep, port = opts.bind_address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        problems.append(f"--bind-address must be HOST:PORT or :PORT, got {opts.bind_address!r}")
    del host
    problems += _provider_problems(opts)
    if not 0 <= opts.device_shares <= MAX_DEVICE_SHARES:
        problems.append(f"--device-shares must be 0..{MAX_DEVICE_SHARES}, got {opts.device_shares}")
    if problems:
        raise OptionsError("; ".join(problems))


# ---- clouds, profile providers, IPAM ----------------------------------------------------------
PROFILE_PROVIDERS = ("cloud", "webhook", "local", "none")


class _ProviderValues(TypedDict):
    cloud_provider_hint: str
    cloud_metadata_endpoint: str
    profile_provider: str
    webhook_url: str
    ipam_ranges: str
    ipam_configmap: str


def _provider_values(values: Mapping[str, object]) -> _ProviderValues:
    return {
        "cloud_provider_hint": str(values["cloud_provider_hint"]).strip(),
        "cloud_metadata_endpoint": str(values["cloud_metadata_endpoint"]).strip(),
        "profile_provider": str(values["profile_provider"]).strip().lower(),
        "webhook_url": str(values["webhook_url"]).strip(),
        "ipam_ranges": str(values["ipam_ranges"]).strip(),
        "ipam_configmap": str(values["ipam_configmap"]).strip(),
    }


def _provider_problems(opts: DaemonOptions) -> list[str]:
    """The cloud/profile/IPAM flags' own checks (each names its flag)."""
    from knd.driver.ipam import IpamError, parse_ranges  # noqa: PLC0415 (keeps start-up lean)
    from knd.inventory.cloud.base import canonical_hint  # noqa: PLC0415

    problems: list[str] = []
    try:
        canonical_hint(opts.cloud_provider_hint)
    except ValueError as exc:
        problems.append(f"--cloud-provider-hint: {exc}")
    if opts.profile_provider not in PROFILE_PROVIDERS:
        problems.append(
            f"--profile-provider must be one of {', '.join(PROFILE_PROVIDERS)}, "
            f"got {opts.profile_provider!r}"
        )
    needs_url = opts.profile_provider == "webhook" or opts.cloud_provider_hint.lower() == "webhook"
    if needs_url and not opts.webhook_url:
        problems.append("--webhook-url is required with a webhook provider")
    if opts.webhook_url and not opts.webhook_url.startswith(("http://", "https://", "unix:///")):
        problems.append(
            f"--webhook-url must be http(s)://... or unix:///path, got {opts.webhook_url!r}"
        )
    try:
        parse_ranges(opts.ipam_ranges)
    except IpamError as exc:
        problems.append(f"--ipam-ranges: {exc}")
    if opts.ipam_configmap and opts.ipam_configmap.count("/") != 1:
        problems.append(f"--ipam-configmap must be NAMESPACE/NAME, got {opts.ipam_configmap!r}")
    return problems


def parse(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> DaemonOptions:
    """Parse a full argument list (for tests and embedding)."""
    parser = argparse.ArgumentParser(prog="knd driver")
    add_arguments(parser)
    return resolve(parser.parse_args(go_style(argv)), environ)
