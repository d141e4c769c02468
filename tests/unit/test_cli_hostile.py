"""Every `knd` subcommand with hostile arguments and files ends with a message and a status
(0, 1 or 2), in bounded time, never a traceback.

The cases run in one child process (`tests/cli_walk.py`, `main()` called per case with its
output captured): a hang or a memory blow-up would take the test process with it otherwise, and
one process imports knd once. Hostile files live in the test's tmp dir; `/dev/zero` is
only ever named, never created.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from knd.cli.main import build_parser
from tests.fixtures.sysfs import write_tree

pytestmark = pytest.mark.unit

#: Contract deadline for the whole walk (about 30 s here; ≥5x margin).
DEADLINE_S = 300


def _hostile_files(d: Path) -> dict[str, str]:
    d.mkdir()
    files = {
        "garbage": d / "garbage.yaml",
        "nul": d / "nul.json",
        "deep_json": d / "deep.json",
        "deep_yaml": d / "deep.yaml",
        "bomb": d / "bomb.yaml",
        "list": d / "list.yaml",
        "scalar": d / "scalar.yaml",
        "manifest_odd": d / "odd.yaml",
        "big": d / "big.json",
    }
    files["garbage"].write_bytes(bytes(range(256)) * 8)
    files["nul"].write_bytes(b'{"a": "\x00"}\x00')
    files["deep_json"].write_bytes(b"[" * 100_000 + b"]" * 100_000)
    files["deep_yaml"].write_bytes(b"a: " * 50_000 + b"1")
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    files["bomb"].write_text("\n".join(lines))
    files["list"].write_text("- 1\n- [2]\n")
    files["scalar"].write_text("just a string\n")
    files["manifest_odd"].write_text(
        "kind: ResourceClaim\nmetadata: [1]\nspec: {devices: 7}\n---\n"
        "kind: ResourceSlice\nspec: [x]\n---\nkind: DeviceClass\nmetadata: {name: {a: 1}}\n"
    )
    with open(files["big"], "wb") as fh:
        fh.truncate(8 * 1024 * 1024)
    fifo = d / "fifo.yaml"
    os.mkfifo(fifo)
    loop = d / "loopdir"
    loop.mkdir()
    os.symlink(loop, loop / "again")
    out = {k: str(v) for k, v in files.items()}
    out.update(fifo=str(fifo), loop=str(loop), devzero="/dev/zero", missing=str(d / "nope"))
    return out


def _hostile_sysfs(root: Path, outside: Path) -> str:
    tree = write_tree("sriov", root)
    outside.write_text("root:x:0:0:root:/root:/bin/bash\n")
    nd = tree / "class" / "net" / "ens1f0"
    (nd / "address").unlink()
    os.symlink(outside, nd / "address")
    (nd / "mtu").unlink()
    os.mkfifo(nd / "mtu")
    (tree / "bus" / "pci" / "devices" / "0000:5e:00.0" / "numa_node").write_text("1_0\n")
    return str(tree)


def _cases(tmp: Path) -> list[list[str]]:
    f = _hostile_files(tmp / "files")
    sysfs = _hostile_sysfs(tmp / "sys", tmp / "secret")
    state = tmp / "lab"
    state.mkdir()
    (state / "state.json").write_bytes(b"\xff[[[")
    hostile_paths = [f[k] for k in f]
    cases: list[list[str]] = [[], ["config"], ["lab"], ["--bogus-flag"]]
    cases += [["config", "validate", p] for p in hostile_paths]
    cases += [["config", "validate", "--driver-name", "x" * 300, f["manifest_odd"]]]
    cases += [["explain", p] for p in hostile_paths]
    cases += [["explain", f["manifest_odd"], "--slices", f["manifest_odd"], "-v", "-o", "json"]]
    cases += [["explain", f["manifest_odd"], "--lab", "--lab-state-dir", str(state)]]
    cases += [["inventory", "--sysfs-root", p] for p in (f["missing"], f["garbage"], f["fifo"])]
    cases += [
        ["inventory", "--sysfs-root", sysfs, "--pci-ids", p]
        for p in (f["devzero"], f["fifo"], f["garbage"], f["big"])
    ]
    cases += [
        ["inventory", "--sysfs-root", sysfs, "--filter", "(((("],
        ["inventory", "--sysfs-root", sysfs, "--filter", "device.attributes['x'].y.z == 1"],
        ["inventory", "--sysfs-root", sysfs, "-o", "yaml"],
        [
            "inventory",
            "--sysfs-root",
            sysfs,
            "--slices",
            "--node-name",
            "N" * 300,
            "--driver-name",
            "Not A Name",
        ],
    ]
    for p in (f["devzero"], f["fifo"], f["garbage"], f["bomb"], f["scalar"], f["missing"]):
        cases += [
            ["driver", "--kubeconfig", p, "--sysfs-root", sysfs, "--bind-address", "127.0.0.1:0"],
            [
                "kubelet-plugin",
                "--kubeconfig",
                p,
                "--db-path",
                str(tmp / "k.db"),
                "--kubelet-root-dir",
                str(tmp / "kubelet"),
            ],
        ]
    cases += [
        ["driver", "--sysfs-root", f["missing"]],
        ["driver", "--sysfs-root", f["garbage"]],
        ["driver", "--bind-address", "not-an-address"],
        ["driver", "--bind-address", ":99999999"],
        ["driver", "--filter", "(((("],
        ["driver", "--nri-plugin-index", "-5"],
        ["kubelet-plugin", "--sysfs-root", f["missing"]],
        ["kubelet-plugin", "--db-path", f["devzero"], "--apiserver", "http://127.0.0.1:9"],
        ["kubelet-plugin", "--db-path", f["garbage"], "--apiserver", "http://127.0.0.1:9"],
        ["lab", "--state-dir", str(state), "status"],
        ["lab", "--state-dir", f["garbage"], "status"],
        ["lab", "--state-dir", str(state), "down"],
    ]
    cases += [["plan", p] for p in hostile_paths]
    cases += [
        ["plan", f["manifest_odd"], "--sysfs-root", sysfs, "-o", "json"],
        ["plan", "-n", "default", "x" * 300, "--kubeconfig", f["garbage"]],
        ["plan", "-n", "default", "c", "--apiserver", "http://127.0.0.1:9"],
        ["top", "--url", "http://127.0.0.1:9/metrics", "--count", "1"],
        ["top", "--url", "not a url", "--count", "1"],
        ["top", "--url", "file:///etc/passwd", "--count", "1"],
        ["top", "--interval", "-1", "--count", "1"],
        ["top", "--count", "-5", "--url", "http://127.0.0.1:9/metrics"],
    ]
    for action in ("apply", "delete"):
        cases += [["lab", "--state-dir", str(state), action, p] for p in hostile_paths]
    return cases


def _run_all(cases: list[list[str]], tmp: Path) -> list[dict[str, object]]:
    """All cases in one child process (imports once); a hang fails at the deadline."""
    spec, results = tmp / "cases.json", tmp / "results.json"
    spec.write_text(json.dumps(cases))
    env = {**os.environ, "NODE_NAME": "n1", "KUBERNETES_SERVICE_HOST": ""}
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.cli_walk", str(spec), str(results)],
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=DEADLINE_S,
        check=False,
    )
    done: list[dict[str, object]] = json.loads(results.read_text()) if results.exists() else []
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0 and len(done) == len(cases), (
        f"walk stopped after {len(done)} of {len(cases)} cases: {stderr[-2000:]}"
    )
    assert "Traceback" not in stderr, stderr[-3000:]  # e.g. from a logging handler or thread
    return done


def test_every_subcommand_is_covered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sub.choices is not None
    assert set(sub.choices) == {
        "config",
        "explain",
        "inventory",
        "driver",
        "kubelet-plugin",
        "lab",
        "plan",
        "top",
    }  # a new subcommand must be added to _cases


def _argv(result: dict[str, object]) -> list[object]:
    argv = result["argv"]
    assert isinstance(argv, list)
    return argv


def test_hostile_arguments_and_files_never_end_in_a_traceback(tmp_path: Path) -> None:
    cases = _cases(tmp_path)
    results = _run_all(cases, tmp_path)
    bad = [
        f"{' '.join(map(str, _argv(r)))[:160]} -> {r['code']}: {r['traceback'] or r['stderr']}"
        for r in results
        if r["code"] not in (0, 1, 2) or r["traceback"] or "Traceback" in str(r["stderr"])
    ]
    assert bad == [], "\n\n".join(bad)
    # The hostile sysfs tree's secret never reaches the output of any command.
    assert all("root:x:0:0" not in str(r["stderr"]) for r in results)
