"""`knd explain` reads what users have at hand: `kubectl get resourceslices,deviceclasses -o yaml`
(one `kind: List`), knd's own `knd inventory --slices` output, standard input and pipes; and its
`-o json|yaml` is one `kind: List` of the claims with their allocation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from knd.cli.main import main
from tests.fixtures import pciids as test_ids
from tests.fixtures.sysfs import write_tree

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]

DRA_NET_CLASS: dict[str, Any] = {
    "apiVersion": "resource.k8s.io/v1",
    "kind": "DeviceClass",
    "metadata": {"name": "dra.net", "resourceVersion": "17", "uid": "u-1"},
    "spec": {"selectors": [{"cel": {"expression": 'device.driver == "dra.net"'}}]},
}


def claim(name: str, expression: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "nic",
                        "exactly": {
                            "deviceClassName": "dra.net",
                            "selectors": [{"cel": {"expression": expression}}],
                        },
                    }
                ]
            }
        },
    }


RDMA_CLAIM = claim("rdma", 'device.attributes["dra.net"].rdma == true')
NUMA9_CLAIM = claim("numa9", 'device.attributes["resource.kubernetes.io"].numaNode == 9')


def inventory_slices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """`knd inventory --slices` of the GPU-node fixture tree, as YAML text parsed."""
    root = write_tree("gpu-node", tmp_path / "sys")
    ids = test_ids.write(tmp_path / "pci.ids")
    argv = ["inventory", "--sysfs-root", str(root), "--pci-ids", str(ids)]
    assert main([*argv, "--slices", "--node-name", "gpu-node-1"]) == 0
    listed: dict[str, Any] = yaml.safe_load(capsys.readouterr().out)
    return listed


def kubectl_get_output(slices: list[dict[str, Any]]) -> dict[str, Any]:
    """What `kubectl get resourceslices,deviceclasses -o yaml` prints: one v1 List, objects with
    server-set metadata (names, uids, managedFields)."""
    items = []
    for i, original in enumerate(slices):
        s = json.loads(json.dumps(original))
        meta = s["metadata"]
        meta["name"] = meta.pop("generateName") + f"x{i}"
        meta.update({"uid": f"s-{i}", "resourceVersion": "42", "managedFields": []})
        items.append(s)
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [*items, DRA_NET_CLASS],
    }


def write(path: Path, *docs: Any) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_reads_knd_inventory_slices_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = inventory_slices(tmp_path, capsys)
    assert listed["kind"] == "List" and listed["items"]
    slices = write(tmp_path / "slices.yaml", listed, DRA_NET_CLASS)
    claims = write(tmp_path / "claims.yaml", RDMA_CLAIM)
    assert main(["explain", str(claims), "--slices", str(slices)]) == 0
    out = capsys.readouterr().out
    # The GPU node has 8 RoCE NICs and one gVNIC: all 9 are candidates, 8 pass the selector.
    assert "request nic (class dra.net, ExactCount 1): 8 of 9 devices kept" in out
    assert "allocated nic -> dra.net/gpu-node-1/pci-0000-11-00-0" in out


def test_reads_kubectl_get_list_from_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = inventory_slices(tmp_path, capsys)
    text = yaml.safe_dump(kubectl_get_output(listed["items"]))
    claims = write(tmp_path / "claims.yaml", RDMA_CLAIM, NUMA9_CLAIM)

    class Stdin:
        buffer = __import__("io").BytesIO(text.encode())

    monkeypatch.setattr(sys, "stdin", Stdin)
    assert main(["explain", str(claims), "--slices", "-"]) == 1  # numa9 cannot allocate
    out = capsys.readouterr().out
    assert "== ResourceClaim/default/rdma" in out and "allocated nic -> dra.net/gpu-node-1/" in out
    assert "== ResourceClaim/default/numa9" in out and "UNSATISFIABLE" in out


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_output_is_a_list_of_claims_with_allocation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    listed = inventory_slices(tmp_path, capsys)
    slices = write(tmp_path / "slices.yaml", kubectl_get_output(listed["items"]))
    claims = write(tmp_path / "claims.yaml", RDMA_CLAIM, NUMA9_CLAIM)
    assert main(["explain", str(claims), "--slices", str(slices), "-o", fmt]) == 1
    text = capsys.readouterr().out
    report = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert (report["apiVersion"], report["kind"]) == ("v1", "List")
    rdma, numa9 = report["items"]
    assert rdma["metadata"]["annotations"]["explain.knd.dev/result"] == "allocatable"
    (result,) = rdma["status"]["allocation"]["devices"]["results"]
    assert (result["driver"], result["pool"], result["request"]) == ("dra.net", "gpu-node-1", "nic")
    assert "status" not in numa9
    why = numa9["metadata"]["annotations"]["explain.knd.dev/result"]
    assert why != "allocatable" and "nic" in why, why


def test_process_substitution_as_in_the_readme(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`knd explain CLAIM.yaml --slices <(kubectl get resourceslices -o yaml)`: the shell hands a
    pipe (/dev/fd/N), not a regular file. Run through bash with the installed `knd` command."""
    listed = inventory_slices(tmp_path, capsys)
    listed_path = write(tmp_path / "kubectl-out.yaml", kubectl_get_output(listed["items"]))
    claims = write(tmp_path / "claim.yaml", RDMA_CLAIM)
    knd = Path(sys.executable).parent / "knd"
    proc = subprocess.run(
        ["bash", "-c", f'"{knd}" explain "{claims}" --slices <(cat "{listed_path}")'],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "allocated nic -> dra.net/gpu-node-1/" in proc.stdout


def test_oversized_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from knd.api.documents import MAX_INPUT_BYTES

    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(MAX_INPUT_BYTES + 1)
    claims = write(tmp_path / "claim.yaml", RDMA_CLAIM)
    assert main(["explain", str(claims), "--slices", str(big)]) == 2
    assert "larger than" in capsys.readouterr().err
