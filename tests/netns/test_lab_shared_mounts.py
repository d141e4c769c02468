"""knd.lab.helm.share_mount / unshare_mounts: exactly the paths asked for become shared mount
points, and the undo restores the mount table (docs/lab.md, "knd as the chart's DaemonSet pod").

Each case runs in a child process in its own mount namespace (`unshare -m`, mounts copied
private), so the host's mount table is never touched; every path is in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, subprocess, sys
from pathlib import Path
from knd.lab import helm

base = Path(sys.argv[1])
plain, fresh, priv, shared = base / "plain", base / "new" / "dir", base / "priv", base / "shared"
plain.mkdir()
priv.mkdir()
shared.mkdir()
subprocess.run(["mount", "-t", "tmpfs", "t", str(priv)], check=True)  # private (copied so)
subprocess.run(["mount", "-t", "tmpfs", "t", str(shared)], check=True)
subprocess.run(["mount", "--make-shared", str(shared)], check=True)
(base / "link").symlink_to(shared)  # like /var/run -> /run
before = helm._mounts()
undos = [helm.share_mount(p) for p in (plain, fresh, priv, base / "link")]
during = helm._mounts()
again = [helm.share_mount(p) for p in (plain, fresh, priv)]  # idempotent: no second bind
stacked = [line for line in open("/proc/self/mountinfo") if f" {plain} " in line]
left = helm.unshare_mounts([u for u in undos if u])
after = helm._mounts()
print(json.dumps({
    "undos": undos, "again": again, "stacked": len(stacked), "left": left,
    "before": before, "during": {k: during.get(k) for k in (str(plain), str(fresh), str(priv),
    str(shared))}, "after": after, "fresh_exists": fresh.exists(),
}))
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare(1) not installed")
def test_share_mount_makes_exactly_the_paths_shared_and_the_undo_restores_the_table(
    tmp_path: Path,
) -> None:
    base = tmp_path.resolve()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", CHILD, str(base)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    plain, fresh, priv, shared = (str(base / n) for n in ("plain", "new/dir", "priv", "shared"))
    u_plain, u_fresh, u_priv, u_link = got["undos"]
    # not a mount point: bound on itself; a created directory is to be removed again
    assert u_plain == {"path": plain, "umount": True}
    assert u_fresh == {"path": fresh, "umount": True, "rmdir": True}
    # a private mount point is only made shared; a shared one (through a link) left alone
    assert u_priv == {"path": priv, "private": True}
    assert u_link is None
    for path in (plain, fresh, priv, shared):
        assert "shared:" in got["during"][path], (path, got["during"])
    assert got["again"] == [None, None, None]
    assert got["stacked"] == 1, "a second bind was stacked on the same path"
    # undone: the mount table as before (priv private again), the created directory gone
    assert got["left"] == []
    assert got["after"] == got["before"]
    assert "shared:" not in got["after"][priv]
    assert got["fresh_exists"] is False
