"""`knd config validate`: exit codes 0/1/2 and messages naming file, object and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from knd.cli.main import main

REPO = Path(__file__).resolve().parents[2]

BAD_CLAIM = """\
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: bad, namespace: team-a}
spec:
  devices:
    requests:
    - name: nic
      exactly: {deviceClassName: dra.net}
    config:
    - opaque:
        driver: gpu.nvidia.com
        parameters: {anything: goes}
    - opaque:
        driver: dra.net
        parameters:
          interface: {mtu: 20, vrf: {table: "x"}}
---
apiVersion: v1
kind: Pod
metadata: {name: ignored}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["config", "validate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_examples_are_all_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(REPO / "examples"))
    assert code == 0, out
    valid, total = out.splitlines()[-1].split(" configs valid")[0].split(" of ")
    assert int(total) > 0 and valid == total
    assert "claim-vrf.yaml (3 configs)" in out


def test_bad_field_exits_1_and_names_file_object_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD_CLAIM)
    code, out, _ = run(capsys, str(f))
    assert code == 1
    where = f"{f}: ResourceClaim/team-a/bad spec.devices.config[1].opaque.parameters"
    assert f"{where}: interface.vrf.table: must be an integer" in out
    # The foreign driver's config (index 0) and the Pod are not ours and not reported.
    assert "config[0]" not in out
    assert "1 of 1" not in out and "0 of 1 configs valid" in out


def test_semantic_error_after_types_are_fine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"interface": {"mtu": 20}}))
    code, out, _ = run(capsys, "-q", str(f))
    assert code == 1
    assert out.strip() == f"{f}: config: interface.mtu: must be an MTU (68..262140), got 20"


def test_rdma_only_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"interface": {"name": "ib0"}}))
    assert run(capsys, str(f))[0] == 0
    code, out, _ = run(capsys, "--rdma-only", str(f))
    assert code == 1 and "interface.name: not supported for an RDMA-only device" in out


def test_driver_name_selects_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD_CLAIM.replace("driver: dra.net", "driver: other.example.com"))
    assert run(capsys, str(f))[0] == 0
    assert run(capsys, "--driver-name", "other.example.com", str(f))[0] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), ("{not json", "cannot parse"), ("a: [", "cannot parse")],
)
def test_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    suffix = ".json" if content == "{not json" else ".yaml"
    f = tmp_path / f"x{suffix}"
    if content is not None:
        f.write_text(content)
    code, _, err = run(capsys, str(f))
    assert code == 2 and message in err


def test_empty_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, str(tmp_path))
    assert code == 2 and "no JSON or YAML files" in err


def test_console_script_end_to_end(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD_CLAIM)
    knd = Path(sys.executable).parent / "knd"
    ok = subprocess.run(
        [str(knd), "config", "validate", str(REPO / "examples")],
        capture_output=True,
        text=True,
        check=False,
    )
    bad = subprocess.run(
        [str(knd), "config", "validate", str(f)], capture_output=True, text=True, check=False
    )
    assert (ok.returncode, bad.returncode) == (0, 1)
    assert "interface.vrf.table: must be an integer" in bad.stdout
    usage = subprocess.run([str(knd)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2
