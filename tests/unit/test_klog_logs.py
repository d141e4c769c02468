"""Logs in klog's text and Kubernetes' JSON formats, and `--v` levels that apply to knd only."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator

import pytest

from knd.driver.logs import TRACE, setup_logging

pytestmark = pytest.mark.unit

HEADER = re.compile(
    r"^(?P<sev>[IWEF])(?P<mmdd>\d{4}) (?P<time>\d\d:\d\d:\d\d\.\d{6}) +(?P<pid>\d+) "
    r"(?P<caller>test_klog_logs\.py:\d+)\] (?P<rest>.*)$"
)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    setup_logging("text", verbosity=2)


def lines(stream: io.StringIO) -> list[str]:
    return [ln for ln in stream.getvalue().splitlines() if ln]


def test_text_lines_carry_klogs_header(stream: io.StringIO) -> None:
    setup_logging("text", verbosity=2, stream=stream)
    log = logging.getLogger("knd.test")
    log.info("published %d device(s)", 3)
    log.warning("careful")
    log.error("broken")
    parsed = [HEADER.match(ln) for ln in lines(stream)]
    assert all(parsed), lines(stream)
    assert [m["sev"] for m in parsed if m] == ["I", "W", "E"]
    first = parsed[0]
    assert first is not None
    assert first["rest"] == "published 3 device(s)" and int(first["pid"]) == os.getpid()


def test_text_with_context_is_klogs_structured_form(stream: io.StringIO) -> None:
    setup_logging("text", verbosity=2, stream=stream)
    logging.getLogger("knd.test").info(
        'attached "eth1"', extra={"pod": "ns/p", "device": "pci-0000-3b-00-0"}
    )
    m = HEADER.match(lines(stream)[0])
    assert m is not None
    assert m["rest"] == r'"attached \"eth1\"" pod="ns/p" device="pci-0000-3b-00-0"'


def test_json_lines_follow_the_kubernetes_json_format(stream: io.StringIO) -> None:
    setup_logging("json", verbosity=4, stream=stream)
    log = logging.getLogger("knd.test")
    log.info("hello", extra={"claim": "ns/c"})
    log.debug("details")
    try:
        raise OSError("no such device")
    except OSError:
        log.exception("attach failed")
    info, debug, error = (json.loads(ln) for ln in lines(stream))
    assert isinstance(info["ts"], float) and info["caller"].startswith("test_klog_logs.py:")
    assert (info["msg"], info["v"], info["claim"]) == ("hello", 0, "ns/c")
    assert debug["v"] == 4
    assert "v" not in error and "OSError: no such device" in error["err"]


@pytest.mark.parametrize(
    ("verbosity", "knd_debug", "knd_trace", "library_debug"),
    [
        (0, False, False, False),
        (2, False, False, False),
        (4, True, False, False),
        (5, True, True, False),
        (10, True, True, True),
    ],
)
def test_verbosity_opens_knd_before_its_libraries(
    stream: io.StringIO, verbosity: int, knd_debug: bool, knd_trace: bool, library_debug: bool
) -> None:
    setup_logging("text", verbosity=verbosity, stream=stream)
    logging.getLogger("knd.test_klog.debug").debug("knd debug")
    logging.getLogger("knd.test_klog.trace").log(TRACE, "knd trace")
    logging.getLogger("pyroute2.netlink").debug("library debug")
    logging.getLogger("asyncio").info("library info")
    logging.getLogger("pyroute2").warning("library warning")
    text = stream.getvalue()
    assert ("knd debug" in text) is knd_debug
    assert ("knd trace" in text) is knd_trace
    assert ("library debug" in text) is library_debug
    assert ("library info" in text) is library_debug
    assert "library warning" in text  # warnings from anyone always show
