"""knd's kubelet protos restate the upstream wire exactly, and the generated code is current.

Upstream: Debian's golang-github-kubernetes-kubelet-dev (fetched by scripts/upstream-protos
into .local/), which ships DRA v1beta1 and pluginregistration v1. DRA v1 must equal v1beta1
plus `optional string share_id = 5`. The health v1alpha1 proto is not in that package; its
service and method path are checked against knd.kubelet.wire.
"""

from __future__ import annotations

import filecmp
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from knd._proto.kubelet import (
    dra_v1_pb2,
    dra_v1beta1_pb2,
    health_v1alpha1_pb2,
    pluginregistration_v1_pb2,
)
from knd.kubelet import wire

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
_GOGO = re.compile(r'^\s*(import\s+"github\.com/gogo/.*|option\s+\(gogoproto\..*)$', re.M)
_GOGO_FIELD = re.compile(r"\s*\[\(gogoproto\.[^\]]*\]")


@pytest.fixture(scope="session")
def upstream_root() -> Path:
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "upstream-protos")],
        check=False,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        reason = f"upstream protos unavailable (apt unreachable?): {proc.stderr.strip()[-300:]}"
        print(reason)
        pytest.skip(reason)
    return Path(proc.stdout.strip().splitlines()[-1])


def _compile_upstream(root: Path, rel: str, tmp: Path) -> descriptor_pb2.FileDescriptorProto:
    text = (root / rel).read_text()
    stripped = _GOGO_FIELD.sub("", _GOGO.sub("", text))
    src = tmp / "src"
    (src / Path(rel).parent).mkdir(parents=True, exist_ok=True)
    (src / rel).write_text(stripped)
    out = tmp / (rel.replace("/", "_") + ".pb")
    rc = protoc.main(["protoc", f"-I{src}", f"--descriptor_set_out={out}", str(src / rel)])
    assert rc == 0, f"protoc failed on upstream {rel}"
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return fds.file[0]


def _ours(module: Any) -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(fdp)
    return fdp


def _wire(fdp: descriptor_pb2.FileDescriptorProto) -> dict[str, Any]:
    """Everything that matters on the wire, nothing cosmetic (comments, options, file name)."""

    def message(m: descriptor_pb2.DescriptorProto) -> dict[str, Any]:
        return {
            "fields": sorted(
                (
                    f.name,
                    f.number,
                    f.type,
                    f.label,
                    f.type_name.rsplit(".", 1)[-1],
                    f.proto3_optional,
                )
                for f in m.field
            ),
            "nested": {n.name: message(n) for n in m.nested_type},
            "map_entry": m.options.map_entry,
            "oneofs": [o.name for o in m.oneof_decl],
        }

    return {
        "package": fdp.package,
        "syntax": fdp.syntax,
        "messages": {m.name: message(m) for m in fdp.message_type},
        "enums": {e.name: [(v.name, v.number) for v in e.value] for e in fdp.enum_type},
        "services": {
            s.name: sorted(
                (
                    m.name,
                    m.input_type.rsplit(".", 1)[-1],
                    m.output_type.rsplit(".", 1)[-1],
                    m.client_streaming,
                    m.server_streaming,
                )
                for m in s.method
            )
            for s in fdp.service
        },
    }


def test_dra_v1beta1_matches_upstream(upstream_root: Path, tmp_path: Path) -> None:
    upstream = _compile_upstream(
        upstream_root, "k8s.io/kubelet/pkg/apis/dra/v1beta1/api.proto", tmp_path
    )
    assert set(_wire(upstream)["messages"]) >= {"Device", "Claim", "NodePrepareResourcesRequest"}
    assert _wire(_ours(dra_v1beta1_pb2)) == _wire(upstream)


def test_pluginregistration_matches_upstream(upstream_root: Path, tmp_path: Path) -> None:
    rel = "k8s.io/kubelet/pkg/apis/pluginregistration/v1/api.proto"
    upstream = _compile_upstream(upstream_root, rel, tmp_path)
    assert _wire(_ours(pluginregistration_v1_pb2)) == _wire(upstream)


def test_dra_v1_is_v1beta1_plus_share_id() -> None:
    v1 = _wire(_ours(dra_v1_pb2))
    beta = _wire(_ours(dra_v1beta1_pb2))
    assert v1["package"] == "k8s.io.kubelet.pkg.apis.dra.v1"
    assert beta["package"] == "k8s.io.kubelet.pkg.apis.dra.v1beta1"
    share_id = (
        "share_id",
        5,
        descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        "",
        True,
    )
    assert share_id in v1["messages"]["Device"]["fields"]
    v1["messages"]["Device"]["fields"].remove(share_id)
    assert v1["messages"]["Device"]["oneofs"] == ["_share_id"]  # proto3 optional's synthetic oneof
    v1["messages"]["Device"]["oneofs"] = []
    del v1["package"], beta["package"]
    assert v1 == beta


def test_wire_names_match_descriptors() -> None:
    services = {
        s.full_name: sorted(s.methods_by_name)
        for mod in (dra_v1_pb2, dra_v1beta1_pb2, pluginregistration_v1_pb2, health_v1alpha1_pb2)
        for s in mod.DESCRIPTOR.services_by_name.values()
    }
    assert services == {
        wire.DRA_V1_SERVICE: [wire.PREPARE, wire.UNPREPARE],
        wire.DRA_V1BETA1_SERVICE: [wire.PREPARE, wire.UNPREPARE],
        wire.REGISTRATION_SERVICE: [wire.GET_INFO, wire.NOTIFY],
        wire.HEALTH_V1ALPHA1_SERVICE: [wire.WATCH],
    }
    watch = health_v1alpha1_pb2.DESCRIPTOR.services_by_name["DRAResourceHealth"].methods_by_name
    assert watch[wire.WATCH].server_streaming and not watch[wire.WATCH].client_streaming
    # supported_versions entries name `<last package component>.<Service>` of served services.
    assert wire.SUPPORTED_VERSIONS == (
        "v1.DRAPlugin",
        "v1beta1.DRAPlugin",
        "v1alpha1.DRAResourceHealth",
    )
    for entry in wire.SUPPORTED_VERSIONS:
        assert any(full.endswith(entry) for full in services), entry


def test_generated_code_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run(
        ["bash", str(REPO / "scripts" / "gen-proto-kubelet"), str(out)],
        check=True,
        capture_output=True,
        cwd=REPO,
        env={"VENV": str(REPO / ".venv"), "PATH": "/usr/bin:/bin"},
    )
    committed = REPO / "src" / "knd" / "_proto" / "kubelet"
    generated = sorted(p.name for p in (out / "kubelet").iterdir())
    assert generated == sorted(p.name for p in committed.iterdir() if p.name != "__pycache__")
    _match, mismatch, errors = filecmp.cmpfiles(
        out / "kubelet", committed, generated, shallow=False
    )
    assert mismatch == [] and errors == [], f"regenerate with scripts/gen-proto-kubelet: {mismatch}"
