"""DraNet's flag syntax (Go's `flag` package, klog, component-base feature gates) for knd's parser.

Contract, each function a pure parser that raises `argparse.ArgumentTypeError` naming the bad
value (argparse turns it into a usage error, exit 2):

* `go_duration("1m30s")` → 90.0 seconds: Go's `time.ParseDuration` grammar (a sign, then one or
  more `<decimal><unit>` with units ns, us, µs, ms, s, m, h; `0` alone). A bare number is also
  accepted as seconds (knd's earlier syntax, so existing manifests keep working).
* `go_bool("t")` → True: Go's `strconv.ParseBool` set (1 t T TRUE true True / 0 f F FALSE false
  False), plus knd's earlier yes/no/on/off. A bare `--flag` means true (the parser's `const`).
* `feature_gates("A=true,B=false")` → `FeatureGates`: `Name=bool` pairs separated by commas,
  spaces around them ignored, each name one of DraNet's gates (an unknown gate is an error, as
  in component-base).
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 micro sign
    "μs": 1e-6,  # U+03BC Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_MAX_LEN = 64


def go_duration(value: str) -> float:
    """A Go duration (or a bare number of seconds) → seconds."""
    text = value.strip()
    if not text or len(text) > _MAX_LEN:
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}")
    try:
        seconds = float(text)  # knd's earlier syntax: plain seconds
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise argparse.ArgumentTypeError(f"invalid duration {value!r}")
        return seconds
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    total = 0.0
    pos = 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            raise argparse.ArgumentTypeError(
                f"invalid duration {value!r} (Go syntax: e.g. 2s, 500ms, 1m30s, 1h)"
            )
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}")
    return sign * total


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True", "yes", "on"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False", "no", "off"})


def go_bool(value: str) -> bool:
    """Go's `strconv.ParseBool` (plus yes/no/on/off)."""
    text = value.strip()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {value!r} (use true or false)")


#: DraNet's feature gates (pkg/features), both alpha and off by default.
LIST_TYPE_ATTRIBUTES = "DRAListTypeAttributes"
PERSISTENT_SLICE_ATTRIBUTES = "PersistentResourceSliceAttributes"
KNOWN_GATES = (LIST_TYPE_ATTRIBUTES, PERSISTENT_SLICE_ATTRIBUTES)


@dataclass(frozen=True)
class FeatureGates:
    """The enabled state of each of DraNet's gates."""

    list_type_attributes: bool = False
    persistent_slice_attributes: bool = False

    def __str__(self) -> str:
        return (
            f"{LIST_TYPE_ATTRIBUTES}={str(self.list_type_attributes).lower()},"
            f"{PERSISTENT_SLICE_ATTRIBUTES}={str(self.persistent_slice_attributes).lower()}"
        )


def feature_gates(value: str) -> FeatureGates:
    """`Name=true,Name2=false` → FeatureGates (later pairs override earlier ones)."""
    if len(value) > 1024:
        raise argparse.ArgumentTypeError("--feature-gates is longer than 1024 characters")
    state = {name: False for name in KNOWN_GATES}
    for item in value.split(","):
        pair = item.strip()
        if not pair:
            continue
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep:
            raise argparse.ArgumentTypeError(f"missing bool value for feature gate {name!r}")
        if name not in state:
            raise argparse.ArgumentTypeError(
                f"unrecognized feature gate {name!r} (known: {', '.join(KNOWN_GATES)})"
            )
        try:
            state[name] = go_bool(raw)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"feature gate {name}: {exc}") from exc
    return FeatureGates(
        list_type_attributes=state[LIST_TYPE_ATTRIBUTES],
        persistent_slice_attributes=state[PERSISTENT_SLICE_ATTRIBUTES],
    )


#: klog's flags (klog.InitFlags), accepted so DraNet manifests start; knd logs to stderr only.
KLOG_BOOL_FLAGS = (
    "logtostderr",
    "alsologtostderr",
    "add_dir_header",
    "skip_headers",
    "skip_log_headers",
    "one_output",
)
KLOG_VALUE_FLAGS = (
    "log_dir",
    "log_file",
    "log_file_max_size",
    "stderrthreshold",
    "vmodule",
    "log_backtrace_at",
)


def double_dash(argv: list[str], long_names: set[str]) -> list[str]:
    """Go's flag package takes `-name[=value]` for `--name[=value]`: rewrite the single-dash
    spelling of every name in `long_names` (names longer than one letter; `-v` is already a
    flag); everything after a bare `--` is left alone."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        single = arg.startswith("-") and not arg.startswith("--") and len(arg) > 2
        out.append("-" + arg if single and arg[1:].partition("=")[0] in long_names else arg)
    return out
