"""`python -m knd.lab.serve`: the lab's API server emulator as a process.

Serves knd.lab.apiserver on 127.0.0.1 (`--port`, 0 = any free port), seeds the lab cluster —
the Node, namespace `default`, the `dra.net` DeviceClass (as DraNet's), the GPU driver's
DeviceClass and its ResourceSlice of 8 GPUs on the lab node's PCIe roots — writes its URL to
`--url-file` (atomically, 0600) and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path

from knd.lab.apiserver import _BY_PATH, ApiServerEmulator, ObjectStore
from knd.lab.gpu_slices import gpu_device_class, gpu_resource_slice
from knd.lab.sysfs_fixture import gpu_node_gpus

NIC_CLASS = {
    "apiVersion": "resource.k8s.io/v1",
    "kind": "DeviceClass",
    "metadata": {"name": "dra.net"},
    "spec": {"selectors": [{"cel": {"expression": 'device.driver == "dra.net"'}}]},
}


def seed(api: ApiServerEmulator, node: str) -> None:
    """Create the lab cluster's fixed objects."""
    store = api.store
    api.add_node(node, {"kubernetes.io/hostname": node})
    namespaces = _BY_PATH[("", "v1", "namespaces")]
    store.create(namespaces, "", {"metadata": {"name": "default"}})
    classes = _BY_PATH[("resource.k8s.io", "v1", "deviceclasses")]
    store.create(classes, "", NIC_CLASS)
    store.create(classes, "", gpu_device_class())
    slices = _BY_PATH[("resource.k8s.io", "v1", "resourceslices")]
    store.create(slices, "", gpu_resource_slice(node, gpu_node_gpus()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m knd.lab.serve")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--node", default="knd-lab")
    p.add_argument("--url-file", type=Path, required=True)
    p.add_argument("--k8s-version", default="1.34")
    args = p.parse_args(argv)
    api = ApiServerEmulator(ObjectStore(args.k8s_version), port=args.port).start()
    seed(api, args.node)
    tmp = args.url_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(api.url + "\n")
    os.replace(tmp, args.url_file)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
