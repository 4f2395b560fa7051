"""`[[hosts]]` in the config: each host with its own URL, limits and ports and the *name* of the
variable that holds its token; the single-host keys mean one host named `default`; mixing the
two forms is an error naming both keys; `config check` shows every host, tokens masked."""

from __future__ import annotations

import json

import pytest

from tests.support.identities import ALICE
from validator_tui.cli import main
from validator_tui.config import ConfigError, config_from_mapping
from validator_tui.config_io import config_to_toml

TOKEN = "s3cret-vmm-token-of-host-b"


def two_hosts(**extra: object) -> dict[str, object]:
    return {
        "validator_hotkey": ALICE,
        "hosts": [
            {
                "name": "tdx-a",
                "url": "unix:/run/dstack/vmm.sock",
                "resource_limits": {"cpu_cores": 32, "gpu_count": 0},
            },
            {
                "name": "tdx-b",
                "url": "http://10.0.0.2:11530",
                "token_env": "TDX_B_TOKEN",
                "resource_limits": {"cpu_cores": 8},
                "host_ports": {"start": 21000, "end": 21099, "host_address": "10.0.0.2"},
            },
        ],
        **extra,
    }


def test_hosts_have_their_own_limits_ports_and_token_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("TDX_B_TOKEN", TOKEN)
    config = config_from_mapping(two_hosts(), "config.toml", env={})
    a, b = config.host_settings(env={"TDX_B_TOKEN": TOKEN})
    assert (a.name, a.url, a.token, a.resource_limits.cpu_cores) == (
        "tdx-a",
        "unix:/run/dstack/vmm.sock",
        None,
        32,
    )
    assert (b.token, b.host_ports.start, b.host_ports.host_address) == (TOKEN, 21000, "10.0.0.2")
    assert TOKEN not in repr(b)
    assert config.capacity_warnings() == []


def test_the_single_host_keys_mean_one_host_named_default():
    data = {
        "validator_hotkey": ALICE,
        "dstack_vmm_url": "unix:/run/dstack/vmm.sock",
        "resource_limits": {"cpu_cores": 12},
    }
    config = config_from_mapping(data, "config.toml", env={"DSTACK_VMM_TOKEN": TOKEN})
    (host,) = config.host_settings()
    assert (host.name, host.url, host.token) == ("default", "unix:/run/dstack/vmm.sock", TOKEN)
    assert host.resource_limits.cpu_cores == 12


@pytest.mark.parametrize("key", ["dstack_vmm_url", "resource_limits", "host_ports"])
def test_mixing_both_forms_is_an_error_naming_both_keys(key):
    value = {"dstack_vmm_url": "http://x:1", "resource_limits": {}, "host_ports": {}}[key]
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(two_hosts(**{key: value}), "config.toml", env={})
    assert str(exc.value).startswith(f"config.toml: [[hosts]] and {key}: use either")


def test_a_single_host_variable_in_the_environment_with_hosts_names_the_variable():
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(two_hosts(), "config.toml", env={"DSTACK_VMM_URL": "http://x:1"})
    assert "[[hosts]] and $DSTACK_VMM_URL (environment) sets dstack_vmm_url" in str(exc.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": "tdx-a"}, "hosts: the name 'tdx-a' is used by more than one host"),
        ({"name": "bad name!"}, "hosts.1.name: expected a host name"),
        ({"token_env": "not-a-var"}, "hosts.1.token_env: expected the NAME of an environment"),
        ({"url": "ftp://x"}, "hosts.1.url: expected an http(s):// URL"),
        (
            {"host_ports": {"start": 20500, "end": 20600}},
            "hosts tdx-a and tdx-b both map host ports 20500-20600 on 127.0.0.1",
        ),
    ],
)
def test_bad_hosts_are_clear_errors(change, expected):
    data = two_hosts()
    data["hosts"][1] = {**data["hosts"][1], **change}  # type: ignore[index]
    if "host_ports" in change:
        data["hosts"][1].pop("token_env")  # type: ignore[index]
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(data, "config.toml", env={})
    assert expected in str(exc.value)


def test_a_vm_that_fits_no_host_is_an_error_one_that_fits_some_a_warning():
    data = two_hosts(job_vm={"vcpu": 16})
    config = config_from_mapping(data, "config.toml", env={})
    warnings = config.capacity_warnings()
    assert any(
        w.startswith(
            "host tdx-b: job_vm.vcpu: one VM needs 16 vCPU, more than "
            "hosts[1].resource_limits.cpu_cores = 8"
        )
        for w in warnings
    )
    assert any("$TDX_B_TOKEN (its token_env) is not set" in w for w in warnings)
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(two_hosts(job_vm={"vcpu": 64}), "config.toml", env={})
    message = str(exc.value)
    assert "hosts[0].resource_limits.cpu_cores = 32" in message
    assert "hosts[1].resource_limits.cpu_cores = 8" in message


def test_the_hosts_form_round_trips_through_toml_without_any_token(tmp_path):
    config = config_from_mapping(two_hosts(), "config.toml", env={})
    text = config_to_toml(config, include_secrets=True)
    assert "[[hosts]]" in text and "dstack_vmm_url" not in text and TOKEN not in text
    path = tmp_path / "config.toml"
    path.write_text(text)
    again = config_from_mapping(__import__("tomlkit").parse(text).unwrap(), str(path), env={})
    assert again == config


def test_config_check_prints_every_host_with_its_limits_and_no_token(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TDX_B_TOKEN", TOKEN)
    path = tmp_path / "config.toml"
    path.write_text(config_to_toml(config_from_mapping(two_hosts(), "x", env={})))
    assert main(["config", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    data = json.loads(out)
    assert "dstack_vmm_url" not in data and "resource_limits" not in data
    assert [host["name"] for host in data["hosts"]] == ["tdx-a", "tdx-b"]
    assert data["hosts"][1]["token_env"] == "TDX_B_TOKEN"
    assert data["hosts"][1]["token"] == "******** (set)"
    assert data["hosts"][1]["resource_limits"]["cpu_cores"] == 8
    assert "host tdx-a: unix:/run/dstack/vmm.sock; 32 vCPU, 32 GB RAM, 500 GB disk" in err
    assert "host tdx-b: http://10.0.0.2:11530; 8 vCPU" in err
    assert "token $TDX_B_TOKEN (set)" in err
