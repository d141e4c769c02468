"""DraNet's flags with DraNet's syntax: Go durations, bare booleans, --feature-gates, klog flags,
single-dash long flags, the cloud/IPAM flags that fail naming the missing feature, and the
`/dranet` entrypoint."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from knd.cli.main import dranet_compat, main
from knd.driver.goflags import FeatureGates, feature_gates, go_bool, go_duration
from knd.driver.options import OptionsError, parse

pytestmark = pytest.mark.unit

ENV = {"NODE_NAME": "n1"}
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2s", 2.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        ("3µs", 0.000003),
        ("0", 0.0),
        ("-1s", -1.0),
        ("2", 2.0),  # knd's earlier plain seconds
        ("0.25", 0.25),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "2x", "s", "1m30", "m1", "1 s", "inf", "nan", "1d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        go_duration(text)


def test_go_bool_accepts_strconv_spellings() -> None:
    assert [go_bool(v) for v in ("1", "t", "T", "TRUE", "true", "True")] == [True] * 6
    assert [go_bool(v) for v in ("0", "f", "F", "FALSE", "false", "False")] == [False] * 6
    with pytest.raises(argparse.ArgumentTypeError, match="invalid boolean"):
        go_bool("maybe")


def test_dranet_args_from_its_helm_chart_parse() -> None:
    opts = parse(
        [
            "--v=4",
            "--hostname-override=node-7",
            "--bind-address=:9178",
            '--filter=!("dra.net/type" in attributes) || attributes["dra.net/type"].StringValue'
            '  != "veth"',
            "--db-path=/var/run/dranet/dranet.db",
            "--inventory-min-poll-interval=2s",
            "--inventory-max-poll-interval=1m30s",
            "--inventory-poll-burst=7",
            "--move-ib-interfaces=false",
            "--cloud-provider-hint=NONE",
            "--profile-provider=none",
            "--webhook-url=",
            "--feature-gates=DRAListTypeAttributes=true",
            "--kubelet-root-dir=/data/kubelet",
        ],
        {},
    )
    assert opts.verbosity == 4 and opts.node_name == "node-7"
    assert (opts.inventory_min_poll_interval, opts.inventory_max_poll_interval) == (2.0, 90.0)
    assert opts.inventory_poll_burst == 7 and opts.move_ib_interfaces is False
    assert opts.state_path == Path("/var/run/dranet/dranet.db")
    assert opts.feature_gates == FeatureGates(list_type_attributes=True)
    assert opts.kubelet_root_dir == Path("/data/kubelet")


def test_bare_boolean_and_single_dash_long_flags() -> None:
    opts = parse(["--move-ib-interfaces", "-v=5", "-kubeconfig=/etc/kc", "-logtostderr"], ENV)
    assert opts.move_ib_interfaces is True and opts.verbosity == 5
    assert opts.kubeconfig == "/etc/kc"
    opts = parse(["-move-ib-interfaces=f", "--alsologtostderr=false", "--vmodule=x=3"], ENV)
    assert opts.move_ib_interfaces is False


def test_durations_and_gates_from_the_environment() -> None:
    env = {
        **ENV,
        "KND_INVENTORY_MAX_POLL_INTERVAL": "2m",
        "KND_FEATURE_GATES": "PersistentResourceSliceAttributes=true",
    }
    opts = parse([], env)
    assert opts.inventory_max_poll_interval == 120.0
    assert opts.feature_gates == FeatureGates(persistent_slice_attributes=True)
    with pytest.raises(OptionsError, match="KND_INVENTORY_MAX_POLL_INTERVAL"):
        parse([], {**ENV, "KND_INVENTORY_MAX_POLL_INTERVAL": "soon"})


def test_feature_gates_syntax() -> None:
    gates = feature_gates(
        " DRAListTypeAttributes=true , PersistentResourceSliceAttributes=True,,"
        "DRAListTypeAttributes=false"
    )
    assert gates == FeatureGates(list_type_attributes=False, persistent_slice_attributes=True)
    assert feature_gates("") == FeatureGates()
    with pytest.raises(argparse.ArgumentTypeError, match="unrecognized feature gate 'Foo'"):
        feature_gates("Foo=true")
    with pytest.raises(argparse.ArgumentTypeError, match="missing bool value"):
        feature_gates("DRAListTypeAttributes")
    with pytest.raises(argparse.ArgumentTypeError, match="DRAListTypeAttributes"):
        feature_gates("DRAListTypeAttributes=yes please")


def test_cloud_and_profile_flags_take_dranets_values() -> None:
    opts = parse(["--cloud-provider-hint=NONE", "--profile-provider=none", "--webhook-url="], ENV)
    assert (opts.cloud_provider_hint, opts.profile_provider, opts.webhook_url) == (
        "NONE",
        "none",
        "",
    )
    with pytest.raises(OptionsError, match="--cloud-provider-hint"):
        parse(["--cloud-provider-hint=MARS"], ENV)


def test_driver_exits_2_on_a_webhook_provider_without_its_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["driver", "--profile-provider=webhook", "--hostname-override=n"]) == 2
    assert "--webhook-url is required" in capsys.readouterr().err


def test_single_dash_rewrite_leaves_values_and_unknown_names_alone() -> None:
    from knd.driver.options import go_style

    argv = ["-kubeconfig", "-v", "-filter=a", "-x", "-vmodule=x=1", "--", "-kubeconfig"]
    assert go_style(argv) == [
        "--kubeconfig",
        "-v",
        "--filter=a",
        "-x",
        "--vmodule=x=1",
        "--",
        "-kubeconfig",
    ]


def test_single_dash_flags_through_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["driver", "-hostname-override=n", "-webhook-url=ftp://x"]) == 2
    assert "--webhook-url must be http(s)" in capsys.readouterr().err


def test_dranet_entrypoint_means_driver() -> None:
    assert dranet_compat(["--v=4"], "/dranet") == ["driver", "--v=4"]
    assert dranet_compat(["/dranet", "--v=4"], "/usr/local/bin/knd") == ["driver", "--v=4"]
    assert dranet_compat(["inventory"], "knd") == ["inventory"]


def test_dranet_symlink_runs_the_driver(tmp_path: Path) -> None:
    knd = Path(sys.executable).with_name("knd")
    if not knd.exists():
        pytest.skip(f"no installed knd script next to {sys.executable}")
    link = tmp_path / "dranet"
    link.symlink_to(knd)
    env = {**os.environ, "NODE_NAME": "n1"}
    proc = subprocess.run(
        [str(link), "--v=4", "--webhook-url=ftp://x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "knd driver: --webhook-url must be http(s)" in proc.stderr


def test_dockerfile_provides_the_dranet_entrypoint() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert 'ln -s "$(command -v knd)" /dranet' in text
    assert 'ENTRYPOINT ["knd"]' in text
