"""The committed generated code in src/knd/_proto is what scripts/gen-proto produces from the
project's own .proto files (reproducibility), and the restated wire numbers that matter hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from knd._proto import cri_pb2, nri_pb2, ttrpc_pb2

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_generated_python_matches_the_proto_sources(tmp_path: Path) -> None:
    protos = sorted((ROOT / "proto" / "knd" / "_proto").glob("*.proto"))
    args = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{ROOT / 'proto'}",
        f"--python_out={tmp_path}",
    ]
    subprocess.run([*args, *map(str, protos)], check=True, capture_output=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'proto'}",
            f"--grpc_python_out={tmp_path}",
            str(ROOT / "proto" / "knd" / "_proto" / "cri.proto"),
        ],
        check=True,
        capture_output=True,
    )
    generated = sorted((tmp_path / "knd" / "_proto").glob("*.py"))
    assert [p.name for p in generated] == [
        "cri_pb2.py",
        "cri_pb2_grpc.py",
        "nri_pb2.py",
        "ttrpc_pb2.py",
    ]
    for path in generated:
        committed = ROOT / "src" / "knd" / "_proto" / path.name
        assert committed.read_text() == path.read_text(), f"{path.name}: run scripts/gen-proto"
    shutil.rmtree(tmp_path / "knd")


def test_wire_numbers_that_knd_depends_on() -> None:
    f = {d.name: d.number for d in nri_pb2.ConfigureResponse.DESCRIPTOR.fields}
    assert f == {"events": 2}  # there is no field 1
    adj = {d.name: d.number for d in nri_pb2.ContainerAdjustment.DESCRIPTOR.fields}
    assert adj["linux"] == 6 and 1 not in adj.values()
    pod = {d.name: d.number for d in nri_pb2.PodSandbox.DESCRIPTOR.fields}
    assert (pod["linux"], pod["ips"], pod["uid"]) == (8, 10, 3)
    assert nri_pb2.StateChangeEvent.DESCRIPTOR.fields_by_name["event"].number == 1
    assert nri_pb2.SynchronizeRequest.DESCRIPTOR.fields_by_name["more"].number == 3
    assert ttrpc_pb2.Request.DESCRIPTOR.fields_by_name["timeout_nano"].number == 4
    assert cri_pb2.ContainerConfig.DESCRIPTOR.fields_by_name["linux"].number == 15
    assert (
        cri_pb2.DESCRIPTOR.package == "runtime.v1"
        and nri_pb2.DESCRIPTOR.package == "nri.pkg.api.v1alpha1"
    )
