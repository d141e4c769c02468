"""Run the kubelet side of knd on its own: state store, prepare engine, DRA plugin, health.

`python -m knd.driver.kubelet_main --kubelet-root-dir DIR --db-path FILE --apiserver URL`.
Start order: open (and migrate) the store, then serve `dra.sock`, then register. SIGTERM /
SIGINT stop cleanly: the registration socket goes first (deregistration), then `dra.sock`.
The full daemon (inventory, NRI) composes the same pieces; until then this is what the lab and
the restart test run. Health targets come from `--health-netdev POOL/DEVICE=IFNAME` until the
inventory provides the device list.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from knd.api.attributes import DEFAULT_DRIVER_NAME
from knd.driver.claim_api import KubeClaimApi
from knd.driver.prepare import PrepareEngine
from knd.driver.store import DEFAULT_PATH, StateStore
from knd.host.sysfs import sysfs_tree_problem
from knd.kube.connection import connect
from knd.kubelet.health import HealthMonitor
from knd.kubelet.health_probe import HealthTarget, SysfsLinkProbe
from knd.kubelet.plugin import KubeletPlugin
from knd.kubelet.sockets import DEFAULT_KUBELET_ROOT

log = logging.getLogger("knd.kubelet")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="knd-kubelet-plugin", description=__doc__)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--driver-name", default=DEFAULT_DRIVER_NAME)
    p.add_argument("--node-name", default="")
    p.add_argument("--kubelet-root-dir", type=Path, default=DEFAULT_KUBELET_ROOT)
    p.add_argument("--db-path", type=Path, default=DEFAULT_PATH)
    p.add_argument("--apiserver", default="", help="API server URL (no auth; lab use)")
    p.add_argument("--kubeconfig", default="", help="kubeconfig file (default: in-cluster)")
    p.add_argument("--health-netdev", action="append", default=[], metavar="POOL/DEV=IFNAME")
    p.add_argument("--sysfs-root", type=Path, default=Path("/sys"))


def _targets(specs: list[str]) -> list[HealthTarget]:
    out = []
    for spec in specs:
        key, _, ifname = spec.partition("=")
        pool, _, device = key.partition("/")
        out.append(HealthTarget(pool=pool, device=device, ifname=ifname or None))
    return out


def run(args: argparse.Namespace) -> int:
    problem = sysfs_tree_problem(args.sysfs_root)
    if problem is not None:
        print(f"knd kubelet-plugin: --sysfs-root {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = StateStore(args.db_path)
    log.info("state store %s: %d prepared claims", args.db_path, len(store.claims()))
    conn = connect(apiserver=args.apiserver, kubeconfig=args.kubeconfig)
    api = KubeClaimApi(conn, component=args.driver_name, host=args.node_name)
    engine = PrepareEngine(driver=args.driver_name, store=store, reader=api, events=api)
    targets = _targets(args.health_netdev)
    health = HealthMonitor(SysfsLinkProbe(lambda: targets, args.sysfs_root))
    plugin = KubeletPlugin(args.driver_name, engine, args.kubelet_root_dir, health)
    done = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    plugin.start()
    print(f"READY {plugin.paths.registration} {plugin.paths.dra}", flush=True)
    done.wait()
    plugin.stop()
    store.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
