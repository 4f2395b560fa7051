"""One engine per state dir (flock), and where the control socket lives."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import pytest

from validator_tui.control import paths
from validator_tui.control.lock import StateDirLock, StateDirLocked, format_uptime


def test_a_second_lock_on_the_same_state_dir_is_refused_naming_the_holder(tmp_path):
    state = tmp_path / "state"
    held = StateDirLock.acquire(state, mode="headless", hotkey="5Grw")
    try:
        with pytest.raises(StateDirLocked) as refused:
            StateDirLock.acquire(state, mode="console", hotkey="5Grw")
        message = str(refused.value)
        assert str(state) in message
        assert f"pid {os.getpid()}" in message and "mode headless" in message
        assert f"validator-tui attach --state-dir {state}" in message
        assert refused.value.holder is not None and refused.value.holder.mode == "headless"
        recorded = json.loads((state / "lock").read_text())
        assert recorded["pid"] == os.getpid() and recorded["hotkey"] == "5Grw"
    finally:
        held.release()
    again = StateDirLock.acquire(state, mode="console", hotkey="5Grw")
    again.release()


def test_the_lock_makes_the_state_dir_private(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    StateDirLock.acquire(state, mode="demo", hotkey="h").release()
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(state / "lock").st_mode) == 0o600


def test_a_symlinked_state_dir_resolves_to_the_same_lock(tmp_path):
    real = tmp_path / "real"
    link = tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    held = StateDirLock.acquire(real, mode="headless", hotkey="h")
    try:
        with pytest.raises(StateDirLocked):
            StateDirLock.acquire(link, mode="headless", hotkey="h")
    finally:
        held.release()


def test_short_state_dirs_keep_their_socket_long_ones_use_the_runtime_dir(tmp_path, monkeypatch):
    short = tmp_path / "s"
    assert paths.socket_path(short) == paths.state_dir_key(short) / "control.sock"
    runtime = Path(tempfile.mkdtemp(prefix="vt-run-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    chosen = paths.socket_path(deep)
    assert chosen.parent == runtime / "validator-tui"
    assert paths.fits(chosen)
    assert chosen == paths.socket_path(deep)
    assert chosen != paths.socket_path(tmp_path / ("d" * 60) / ("f" * 60))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # too long to hold the socket
    assert paths.socket_path(deep).parent == Path(f"/tmp/validator-tui-{os.getuid()}")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert paths.socket_path(deep).parent == Path(f"/tmp/validator-tui-{os.getuid()}")
    runtime.rmdir()


def test_private_dirs_refuse_links_and_tighten_modes(tmp_path):
    target = tmp_path / "target"
    target.mkdir(mode=0o777)
    os.chmod(target, 0o777)
    assert paths.ensure_private_dir(target) is True
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o700
    assert paths.ensure_private_dir(target) is False
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(paths.ControlPathError, match="not a directory"):
        paths.ensure_private_dir(link)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (421, "7m 01s"), (3 * 3600 + 300, "3h 05m"), (2 * 86400 + 4 * 3600, "2d 04h")],
)
def test_uptime_reads_well(seconds, text):
    assert format_uptime(seconds) == text
