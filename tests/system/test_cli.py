"""The command line: help, usage errors, config check, simulators, headless demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from validator_tui.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"
DEMO = [sys.executable, "-m", "validator_tui", "demo", "--headless"]


@pytest.mark.parametrize(
    "argv",
    [[], ["run"], ["demo"], ["sim"], ["sim", "platform"], ["sim", "vmm"], ["config", "check"]],
)
def test_help_on_every_command(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: validator-tui" in capsys.readouterr().out


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--log-format", "xml"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_config_check_example_prints_masked_config(capsys, monkeypatch):
    monkeypatch.setenv("DSTACK_VMM_TOKEN", "s3cret-token-value")
    assert main(["config", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["dstack_vmm_token"] == "********"
    assert "s3cret-token-value" not in out
    assert data["job_vm"]["image"] == "dstack-0.5.2"


def test_config_check_typo_names_file_key_and_expectation(tmp_path, capsys):
    bad = tmp_path / "config.toml"
    text = EXAMPLE.read_text().replace("memory_mb = 32768", 'memory_mb = "4G"')
    bad.write_text(text.replace("poll_interval_s = 5.0", "pol_interval_s = 5.0"))
    assert main(["config", "check", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f'{bad}: resource_limits.memory_mb: expected an integer, got "4G"' in err
    assert f"{bad}: engine.pol_interval_s: unknown key" in err


def test_config_check_bad_hotkey_and_bad_toml(tmp_path, capsys):
    bad = tmp_path / "c.toml"
    bad.write_text('validator_hotkey = "not-a-hotkey"\n')
    assert main(["config", "check", str(bad)]) == 1
    assert "validator_hotkey: expected an SS58 address" in capsys.readouterr().err
    bad.write_text("validator_hotkey = \n")
    assert main(["config", "check", str(bad)]) == 1
    assert f"{bad}:1:20: the line ends too early" in capsys.readouterr().err


def test_config_check_warns_when_no_job_vm_fits(tmp_path, capsys):
    tight = tmp_path / "c.toml"
    tight.write_text(EXAMPLE.read_text().replace("cpu_cores = 16", "cpu_cores = 7"))
    assert main(["config", "check", str(tight)]) == 0
    err = capsys.readouterr().err
    assert "warning: resource_limits leave room for no job VM next to 3 challenge CVMs" in err


def test_impossible_job_vm_is_an_error_at_start(tmp_path, capsys):
    bad = tmp_path / "c.toml"
    bad.write_text(EXAMPLE.read_text().replace("vcpu = 2", "vcpu = 64", 1))
    assert main(["run", "--headless", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: job_vm.vcpu: one VM needs 64 vCPU, more than resource_limits.cpu_cores" in err


def test_hotkey_typo_in_the_environment_names_the_variable(capsys, monkeypatch):
    monkeypatch.setenv("VALIDATOR_HOTKEY", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ")
    assert main(["config", "check", str(EXAMPLE)]) == 1
    err = capsys.readouterr().err
    assert "$VALIDATOR_HOTKEY (environment): validator_hotkey:" in err
    assert "checksum mismatch" in err and str(EXAMPLE) not in err


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "validator_tui", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize("which", ["platform", "vmm"])
def test_sim_commands_serve_until_sigterm(which):
    process = _spawn("sim", which, "--port", "0")
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        if which == "platform":
            reply = httpx.get(f"{url}/challenges/active", headers={"X-Validator-Hotkey": "x"})
            assert reply.status_code == 200 and len(reply.json()["challenges"]) == 3
            hint = process.stderr.readline()
            assert "generating no jobs (--jobs-per-minute 0)" in hint
            assert f"curl -X POST {url}/_sim/jobs" in hint
        else:
            reply = httpx.post(f"{url}/prpc/Version?json", json={})
            assert reply.json()["version"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


def test_demo_headless_runs_jobs_and_stops_cleanly(tmp_path):
    log = tmp_path / "demo.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*DEMO, "--jobs-per-minute", "600", "--boot-seconds", "0"],
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            lines = [process.stdout.readline() for _ in range(3)]
            assert lines[0].startswith("platform simulator: http://127.0.0.1:")
            assert lines[1].startswith("dstack VMM simulator: http://127.0.0.1:")
            deadline = time.monotonic() + 60
            while "completed, score" not in log.read_text():
                assert time.monotonic() < deadline, "no job completed within 60 s"
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(30)
    err = log.read_text()
    assert code == 0, err[-2000:]
    assert "challenge CVM active" in err
    assert "stopped" in err
