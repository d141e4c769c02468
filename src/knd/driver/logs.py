"""Structured logging: text or JSON lines, with pod/claim/device keys and `-v` levels.

`setup_logging(fmt, verbosity)` configures the root logger once. Call sites pass context with
`extra={"pod": ..., "claim": ..., "device": ...}` (any of them); the JSON form always carries
`time`, `level`, `logger`, `msg` and whichever context keys were given. Verbosity follows klog:
`-v 0-3` INFO, `-v 4+` DEBUG.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

CONTEXT_KEYS = ("pod", "pod_uid", "claim", "device", "request", "sandbox", "method")
DEBUG_VERBOSITY = 4


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            if key in record.__dict__:
                data[key] = record.__dict__[key]
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger: msg key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        ctx = " ".join(f"{k}={record.__dict__[k]}" for k in CONTEXT_KEYS if k in record.__dict__)
        base = (
            f"{time.strftime('%H:%M:%S', time.gmtime(record.created))} "
            f"{record.levelname[0]} {record.name}: {record.getMessage()}"
        )
        line = f"{base} {ctx}" if ctx else base
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(fmt: str = "text", verbosity: int = 2, stream: TextIO | None = None) -> None:
    """Configure the root logger (replacing earlier handlers)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= DEBUG_VERBOSITY else logging.INFO)
