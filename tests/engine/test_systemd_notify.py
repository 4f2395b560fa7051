"""systemd's notify protocol through a real datagram socket: READY=1 once recovery is done,
WATCHDOG=1 at half of $WATCHDOG_USEC from the engine's loop (and none while that loop is
blocked), STATUS= with the counts, STOPPING=1 at a graceful stop."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import FAST, running, wait_for
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.notify import SystemdNotifier

WATCHDOG_USEC = 200_000


class Listener:
    """systemd's side: a datagram socket whose messages a thread timestamps as they come (the
    engine's loop may be blocked meanwhile)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._done.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self.sock.close()

    def pings(self) -> list[float]:
        return [at for at, text in list(self.messages) if "WATCHDOG=1" in text.split("\n")]

    def texts(self) -> list[str]:
        return [text for _, text in list(self.messages)]


@pytest.fixture
def listener(tmp_path, monkeypatch) -> Iterator[Listener]:
    path = tmp_path / "notify.sock"
    if len(os.fsencode(path)) >= 100:
        path = Path(f"/tmp/vt-notify-{os.getpid()}-{id(tmp_path)}.sock")
    heard = Listener(path)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield heard
    finally:
        heard.close()
        path.unlink(missing_ok=True)


async def test_ready_status_watchdog_and_stopping(listener):
    async with DemoEnvironment(seed=71, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            assert validator.notifier.watchdog_every == WATCHDOG_USEC / 2e6
            await wait_for(lambda: len(listener.pings()) >= 5, 10, "five watchdog pings")
            texts = listener.texts()
            ready = next(i for i, text in enumerate(texts) if "READY=1" in text.split("\n"))
            assert "STATUS=running 0, completed 0" in texts[ready]
            pings = listener.pings()
            # Never faster than half the watchdog's timeout (a loaded machine may be slower):
            # n pings span at least n-1 intervals, give or take one for the receipt's jitter.
            every = WATCHDOG_USEC / 2e6
            assert len(pings) - 1 <= (pings[-1] - pings[0]) / every + 1, pings
            assert any(text.startswith("STATUS=") or "\nSTATUS=" in text for text in texts)
            assert not any("STOPPING=1" in text for text in texts)
        await wait_for(lambda: "STOPPING=1" in listener.texts(), 5, "STOPPING=1")


async def test_a_blocked_loop_stops_the_watchdog_pings(listener):
    async with DemoEnvironment(seed=72, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config):
            await wait_for(lambda: len(listener.pings()) >= 2, 10, "pings")
            blocked_from = time.monotonic()
            time.sleep(1.5)  # the engine's loop hangs: nothing on it runs
            blocked_until = time.monotonic()
            await wait_for(
                lambda: any(at > blocked_until for at in listener.pings()), 5, "pings again"
            )
            # A ping sent just before the block may be received a little into it.
            during = [at for at in listener.pings() if blocked_from + 0.3 < at < blocked_until]
            assert during == []


def test_without_a_notify_socket_nothing_is_sent_and_another_pid_gets_no_watchdog():
    assert not SystemdNotifier({}).enabled
    SystemdNotifier({}).send("READY=1")
    other = SystemdNotifier(
        {"NOTIFY_SOCKET": "@abstract", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    )
    assert other.address == "\0abstract"
    assert other.watchdog_every is None
    mine = SystemdNotifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000000"})
    assert mine.watchdog_every == 0.5
