"""`knd driver` that pauses before one attach step: the daemon of kill point (b) in
test_restart_faults.py. The pause is a test-side step observer (tests.step_faults.PauseBefore)
handed to the daemon through `knd.cli.driver_cmd.run`; the product has no switch for it.

    python -m tests.e2e.knd_paused STEP SECONDS [knd driver flags...]

Every attach of this daemon logs `fault injection: pausing ... before attach step STEP` and
then sleeps SECONDS before STEP, so the test can SIGKILL it at that point.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from knd.cli.driver_cmd import run
from knd.cli.main import build_parser
from knd.netns.steps import AttachStep
from tests.step_faults import PauseBefore


def main(argv: Sequence[str]) -> int:
    """Run the daemon with the pause; exit status as `knd driver`'s."""
    step, seconds, *flags = argv
    observer = PauseBefore(AttachStep(step), float(seconds))
    return run(build_parser().parse_args(["driver", *flags]), step_observer=observer)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
