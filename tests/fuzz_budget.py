"""One fuzz budget for every hypothesis fuzz target (tests/unit, "fuzz" in the file or test name).

CI runs a fixed, small budget: `FUZZ_EXAMPLES` examples per target (default 200). For a long run
set `KND_FUZZ_EXAMPLES` (`scripts/fuzz` does: 20 000 per target by default). Deadlines are off
(never assert timing); health checks about slow data generation are off (the generated sysfs
trees and sockets are slow to build by design).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ_EXAMPLES = int(os.environ.get("KND_FUZZ_EXAMPLES", "200"))


def fuzz(scale: float = 1.0) -> settings:
    """Settings for one fuzz target; `scale` shrinks the budget of expensive targets."""
    return settings(
        max_examples=max(1, int(FUZZ_EXAMPLES * scale)),
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
