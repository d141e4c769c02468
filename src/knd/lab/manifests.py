"""Render the Helm chart (deploy/helm/knd) with Helm's engine, offline.

`render_chart(values)` returns the rendered documents in a stable order (RBAC, DeviceClasses,
admission policy, DaemonSet; NOTES.txt is text, not a manifest, and is left out);
`python -m knd.lab.manifests` prints deploy/install.yaml. Needs the test extra
`helm-python-sdk` (imported lazily, so the daemon never depends on it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "knd"
RELEASE = "knd"
NAMESPACE = "kube-system"
_ORDER = ("rbac.yaml", "deviceclasses.yaml", "validatingadmissionpolicy.yaml", "daemonset.yaml")
HEADER = (
    "# knd install manifest: rendered from deploy/helm/knd with default values by\n"
    "# scripts/render-manifests. Do not edit by hand.\n"
)


def render_chart_texts(
    values: dict[str, Any] | None = None, chart_dir: Path = CHART_DIR
) -> dict[str, str]:
    """Template name → rendered text. Helm checks `values` against values.schema.json
    (helm_python.HelmValuesError names the offending key)."""
    import helm_python  # noqa: PLC0415 - optional, test-only dependency

    chart = helm_python.Chart.load(str(chart_dir))
    try:
        out: dict[str, str] = chart.render(
            values, name=RELEASE, namespace=NAMESPACE, is_install=True
        )
    finally:
        chart.close()
    return out


def render_chart(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rendered Kubernetes objects in install order."""
    texts = {n: t for n, t in render_chart_texts(values).items() if n.endswith((".yaml", ".yml"))}
    docs: list[dict[str, Any]] = []
    for name in sorted(
        texts, key=lambda n: (_ORDER.index(Path(n).name) if Path(n).name in _ORDER else 99, n)
    ):
        docs.extend(d for d in yaml.safe_load_all(texts[name]) if d)
    return docs


def install_yaml() -> str:
    """The text of deploy/install.yaml."""
    return HEADER + yaml.safe_dump_all(render_chart(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(install_yaml())
