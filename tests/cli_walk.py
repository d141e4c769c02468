"""Run many `knd` command lines in one process (the CLI walk of tests/unit/test_cli_hostile.py).

`python -m tests.cli_walk CASES.json RESULTS.json`: CASES is a JSON list of argv lists. For
each, `knd.cli.main.main(argv)` runs with stdout/stderr captured; an exception escaping `main`
is recorded as a traceback. Results: one {argv, code, stderr, traceback} per case, written
after every case so a hang still leaves the cases before it.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback

from knd.cli.main import main as knd_main


def run_case(argv: list[str]) -> dict[str, object]:
    err = io.StringIO()
    out = io.StringIO()
    code: object = None
    tb = ""
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = knd_main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:
            tb = traceback.format_exc()
    return {"argv": argv, "code": code, "stderr": err.getvalue()[-2000:], "traceback": tb}


def main() -> None:
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    results = []
    for argv in cases:
        results.append(run_case(argv))
        with open(sys.argv[2], "w") as fh:
            json.dump(results, fh)


if __name__ == "__main__":
    main()
