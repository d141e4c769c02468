"""`knd top [--url URL] [--interval S] [--count N]`: per-pod NIC rates on this node.

Scrapes the daemon's `/metrics` (default `http://127.0.0.1:9177/metrics`, the `--bind-address`
default) twice per interval and prints, per attached NIC, receive/transmit bytes and packets per
second and the drops/errors seen in the interval, from the `knd_pod_nic_*_total` series
(knd.driver.nic_telemetry). A NIC that appears or vanishes between two scrapes is shown from its
next full interval. Exit status: 0, 1 when the metrics cannot be read, 2 usage error.
The scrape is bounded (`MAX_SCRAPE_BYTES`, `TIMEOUT_S`).
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from prometheus_client.parser import text_string_to_metric_families

DEFAULT_URL = "http://127.0.0.1:9177/metrics"
MAX_SCRAPE_BYTES = 16 << 20
TIMEOUT_S = 5.0
KINDS = ("bytes", "packets", "drops", "errors")

#: (namespace, pod, claim, device, interface)
NicKey = tuple[str, str, str, str, str]
#: NIC → (kind, direction) → counter value
Sample = dict[NicKey, dict[tuple[str, str], float]]


@dataclass(frozen=True)
class NicRate:
    key: NicKey
    rx_bps: float
    tx_bps: float
    rx_pps: float
    tx_pps: float
    drops: float  # in the interval, both directions
    errors: float


def register(sub: Any) -> None:
    """Register `knd top`."""
    p = sub.add_parser("top", help="per-pod NIC rates on this node (from the daemon's metrics)")
    p.add_argument("--url", default=DEFAULT_URL, help=f"metrics URL (default {DEFAULT_URL})")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    p.add_argument("--count", type=int, default=0, help="number of reports (0: until Ctrl-C)")
    p.set_defaults(handler=run_top)


def parse_sample(text: str) -> Sample:
    """The `knd_pod_nic_*_total` counters of one scrape."""
    out: Sample = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            kind = s.name.removeprefix("knd_pod_nic_").removesuffix("_total")
            if not s.name.startswith("knd_pod_nic_") or not s.name.endswith("_total"):
                continue
            if kind not in KINDS:
                continue
            lab = s.labels
            key = (
                lab.get("namespace", ""),
                lab.get("pod", ""),
                lab.get("claim", ""),
                lab.get("device", ""),
                lab.get("interface", ""),
            )
            out.setdefault(key, {})[(kind, lab.get("direction", ""))] = s.value
    return out


def rates(
    before: Mapping[NicKey, Mapping[tuple[str, str], float]], after: Sample, seconds: float
) -> list[NicRate]:
    """Per-NIC rates between two samples `seconds` apart (NICs present in both, sorted).
    A counter that went backwards (the NIC was re-created) counts from zero."""
    if seconds <= 0:
        raise ValueError("the interval must be positive")
    out = []
    for key in sorted(set(before) & set(after)):
        a, b = before[key], after[key]

        def delta(
            kind: str,
            direction: str,
            a: Mapping[tuple[str, str], float] = a,
            b: Mapping[tuple[str, str], float] = b,
        ) -> float:
            new, old = b.get((kind, direction), 0.0), a.get((kind, direction), 0.0)
            return new - old if new >= old else new

        out.append(
            NicRate(
                key,
                delta("bytes", "rx") / seconds,
                delta("bytes", "tx") / seconds,
                delta("packets", "rx") / seconds,
                delta("packets", "tx") / seconds,
                delta("drops", "rx") + delta("drops", "tx"),
                delta("errors", "rx") + delta("errors", "tx"),
            )
        )
    return out


def scrape(url: str) -> Sample:
    """One bounded scrape; OSError/ValueError when it fails."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url must be http(s)://, got {url!r}")
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:  # noqa: S310 (checked above)
        body: bytes = resp.read(MAX_SCRAPE_BYTES + 1)
    if len(body) > MAX_SCRAPE_BYTES:
        raise ValueError(f"{url}: more than {MAX_SCRAPE_BYTES} bytes of metrics")
    return parse_sample(body.decode("utf-8", "replace"))


def _human(value: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(value) < 1000:
            return f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}P"


def print_rates(rows: list[NicRate], out: TextIO) -> None:
    header = (
        "POD",
        "CLAIM",
        "DEVICE",
        "IFACE",
        "RX B/s",
        "TX B/s",
        "RX pkt/s",
        "TX pkt/s",
        "DROPS",
        "ERRORS",
    )
    table = [header]
    for r in rows:
        ns, pod, claim, device, iface = r.key
        table.append(
            (
                f"{ns}/{pod}",
                claim,
                device,
                iface,
                _human(r.rx_bps),
                _human(r.tx_bps),
                _human(r.rx_pps),
                _human(r.tx_pps),
                f"{r.drops:.0f}",
                f"{r.errors:.0f}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)
    if not rows:
        print("(no attached NICs)", file=out)


def run_top(args: argparse.Namespace) -> int:
    """Handler of `knd top`."""
    if args.interval <= 0 or args.count < 0:
        print("knd top: --interval must be > 0 and --count >= 0", file=sys.stderr)
        return 2
    try:
        before, t0 = scrape(args.url), time.monotonic()
        shown = 0
        while args.count == 0 or shown < args.count:
            time.sleep(args.interval)
            after, t1 = scrape(args.url), time.monotonic()
            print_rates(rates(before, after, t1 - t0), sys.stdout)
            sys.stdout.flush()
            before, t0 = after, t1
            shown += 1
            if args.count == 0 or shown < args.count:
                print(file=sys.stdout)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        print(f"knd top: cannot read {args.url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
