"""Daemon flags: DraNet spellings, environment variables, precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from knd.driver.options import DEFAULT_FILTER, OptionsError, parse


def test_defaults_match_dranet() -> None:
    opts = parse([], {"NODE_NAME": "node-a"})
    assert opts.node_name == "node-a"
    assert opts.driver_name == "dra.net"
    assert opts.filter == DEFAULT_FILTER
    assert opts.kubelet_root_dir == Path("/var/lib/kubelet")
    assert opts.bind_address == ":9177"
    assert (
        opts.inventory_min_poll_interval,
        opts.inventory_max_poll_interval,
        opts.inventory_poll_burst,
    ) == (2.0, 60.0, 5)
    assert opts.move_ib_interfaces is True
    assert (opts.nri_socket, opts.nri_plugin_index, opts.nri_plugin_name) == (
        "/var/run/nri/nri.sock",
        "00",
        "dra.net",
    )


def test_flags_beat_environment_beat_defaults() -> None:
    env = {
        "NODE_NAME": "from-env",
        "KND_DRIVER_NAME": "nic.example.com",
        "KND_INVENTORY_POLL_BURST": "9",
        "KND_MOVE_IB_INTERFACES": "false",
        "KND_STATE_PATH": "/env/state.db",
    }
    opts = parse(["--hostname-override", "from-flag", "--db-path", "/flag/state.db"], env)
    assert opts.node_name == "from-flag"
    assert opts.driver_name == "nic.example.com"
    assert opts.nri_plugin_name == "nic.example.com"
    assert opts.inventory_poll_burst == 9
    assert opts.move_ib_interfaces is False
    assert opts.state_path == Path("/flag/state.db")  # DraNet's --db-path spelling works


def test_empty_filter_disables_filtering() -> None:
    assert parse(["--filter", ""], {"NODE_NAME": "n"}).filter == ""


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--driver-name", "Not_A_Domain"], {}, "driver name"),
        (["--nri-plugin-index", "7"], {}, "two digits"),
        (["--inventory-poll-burst", "0"], {}, "at least 1"),
        (["--bind-address", "9177"], {}, "HOST:PORT"),
        ([], {"KND_INVENTORY_POLL_BURST": "many"}, "KND_INVENTORY_POLL_BURST"),
        ([], {"KND_MOVE_IB_INTERFACES": "maybe"}, "KND_MOVE_IB_INTERFACES"),
    ],
)
def test_invalid_values_are_fatal_and_named(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(OptionsError, match=message):
        parse(argv, {"NODE_NAME": "n", **env})
