"""Config errors in plain words (issue: the console explains itself): TOML syntax errors as
file:line:column with the line shown, unknown keys and tables with the closest known name,
allowed values listed, no Python reprs; `config check` shows the resolved state dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.identities import ALICE
from validator_tui.cli import main
from validator_tui.config import ConfigError, load_config

HOTKEY = f'validator_hotkey = "{ALICE}"\n'


def error_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    return str(exc.value).replace(str(path), "config.toml")


def test_an_unterminated_string_is_a_position_and_words_with_the_line_shown(tmp_path) -> None:
    message = error_of(tmp_path, HOTKEY + 'platform_api_url = "http://x\n')
    lines = message.splitlines()
    assert lines[0].startswith("config.toml:2:29: a string is not closed on its line")
    assert lines[1] == '    platform_api_url = "http://x'
    assert lines[2] == "    " + " " * 28 + "^"
    assert "Control characters" not in message and "0x1f" not in message


def test_a_key_defined_twice_points_at_its_second_definition(tmp_path) -> None:
    message = error_of(tmp_path, HOTKEY + "[engine]\npoll_interval_s = 3\n\n[engine]\n")
    assert message.splitlines()[0] == (
        'config.toml:5:1: "engine" is defined twice (a key or a [table] may appear once)'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[resource_limit]\ncpu_cores = 2\n",
            "resource_limit: unknown key: did you mean `resource_limits`?",
        ),
        (
            "[engine]\npoll_intervl_s = 3\n",
            "engine.poll_intervl_s: unknown key: did you mean `poll_interval_s`?",
        ),
        (
            '[[hosts]]\nname = "a"\nurl = "http://a"\ntokn_env = "T"\n',
            "hosts.0.tokn_env: unknown key: did you mean `token_env`?",
        ),
        ("[engine]\nzzz = 1\n", "engine.zzz: unknown key (known here: auto_claim, "),
    ],
)
def test_an_unknown_key_or_table_names_the_closest_known_one(tmp_path, text, expected) -> None:
    assert f"config.toml: {expected}" in error_of(tmp_path, HOTKEY + text)


def test_allowed_values_are_listed_plainly(tmp_path) -> None:
    message = error_of(tmp_path, HOTKEY + '[engine]\nplacement = "spred"\n')
    assert message == 'config.toml: engine.placement: expected one of: spread, pack, got "spred"'


def test_a_reversed_port_range_prints_no_python_dict(tmp_path) -> None:
    message = error_of(tmp_path, HOTKEY + "[host_ports]\nstart = 3000\nend = 2000\n")
    assert message == "config.toml: host_ports: end (2000) must be >= start (3000)"
    assert "{" not in message


def test_config_check_prints_the_resolved_state_dir(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("VALIDATOR_TUI_STATE_DIR", raising=False)
    config = tmp_path / "config.toml"
    config.write_text(HOTKEY, encoding="utf-8")
    assert main(["config", "check", str(config)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state_dir"] == str(tmp_path / "xdg" / "validator-tui")
