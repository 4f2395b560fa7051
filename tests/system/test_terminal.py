"""The terminal is restored on every exit path (tmux's own view of the pane after the program
has exited), and the control socket refuses consoles of another user."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.sim_thread import SimThread
from tests.support.terminal import Tmux, cli
from validator_tui.config_io import write_config
from validator_tui.control.paths import find_socket

#: alternate screen, cursor visible, mouse reporting (any, standard, SGR).
RESTORED = "0 1 0 0 0"
PANE = "#{alternate_on} #{cursor_flag} #{mouse_any_flag} #{mouse_standard_flag} #{mouse_sgr_flag}"


@pytest.fixture
def tmux():
    sessions: list[Tmux] = []

    def start(argv: list[str]) -> Tmux:
        session = Tmux(argv)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.close()


@pytest.mark.parametrize("how", ["q", "sigterm", "sigint"])
def test_the_terminal_is_restored_after_the_console_ends(tmp_path, tmux, how):
    demo = cli("demo", "--state-dir", str(tmp_path / "s"), "--jobs-per-minute", "0")
    pane = tmux([*demo, "--boot-seconds", "0"])
    pane.wait("#{alternate_on}", "1", 60)
    pane.wait_text("Challenge CVMs", 60)
    assert pane.show(PANE) == "1 0 1 0 1", "the console should own the screen and the mouse"
    if how == "q":
        pane.keys("q")
        pane.wait_text("Stop validator", 30)
        pane.keys("s")
    else:
        pane.kill(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
    assert pane.exit_code() == 0
    assert pane.show(PANE) == RESTORED


def test_an_engine_crash_closes_the_console_and_restores_the_terminal(tmp_path, tmux):
    pane = tmux([sys.executable, "-m", "tests.support.crashing_console", str(tmp_path / "s")])
    pane.wait("#{alternate_on}", "1", 60)
    assert pane.exit_code() == 1
    assert pane.show(PANE) == RESTORED
    assert "the engine stopped on an error" in pane.screen()


CLIENT = """
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(sys.argv[1])
except OSError as exc:
    print(type(exc).__name__)
    sys.exit(0)
try:
    sock.sendall(b'{"type":"hello","protocol":1}\\n')
except (BrokenPipeError, ConnectionResetError):
    pass  # refused at once: the engine's answer is still there to read
print(sock.makefile("rb").readline().decode().strip())
"""


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another uid needs root")
def test_a_console_of_another_uid_is_refused():
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 another user could run")
    base = Path(tempfile.mkdtemp(prefix="vt-uid-", dir="/tmp"))
    os.chmod(base, 0o711)
    sims = SimThread(base, auto_claim=True)
    engine = None
    try:
        config = write_config(sims.env.config, base / "validator.toml")
        log = base / "engine.log"
        with log.open("wb") as sink:
            engine = subprocess.Popen(
                cli("run", "--headless", "--config", str(config)), stdout=sink, stderr=sink
            )
        state = sims.env.config.state_path
        socket_path = find_socket(state)
        deadline = time.monotonic() + 30
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

        def connect_as_nobody() -> str:
            done = subprocess.run(
                [python, "-I", "-c", CLIENT, str(socket_path)],
                preexec_fn=_as_nobody,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout.strip()

        assert connect_as_nobody() == "PermissionError"  # the 0700 state dir keeps it out
        os.chmod(state, 0o711)  # loosened by hand: the engine itself still refuses
        os.chmod(socket_path, 0o666)
        answer = connect_as_nobody()
        assert '"code":"refused"' in answer and '"fatal":true' in answer, answer
        deadline = time.monotonic() + 10
        while b"refused a connection from uid 65534" not in log.read_bytes():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(30) == 0
    finally:
        if engine is not None and engine.poll() is None:
            engine.kill()
        sims.close()
        shutil.rmtree(base, ignore_errors=True)
