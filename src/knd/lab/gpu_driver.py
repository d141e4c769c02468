"""`python -m knd.lab.gpu_driver`: the lab's stand-in GPU DRA driver on a real kubelet.

It does what a GPU driver's node plugin does that the lab's scenarios need, and nothing else:

- publishes one ResourceSlice under its own driver name (`gpu.nvidia.com`) for the node: 8 GPUs
  on the lab node's PCIe roots with NVIDIA's attribute names plus the standard
  `resource.kubernetes.io/pcieRoot`, `pciBusID` and `numaNode` (knd.lab.gpu_slices), created
  or replaced through the real API server (and re-created if someone deletes it, every 5 s);
- registers with the kubelet's plugin watcher as a DRA plugin (knd's own kubelet plugin
  library) and answers NodePrepareResources with the allocated GPUs of each claim (read from
  the claim's allocation) and no CDI devices: there is no GPU to inject, so a pod that gets a
  GPU allocated runs, and the GPU is visible only in the claim.

Runs until SIGTERM/SIGINT; removes its registration socket on exit. Time budget: one prepare is
one GET of the claim (~ms on a local API server).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from knd.kubelet.plugin import KubeletPlugin
from knd.kubelet.types import ClaimRef, PreparedDevice, PrepareResult
from knd.lab.gpu_slices import GPU_DRIVER, gpu_resource_slice
from knd.lab.restapi import RestClient, RestError
from knd.lab.sysfs_fixture import gpu_node_gpus

log = logging.getLogger("knd.lab.gpu_driver")


class GpuPreparer:
    """Prepare = report the claim's GPU allocation back (nothing to set up on the host)."""

    def __init__(self, api: RestClient) -> None:
        self.api = api

    def prepare(self, claims: Sequence[ClaimRef]) -> dict[str, PrepareResult]:
        out: dict[str, PrepareResult] = {}
        for ref in claims:
            try:
                claim = self.api.get("ResourceClaim", ref.name, ref.namespace)
            except RestError as exc:
                out[ref.uid] = PrepareResult(error=f"read claim {ref.key()}: {exc.message}")
                continue
            if claim is None or claim["metadata"].get("uid") != ref.uid:
                out[ref.uid] = PrepareResult(error=f"claim {ref.key()} ({ref.uid}) not found")
                continue
            results = ((claim.get("status") or {}).get("allocation") or {}).get("devices", {})
            devices = tuple(
                PreparedDevice(pool=r["pool"], device=r["device"], request_names=(r["request"],))
                for r in results.get("results") or []
                if r.get("driver") == GPU_DRIVER
            )
            out[ref.uid] = PrepareResult(devices=devices)
        return out

    def unprepare(self, claims: Sequence[ClaimRef]) -> dict[str, str]:
        return {ref.uid: "" for ref in claims}


def publish(api: RestClient, node: str) -> None:
    """Create the GPU slice, or replace it when it differs (idempotent)."""
    want = gpu_resource_slice(node, gpu_node_gpus())
    name = want["metadata"]["name"]
    have = api.get("ResourceSlice", name)
    if have is None:
        api.create(want)
    elif have["spec"] != want["spec"]:
        want["metadata"]["resourceVersion"] = have["metadata"]["resourceVersion"]
        api.call("PUT", api.path("ResourceSlice", name=name), want)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m knd.lab.gpu_driver")
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--kubelet-root", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api = RestClient.from_kubeconfig(args.kubeconfig)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    plugin = KubeletPlugin(GPU_DRIVER, GpuPreparer(api), kubelet_root=args.kubelet_root)
    # no health service here: advertise only the DRA services this stand-in serves
    plugin.registration.supported_versions = tuple(
        v for v in plugin.registration.supported_versions if v.endswith(".DRAPlugin")
    )
    plugin.start()
    log.info("stand-in GPU driver %s registered under %s", GPU_DRIVER, args.kubelet_root)
    try:
        while not done.is_set():
            try:
                publish(api, args.node)
            except RestError as exc:
                log.warning("publish ResourceSlice: %s", exc)
            done.wait(5.0)
    finally:
        plugin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
