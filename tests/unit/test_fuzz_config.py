"""Hypothesis fuzzing of config input: the document parser and the config decoder.

Contracts: `parse_documents` raises nothing but DocumentError for any bytes (and stays within
its limits); `check_parameters` raises nothing but ConfigError for any JSON or YAML value;
`knd config validate` ends with exit status 0, 1 or 2 and never a traceback.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from knd.api.check import check_parameters
from knd.api.documents import DocumentError, parse_documents
from knd.api.errors import ConfigError
from knd.cli.main import main
from tests.fuzz_budget import fuzz

pytestmark = pytest.mark.unit

KEYS = st.sampled_from(
    [
        "interface",
        "routes",
        "rules",
        "neighbors",
        "ethtool",
        "vrf",
        "name",
        "mtu",
        "addresses",
        "dhcp",
        "destination",
        "gateway",
        "table",
        "scope",
        "features",
        "privateFlags",
        "hardwareAddr",
        "priority",
        "source",
        "ip",
        "x",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
JSONISH = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=8)), children, max_size=6),
    ),
    max_leaves=40,
)
YAML_PIECES = st.sampled_from(
    [
        b"&a [1, 2]\n",
        b"*a\n",
        b"- ",
        b"  ",
        b": ",
        b"{",
        b"}",
        b"[",
        b"]",
        b"---\n",
        b"!!python/object:os.system ls\n",
        b"!!binary aGk=\n",
        b"? ",
        b"interface: {name: eth0, mtu: 1500}\n",
        b"2001-12-14t21:59:43.10-05:00\n",
        b"\xff\xfe",
        b"<<: *a\n",
        b'"\\u0000"',
    ]
)


@fuzz()
@given(data=st.binary(max_size=2048), json_only=st.booleans())
def test_random_bytes_only_raise_document_error(data: bytes, json_only: bool) -> None:
    try:
        docs = parse_documents(data, "fuzz", json_only=json_only)
    except DocumentError:
        return
    assert isinstance(docs, list)


@fuzz()
@given(pieces=st.lists(YAML_PIECES, max_size=30))
def test_yaml_fragments_only_raise_document_error(pieces: list[bytes]) -> None:
    try:
        parse_documents(b"".join(pieces), "fuzz")
    except DocumentError:
        return


@fuzz()
@given(value=JSONISH, rdma_only=st.booleans())
def test_decoder_only_raises_config_error(value: object, rdma_only: bool) -> None:
    try:
        check_parameters(value, rdma_only=rdma_only)
    except ConfigError as exc:
        assert exc.errors  # every rejection names at least one field


@fuzz(0.25)
@given(value=JSONISH, as_yaml=st.booleans())
def test_validate_command_never_ends_in_a_traceback(
    tmp_path_factory: pytest.TempPathFactory, value: object, as_yaml: bool
) -> None:
    d = tmp_path_factory.mktemp("cfg")
    if as_yaml:
        path = d / "c.yaml"
        path.write_text(yaml.safe_dump(value))
    else:
        try:
            text = json.dumps(value, allow_nan=False)
        except ValueError:
            text = "{"  # not JSON: must be a usage error
        path = d / "c.json"
        path.write_text(text)
    assert main(["config", "validate", "-q", str(path)]) in (0, 1, 2)


# ------------------------------------------------------------------ limits, with hostile input


def test_anchor_bomb_fails_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines))
    assert main(["config", "validate", str(path)]) == 2
    assert "aliases" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("deep.json", b"[" * 200_000 + b"]" * 200_000, "nested"),
        ("deep.yaml", b"[" * 200_000 + b"]" * 200_000, "nested"),
        ("deep-block.yaml", "".join(f"{' ' * i}a:\n" for i in range(150)).encode(), "nested"),
        ("rec.yaml", b"&a [*a]\n", "recursive"),
        ("big.json", b" " * (3 * 1024 * 1024 + 1), "limit"),
        ("bad.json", b"\xff\xfe{", "UTF-8"),
        ("many.yaml", b"- 0\n" * 200_000, "nodes"),
        ("python.yaml", b"!!python/object/apply:os.system [ls]\n", "cannot parse"),
    ],
)
def test_hostile_files_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, data: bytes, needle: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    assert main(["config", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and name in err
    assert "Traceback" not in err


def test_fifo_and_device_are_refused_without_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "cfg.yaml"
    os.mkfifo(fifo)
    assert main(["config", "validate", str(fifo)]) == 2
    assert main(["config", "validate", "/dev/zero"]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_dash_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = b'{"interface": {"name": "eth1", "mtu": 9000}}'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(good)))
    assert main(["config", "validate", "-"]) == 0
    assert "ok <stdin>" in capsys.readouterr().out
    bad = b"interface:\n  name: ../etc\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(bad)))
    assert main(["config", "validate", "-"]) == 1
    assert "<stdin>" in capsys.readouterr().out
    huge = b"#" * (3 * 1024 * 1024 + 10)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(huge)))
    assert main(["config", "validate", "-"]) == 2
