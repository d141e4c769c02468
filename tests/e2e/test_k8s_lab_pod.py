"""The real-Kubernetes scenarios of test_k8s_lab with knd as the chart's DaemonSet pod.

The same scenario functions, collected here against a lab started with `knd_as="pod"`
(`knd lab up --knd-as pod`, knd.lab.helm): the image from `scripts/image build` imported into
the lab's containerd and the chart installed by helm, so every scenario runs against knd as the
privileged pod under the real kubelet, with the chart's mounts, RBAC and admission policy
(pytest resolves the `lab` fixture in the module that collects a test). They are bound in
test_k8s_lab's order (pytest collects in definition order; the slices are checked right after
`up`, as there). Skips (reason printed) as test_k8s_lab, and without the helm binary or the
image archive.
"""

from __future__ import annotations

import pytest

from tests.e2e import test_k8s_lab as scenarios
from tests.e2e.k8s_support import clean, lab_fixture

pytestmark = pytest.mark.e2e
lab = lab_fixture(knd_as="pod")
__all__ = ["clean"]  # fixtures used by name

for _name, _scenario in vars(scenarios).items():  # definition order: pytest's collection order
    if _name.startswith("test_") and callable(_scenario):
        globals()[_name] = _scenario
