"""Config that protects the operator (issue 12): hotkeys checked with their SS58 checksum,
errors about environment values name the variable, VM specs that can never fit the limits
are errors, limits without room for a job VM next to the challenge CVMs are a warning, and
the example's defaults leave room for several job VMs next to three challenge CVMs."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomlkit

from tests.support.identities import ALICE
from validator_tui.config import ConfigError, config_from_mapping, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
TYPO = ALICE[:-1] + ("R" if ALICE[-1] != "R" else "S")


def example() -> dict[str, object]:
    return tomlkit.parse(EXAMPLE.read_text(encoding="utf-8")).unwrap()


def test_a_hotkey_typo_in_the_file_names_the_file() -> None:
    data = example() | {"validator_hotkey": TYPO}
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(data, "config.toml", env={})
    message = str(exc.value)
    assert message.startswith("config.toml: validator_hotkey: expected an SS58 address")
    assert "checksum mismatch: a character is mistyped" in message


def test_a_hotkey_typo_from_the_environment_names_the_variable_not_the_file() -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(example(), "config.toml", env={"VALIDATOR_HOTKEY": TYPO})
    message = str(exc.value)
    assert message.startswith("$VALIDATOR_HOTKEY (environment): validator_hotkey:")
    assert "checksum mismatch" in message and "config.toml" not in message


def test_a_bad_url_from_the_alias_variable_names_that_variable() -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(example(), "config.toml", env={"PLATFORM_BASE_API": "ftp://x"})
    assert str(exc.value).startswith("$PLATFORM_BASE_API (environment): platform_api_url:")


def test_environment_values_that_are_fine_still_leave_file_errors_on_the_file() -> None:
    data = example() | {"engine": {"poll_interval_s": "soon"}}
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(data, "config.toml", env={"VALIDATOR_HOTKEY": ALICE})
    assert str(exc.value).startswith("config.toml: engine.poll_interval_s: expected a number")


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        (
            "job_vm",
            "vcpu",
            64,
            "job_vm.vcpu: one VM needs 64 vCPU, more than "
            "resource_limits.cpu_cores = 16 allows: it can never start",
        ),
        ("challenge_vm", "memory_mb", 65536, "challenge_vm.memory_mb: one VM needs 65536 MB"),
        ("job_vm", "disk_gb", 1000, "job_vm.disk_gb: one VM needs 1024000 MB of disk"),
        (
            "job_vm",
            "gpu",
            1,
            "job_vm.gpu: one VM needs 1 GPU, more than resource_limits.gpu_count = 0",
        ),
    ],
)
def test_a_vm_spec_that_can_never_fit_is_an_error(
    section: str, key: str, value: int, expected: str
) -> None:
    data = example()
    data[section] = dict(data[section]) | {key: value}  # type: ignore[call-overload]
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(data, "config.toml", env={})
    assert f"config.toml: {expected}" in str(exc.value)


def test_limits_without_room_for_a_job_vm_warn_with_the_arithmetic() -> None:
    data = example()
    data["resource_limits"] = dict(data["resource_limits"]) | {"cpu_cores": 7}  # type: ignore[call-overload]
    config = config_from_mapping(data, "config.toml", env={})
    (warning,) = config.capacity_warnings()
    assert "room for no job VM next to 3 challenge CVMs" in warning
    assert "cpu_cores 7 - 3 challenge CVMs x 2 = 1 left, 2 per job VM" in warning


def test_the_example_leaves_room_for_several_job_vms_next_to_three_cvms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("VALIDATOR_HOTKEY", "PLATFORM_API_URL", "PLATFORM_BASE_API", "DSTACK_VMM_URL"):
        monkeypatch.delenv(name, raising=False)
    config = load_config(EXAMPLE)
    fits, why = config.job_vm_room(3)
    assert fits == 5, why
    assert config.capacity_warnings() == []
    assert config.impossible_specs() == []
    defaults = config_from_mapping({"validator_hotkey": ALICE}, "defaults", env={})
    assert defaults.job_vm == config.job_vm and defaults.challenge_vm == config.challenge_vm
    assert defaults.resource_limits == config.resource_limits
