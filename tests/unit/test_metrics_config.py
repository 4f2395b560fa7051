"""`[metrics] listen` and `run --metrics-listen`: HOST:PORT, loopback unless allow_remote."""

from __future__ import annotations

import pytest

from tests.support.identities import ALICE
from validator_tui.cli import _with_metrics_listen
from validator_tui.config import ConfigError, ValidatorConfig, config_from_mapping


def config(**metrics: object) -> ValidatorConfig:
    return config_from_mapping({"validator_hotkey": ALICE, "metrics": metrics}, "test.toml")


def test_metrics_are_off_unless_listen_is_set():
    assert config().metrics.listen == ""
    assert config(listen="127.0.0.1:9464").metrics.listen == "127.0.0.1:9464"
    assert config(listen="[::1]:9464").metrics.listen == "[::1]:9464"


def test_a_remote_address_needs_allow_remote():
    with pytest.raises(ConfigError, match="not a loopback address: set allow_remote = true"):
        config(listen="0.0.0.0:9464")
    assert config(listen="0.0.0.0:9464", allow_remote=True).metrics.allow_remote


def test_listen_must_be_host_and_port():
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        config(listen="9464")
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        config(listen="127.0.0.1:99999")


def test_the_command_line_overrides_the_config_under_the_same_rules():
    base = config(listen="127.0.0.1:9464")
    assert _with_metrics_listen(base, None) is base
    assert _with_metrics_listen(base, "127.0.0.1:9999").metrics.listen == "127.0.0.1:9999"
    with pytest.raises(ConfigError, match=r"--metrics-listen: .*allow_remote"):
        _with_metrics_listen(base, "10.0.0.5:9464")
    remote = config(listen="127.0.0.1:9464", allow_remote=True)
    assert _with_metrics_listen(remote, "10.0.0.5:9464").metrics.listen == "10.0.0.5:9464"
