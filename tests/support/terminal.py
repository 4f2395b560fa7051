"""Real terminals for system tests: a program on a pseudo-terminal of its own (`PtyProcess`),
and a program in a private tmux server whose pane state can be read after it exits (`Tmux`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Output kept from a pseudo-terminal (the last bytes).
KEEP_BYTES = 4 << 20


def cli(*args: str) -> list[str]:
    """`validator-tui <args>` with this interpreter."""
    return [sys.executable, "-m", "validator_tui", *args]


def terminal_env(**extra: str) -> dict[str, str]:
    return os.environ | {"TERM": "xterm-256color", "PYTHONUNBUFFERED": "1"} | extra


class PtyProcess:
    """A program on its own pseudo-terminal; its output drained (so it never blocks) by a
    thread. `controlling`: the terminal is the program's controlling terminal, so closing it
    sends the program SIGHUP like an SSH drop; otherwise it only sees EIO."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        controlling: bool = True,
        cols: int = 120,
        rows: int = 40,
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env=terminal_env(),
            start_new_session=True,
            preexec_fn=_take_terminal if controlling else None,
        )
        os.close(slave)
        self.pid = self.process.pid
        self._master: int | None = master
        self._output = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        master = self._master
        assert master is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._output += data
                del self._output[:-KEEP_BYTES]

    def output(self) -> bytes:
        with self._lock:
            return bytes(self._output)

    def wait_for(self, marker: bytes, timeout: float = 30.0) -> None:
        """Return once `marker` has been written (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        while marker not in self.output():
            if time.monotonic() > deadline:
                raise AssertionError(f"{marker!r} did not appear within {timeout:g}s")
            if self.process.poll() is not None:
                raise AssertionError(f"the program exited ({self.process.returncode}) first")
            time.sleep(0.05)

    def send(self, data: bytes) -> None:
        assert self._master is not None
        os.write(self._master, data)

    def hang_up(self) -> None:
        """The terminal goes away (the master side closes), as on an SSH drop."""
        self._stop.set()
        self._thread.join(5)
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def close(self) -> None:
        """Kill the program if it still runs; close the terminal."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.hang_up()


def _take_terminal() -> None:
    """In the child, after setsid(): make the pty on stdin the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


#: The pane's own process: runs the program, records its pid, and stays after it exits (a
#: dead pane's cursor state is tmux's, not the program's), saying how it ended.
_KEEPER = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(child.pid))\n"
    "code = child.wait()\n"
    "print(f'[exited {code}]', flush=True)\n"
    "time.sleep(3600)\n"
)


class Tmux:
    """One program in a private tmux server (its own socket, no user config); the pane stays
    after the program exits, so the terminal state it left can be read."""

    def __init__(self, argv: Sequence[str], *, cols: int = 120, rows: int = 40) -> None:
        self.socket = f"vt-test-{os.getpid()}-{time.monotonic_ns()}"
        descriptor, self._pidfile = tempfile.mkstemp(suffix=".pid")
        os.close(descriptor)
        keeper = [sys.executable, "-c", _KEEPER, self._pidfile, *argv]
        command = f"cd {shlex.quote(str(ROOT))} && exec env PYTHONUNBUFFERED=1 {shlex.join(keeper)}"
        self._tmux("new-session", "-d", "-s", "t", "-x", str(cols), "-y", str(rows), command)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout

    def show(self, fmt: str) -> str:
        """A tmux format about the pane (e.g. `#{alternate_on}`)."""
        return self._tmux("display-message", "-p", "-t", "t", fmt).strip()

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t")

    @property
    def pid(self) -> int:
        """The program's pid."""
        deadline = time.monotonic() + 10
        while not (text := Path(self._pidfile).read_text()):
            assert time.monotonic() < deadline, "the program did not start"
            time.sleep(0.05)
        return int(text)

    def wait(self, fmt: str, value: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (seen := self.show(fmt)) != value:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{fmt} is {seen!r}, not {value!r}, after {timeout:g}s:\n{self.screen()}"
                )
            time.sleep(0.1)

    def wait_text(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on screen after {timeout:g}s")
            time.sleep(0.2)

    def exit_code(self, timeout: float = 60.0) -> int:
        """Wait for the program to end; its exit code (negative: killed by that signal)."""
        deadline = time.monotonic() + timeout
        while "[exited " not in (screen := self.screen()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the program did not exit within {timeout:g}s:\n{screen}")
            time.sleep(0.1)
        return int(screen.split("[exited ", 1)[1].split("]", 1)[0])

    def kill(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    def close(self) -> None:
        """Stop the program (it would outlive the server: a hangup only detaches the
        console), then the server."""
        text = Path(self._pidfile).read_text()
        if text:
            _stop(int(text))
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._tmux("kill-server")
        os.unlink(self._pidfile)


def _stop(pid: int, grace: float = 15.0) -> None:
    """SIGTERM `pid`, SIGKILL it after `grace` seconds; return once it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
