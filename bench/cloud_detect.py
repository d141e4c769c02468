"""Cloud-provider start-up cost off a cloud (no root needed).

What `knd driver` pays at start-up to learn it is on no cloud: `CloudState("").start()`
(detection: DMI, then every metadata server probed in parallel), in three environments:
* `refused`: the metadata address refuses connections (nothing listens on the port);
* `blackhole`: it accepts connections and never answers (the worst case: every probe waits its
  timeout);
* `this host`: the real link-local address of this machine.
Baseline in the same run: `CloudState("NONE").start()` (the hint skips detection: the floor).
DraNet, for comparison, probes one cloud after another with up to 5 s each (up to ~25 s in the
black-hole case). Prints medians and the added delay, and ends with `RESULT {json}` (keys
`refused_ms`, `blackhole_ms`, `this_host_ms`, `baseline_ms`). Goal: added delay < 1 s.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from knd.host.sysfs import SysfsRoot
from knd.inventory.cloud.state import CloudState

ROUNDS = 7
NO_DMI = SysfsRoot(Path("/nonexistent-sysfs"))


def timed(fn: Callable[[], object]) -> float:
    fn()
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def start(hint: str, endpoint: str) -> None:
    CloudState(hint, sysfs=NO_DMI, endpoint_override=endpoint).start(wait=3.0)


def main() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(256)
    blackhole = f"http://127.0.0.1:{hole.getsockname()[1]}"
    results = {
        "baseline_ms": timed(lambda: start("NONE", refused)),
        "refused_ms": timed(lambda: start("", refused)),
        "blackhole_ms": timed(lambda: start("", blackhole)),
        "this_host_ms": timed(lambda: start("", "")),
    }
    hole.close()
    base = results["baseline_ms"]
    for key, value in results.items():
        print(f"{key:14s} {value:8.1f} ms   added {value - base:8.1f} ms")
    print("RESULT " + json.dumps({k: round(v, 1) for k, v in results.items()}))


if __name__ == "__main__":
    main()
