"""Every command and manifest the README shows runs as written, or is checked where it can be.

The README's commands are collected (fenced `sh` blocks, one command per line, and inline
`knd ...` / `kubectl ...` / `bash ...` code); each must appear in `RECIPES` with the check that
covers it, so a new recipe without a check fails here. Commands that need a cluster (`helm
install`, `kubectl apply`, `docker build`) are checked through what they consume: the chart
renders and validates (test_deploy), install.yaml is the rendered chart, the Dockerfile exists.
`bash scripts/lab-demo` runs as root in tests/e2e/test_readme_lab_demo.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from knd.cli.main import main
from tests.fixtures import pciids as test_ids
from tests.fixtures.sysfs import write_tree

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
KND = Path(sys.executable).parent / "knd"

_INLINE_PREFIXES = ("knd ", ".venv/bin/knd", "kubectl ", "helm ", "bash ", "pip ", "docker ")


def readme_commands() -> list[str]:
    """Every command line of the README's `sh` blocks and every inline command."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        for raw in block.splitlines():
            line = raw.split(" #", 1)[0].strip()
            if line.startswith("# or:"):
                line = line[len("# or:") :].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    for code in re.findall(r"`([^`\n]+)`", README):
        if code.startswith(_INLINE_PREFIXES):
            commands.append(code.replace("\\|", "|").strip())  # `\|` escapes a pipe in a table
    return commands


def readme_yaml_blocks() -> list[list[dict[str, Any]]]:
    return [
        [d for d in yaml.safe_load_all(block) if d]
        for block in re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    ]


#: The README's test command: `.ci/run` runs its steps, in order.
TEST_COMMAND = (
    "bash scripts/system-deps && bash scripts/setup && python3 scripts/runtime install && "
    "python3 scripts/image build && python3 scripts/kubernetes install && bash scripts/test --vm"
)

#: README command → the test that proves it (in this module unless it names another file).
RECIPES: dict[str, str] = {
    "bash scripts/lab-demo": "tests/e2e/test_readme_lab_demo.py",
    "bash scripts/setup && .venv/bin/knd inventory": "test_knd_inventory_runs_on_this_machine",
    "knd lab up": "tests/e2e/test_k8s_lab.py (the lab fixture of tests/e2e/k8s_support.py)",
    TEST_COMMAND: "test_ci_runs_the_readme_test_command",
    "bash scripts/vm test": "test_ci_runs_the_readme_test_command (`scripts/test --vm` runs it)",
    "python3 scripts/image build": "tests/e2e/test_image.py (imports and runs the built image)",
    "pip install -e '.[test]'": "test_test_extra_exists",
    "docker build -t <registry>/knd:0.1.0 .": "tests/unit/test_deploy.py::test_dockerfile_pins",
    "helm install knd deploy/helm/knd -n kube-system --set image.repository=<registry>/knd": (
        "test_helm_install_command_values_render"
    ),
    "kubectl apply -f deploy/install.yaml": "tests/unit/test_deploy.py (install.yaml = chart)",
    "knd config validate FILE...": "test_config_validate_on_the_examples",
    "knd explain CLAIM.yaml --slices SLICES.yaml": "test_explain_recipes_run_as_written",
    "kubectl get resourceslices,deviceclasses -o yaml | knd explain CLAIM.yaml --slices -": (
        "test_explain_recipes_run_as_written"
    ),
    "knd inventory": "test_knd_inventory_runs_on_this_machine",
    "knd driver": "tests/e2e/test_k8s_lab.py (the lab runs the real `knd driver`)",
    "bash scripts/lock": "test_maintenance_scripts_parse (needs uv and the registry to run)",
    "bash scripts/fuzz [N]": "test_long_run_script_collects_its_targets",
    "knd plan -n NS CLAIM": (
        "tests/netns/driver/test_plan_dry_run.py::test_claim_by_name_from_the_api_server"
    ),
    "knd top": "tests/netns/driver/test_nic_telemetry.py::test_pod_nic_counters_follow_the_pod",
}


def test_every_readme_command_has_a_check() -> None:
    commands = readme_commands()
    assert "bash scripts/lab-demo" in commands  # the collector works
    missing = [c for c in commands if c not in RECIPES]
    assert not missing, f"README commands without a check (add them to RECIPES): {missing}"
    stale = [c for c in RECIPES if c not in commands]
    assert not stale, f"RECIPES lists commands the README no longer shows: {stale}"


def test_knd_inventory_runs_on_this_machine() -> None:
    """`.venv/bin/knd inventory` (live: sysfs + netlink; no privileges needed to read)."""
    assert (REPO / "scripts" / "setup").is_file()
    proc = subprocess.run(
        [str(KND), "inventory"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    first, header = proc.stdout.splitlines()[:2]
    assert first.startswith("# ") and "live (sysfs + netlink)" in first
    assert header.split()[:2] == ["NAME", "IFNAME"]


def test_ci_runs_the_readme_test_command() -> None:
    steps = [
        ln.strip()
        for ln in (REPO / ".ci" / "run").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith(("#", "set ", "cd ", "export "))
    ]
    assert TEST_COMMAND in readme_commands()
    assert steps == TEST_COMMAND.split(" && ")


def test_test_extra_exists() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "test" in project["optional-dependencies"]


def test_helm_install_command_values_render() -> None:
    from knd.lab.manifests import render_chart

    docs = render_chart({"image": {"repository": "registry.example/knd"}})
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/knd:0.1.0"
    assert (REPO / "Dockerfile").is_file()


def test_maintenance_scripts_parse() -> None:
    for name in ("lock", "render-manifests", "gen-proto", "gen-proto-kubelet", "lab-demo"):
        script = REPO / "scripts" / name
        proc = subprocess.run(
            ["bash", "-n", str(script)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, f"{name}: {proc.stderr}"


def test_long_run_script_collects_its_targets() -> None:
    """`bash scripts/fuzz N` selects the fuzz targets (this test's name must not match them)."""
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "fuzz"), "2", "--collect-only", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = [line.split(":", 1)[0] for line in proc.stdout.splitlines() if ".py: " in line]
    assert "tests/unit/test_fuzz_config.py" in files, proc.stdout
    assert "tests/unit/test_fuzz_sysfs.py" in files, proc.stdout
    assert "tests/unit/test_readme_recipes.py" not in files, proc.stdout


def test_readme_claim_and_pod_are_valid() -> None:
    (docs,) = readme_yaml_blocks()
    assert [d["kind"] for d in docs] == ["ResourceClaim", "Pod"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.34", strict=True)


def test_config_validate_on_the_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`knd config validate FILE...` over the README's claim and every example."""
    (docs,) = readme_yaml_blocks()
    claim = tmp_path / "readme-claim.yaml"
    claim.write_text(yaml.safe_dump_all(docs))
    assert main(["config", "validate", str(claim), str(REPO / "examples")]) == 0
    out = capsys.readouterr().out
    assert f"ok {claim} (1 config)" in out


def _gpu_node_slices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """(slices only, slices and the `dra.net` DeviceClass) as `kind: List` YAML."""
    root = write_tree("gpu-node", tmp_path / "sys")
    ids = test_ids.write(tmp_path / "pci.ids")
    argv = ["inventory", "--sysfs-root", str(root), "--pci-ids", str(ids), "--slices"]
    assert main([*argv, "--node-name", "gpu-node-1"]) == 0
    listed = yaml.safe_load(capsys.readouterr().out)
    only_slices = str(yaml.safe_dump(listed))
    dra_net = yaml.safe_load((REPO / "examples" / "deviceclass-dra-net.yaml").read_text())
    listed["items"].append(dra_net)
    return only_slices, str(yaml.safe_dump(listed))


@pytest.mark.parametrize(
    "command",
    [
        "knd explain CLAIM.yaml --slices SLICES.yaml",
        "kubectl get resourceslices,deviceclasses -o yaml | knd explain CLAIM.yaml --slices -",
    ],
)
def test_explain_recipes_run_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """The exact README text, run by bash in a directory holding CLAIM.yaml (the README's claim)
    and SLICES.yaml (`knd inventory --slices` of a GPU node plus the `dra.net` class); `kubectl`
    is a shell function that prints what `kubectl get` would for the kinds it is asked for."""
    assert command in readme_commands()
    only_slices, with_classes = _gpu_node_slices(tmp_path, capsys)
    (docs,) = readme_yaml_blocks()
    (tmp_path / "CLAIM.yaml").write_text(yaml.safe_dump(docs[0]))
    (tmp_path / "SLICES.yaml").write_text(with_classes)
    (tmp_path / "kubectl-slices.yaml").write_text(only_slices)
    kubectl = (
        'kubectl() { [ "$1 $2 $3 $4" = "get resourceslices,deviceclasses -o yaml" ] '
        '&& cat SLICES.yaml && return; [ "$1 $2 $3 $4" = "get resourceslices -o yaml" ] '
        "&& cat kubectl-slices.yaml && return; echo unexpected kubectl call >&2; return 1; }"
    )
    script = f'{kubectl}\nknd() {{ "{KND}" "$@"; }}\n{command}\n'
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "== ResourceClaim/fast-nic" in proc.stdout
    assert "allocated nic -> dra.net/gpu-node-1/pci-" in proc.stdout
