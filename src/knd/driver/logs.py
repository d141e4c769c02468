"""Logging in klog's formats, with DraNet's `--v` levels, applied to knd's loggers only.

`setup_logging(fmt, verbosity)` configures the root logger once (replacing earlier handlers).
Call sites pass context with `extra={"pod": ..., "claim": ..., "device": ...}` (any of them).

* text (klog's header): `I1130 16:30:05.123456   12345 daemon.py:123] message`, the letter
  being I/W/E/F, then month+day, time with microseconds (UTC), the process id, the source file
  and line. With context keys the line is in klog's structured form:
  `... hooks.py:42] "attached eth1" pod="ns/p" device="dev"`.
* json (Kubernetes' JSON log format): `{"ts": <unix seconds, float>, "caller": "file:line",
  "msg": ..., "v": <verbosity>}` plus the context keys, `logger` and `level`; an exception
  goes in `err` (and errors carry no `v`, as in component-base).

Verbosity, as klog's `--v`: 0-3 log knd's INFO and above (knd's INFO is klog's V(0)-V(2));
4 adds knd's DEBUG (klog V(4)); 5 and more add knd's TRACE (level 5). Other libraries' loggers
(pyroute2, asyncio, grpc, urllib3, ...) stay at WARNING whatever `--v` says, so `--v=4` debugs
knd, not its dependencies; `--v=10` (`LIBRARY_DEBUG_VERBOSITY`) opens them too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import TextIO

CONTEXT_KEYS = ("pod", "pod_uid", "claim", "device", "request", "sandbox", "method")
DEBUG_VERBOSITY = 4
TRACE = 5
TRACE_VERBOSITY = 5
LIBRARY_DEBUG_VERBOSITY = 10
#: knd's own loggers all live under this name.
KND_LOGGER = "knd"

logging.addLevelName(TRACE, "TRACE")

_LETTER = {"DEBUG": "I", "TRACE": "I", "INFO": "I", "WARNING": "W", "ERROR": "E", "CRITICAL": "F"}


def _verbosity_of(record: logging.LogRecord) -> int:
    """The klog V level a record stands for (INFO=0, DEBUG=4, TRACE=5)."""
    if record.levelno <= TRACE:
        return TRACE_VERBOSITY
    if record.levelno <= logging.DEBUG:
        return DEBUG_VERBOSITY
    return 0


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {k: record.__dict__[k] for k in CONTEXT_KEYS if k in record.__dict__}


class KlogTextFormatter(logging.Formatter):
    """klog's text format (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        t = time.gmtime(record.created)
        micros = int((record.created % 1) * 1_000_000)
        header = (
            f"{_LETTER.get(record.levelname, 'I')}{time.strftime('%m%d %H:%M:%S', t)}"
            f".{micros:06d} {record.process or os.getpid():7d} "
            f"{record.filename}:{record.lineno}]"
        )
        message = record.getMessage()
        ctx = _context(record)
        if ctx:
            pairs = " ".join(f"{k}={json.dumps(str(v))}" for k, v in ctx.items())
            line = f"{header} {json.dumps(message)} {pairs}"
        else:
            line = f"{header} {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class KlogJsonFormatter(logging.Formatter):
    """Kubernetes' JSON log format (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": round(record.created, 6),
            "caller": f"{record.filename}:{record.lineno}",
            "msg": record.getMessage(),
        }
        if record.levelno < logging.ERROR:
            data["v"] = _verbosity_of(record)
        data["level"] = record.levelname.lower()
        data["logger"] = record.name
        data.update(_context(record))
        if record.exc_info:
            data["err"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


#: Kept for callers of the earlier names.
TextFormatter = KlogTextFormatter
JsonFormatter = KlogJsonFormatter


def knd_level(verbosity: int) -> int:
    """The level of knd's loggers for a `--v`."""
    if verbosity >= TRACE_VERBOSITY:
        return TRACE
    if verbosity >= DEBUG_VERBOSITY:
        return logging.DEBUG
    return logging.INFO


def setup_logging(fmt: str = "text", verbosity: int = 2, stream: TextIO | None = None) -> None:
    """Configure the root logger (replacing earlier handlers) and knd's level (see above)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KlogJsonFormatter() if fmt == "json" else KlogTextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if verbosity >= LIBRARY_DEBUG_VERBOSITY:
        root.setLevel(logging.DEBUG)
    else:
        root.setLevel(logging.WARNING)
    logging.getLogger(KND_LOGGER).setLevel(knd_level(verbosity))
