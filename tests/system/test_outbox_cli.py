"""`validator-tui outbox list|retry|discard` on a stopped engine's state directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.identities import ALICE
from validator_tui.config import ValidatorConfig
from validator_tui.config_io import write_config
from validator_tui.engine.store import Store


def outbox(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return outbox_cli("--config", str(config_path), *args)


def outbox_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "validator_tui", "outbox", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=cwd,
    )


def state_with_dead_letters(tmp_path: Path) -> Path:
    config = ValidatorConfig(validator_hotkey=ALICE, state_dir=str(tmp_path / "state"))
    store = Store(config.state_path / "state.sqlite3")
    for job_id in ("job-a", "job-b", "job-c"):
        store.upsert_job(job_id, "challenge", "submitting")
        store.finish_job_with_result(job_id, "submitting", b'{"score":0.5}')
    store.mark_result("job-a", "dead", "POST /jobs/job-a/results: HTTP 400: \x1b[31mno\x1b[0m")
    store.mark_result("job-b", "dead", "POST /jobs/job-b/results: HTTP 422: bad body")
    store.close()
    return write_config(config, tmp_path / "config.toml")


def statuses(tmp_path: Path) -> dict[str, str]:
    store = Store(tmp_path / "state" / "state.sqlite3")
    try:
        return {row.job_id: row.status for row in store.outbox_entries()}
    finally:
        store.close()


def test_outbox_list_retry_and_discard_on_a_stopped_engine(tmp_path):
    config_path = state_with_dead_letters(tmp_path)
    listed = outbox(config_path, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "2 dead letters, 1 unsent, 3 entries"
    assert lines[1].split() == ["JOB", "STATUS", "ATTEMPTS", "UPDATED", "(UTC)", "LAST", "ERROR"]
    assert "\x1b" not in listed.stdout
    assert any(line.startswith("job-a") and "HTTP 400: no" in line for line in lines)
    assert any(line.startswith("job-c") and " unsent " in line for line in lines)
    assert any(line.startswith("job-b") and " dead letter " in line for line in lines)

    retried = outbox(config_path, "retry", "job-a")
    assert retried.returncode == 0, retried.stderr
    assert "sent at the next engine start" in retried.stdout

    refused = outbox(config_path, "discard", "job-b")
    assert refused.returncode == 1
    assert "without --yes" in refused.stderr
    assert statuses(tmp_path)["job-b"] == "dead"

    discarded = outbox(config_path, "discard", "job-b", "--yes")
    assert discarded.returncode == 0, discarded.stderr
    again = outbox(config_path, "discard", "job-b", "--yes")
    assert again.returncode == 1 and "has no dead letter" in again.stderr
    assert statuses(tmp_path) == {"job-a": "pending", "job-b": "discarded", "job-c": "pending"}


def test_outbox_without_a_state_database_says_so(tmp_path):
    config = ValidatorConfig(validator_hotkey=ALICE, state_dir=str(tmp_path / "nothing"))
    config_path = write_config(config, tmp_path / "config.toml")
    listed = outbox(config_path, "list")
    assert listed.returncode == 1
    assert "no state database at" in listed.stderr
    assert not (tmp_path / "nothing").exists()


def test_outbox_on_a_state_dir_needs_no_config_and_no_hotkey(tmp_path):
    state_with_dead_letters(tmp_path)
    (tmp_path / "config.toml").unlink()
    bare = {key: value for key, value in os.environ.items() if not key.startswith("VALIDATOR")}
    bare["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")
    state = str(tmp_path / "state")
    by_flag = outbox_cli("--state-dir", state, "list", env=bare, cwd=tmp_path)
    assert by_flag.returncode == 0, by_flag.stderr
    assert by_flag.stdout.splitlines()[0] == "2 dead letters, 1 unsent, 3 entries"
    by_env = outbox_cli("list", env=bare | {"VALIDATOR_TUI_STATE_DIR": state}, cwd=tmp_path)
    assert by_env.returncode == 0, by_env.stderr
    assert by_env.stdout == by_flag.stdout


def test_outbox_list_dead_lists_dead_letters_only(tmp_path):
    config_path = state_with_dead_letters(tmp_path)
    listed = outbox(config_path, "list", "--dead")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "2 dead letters, 1 unsent, 3 entries"
    assert sorted(line.split()[0] for line in lines[2:]) == ["job-a", "job-b"]
    assert all(" dead letter " in line for line in lines[2:])
