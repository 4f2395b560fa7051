"""`validator-tui serve` (the console in a browser, read-only, behind a token), tested with raw
HTTP and websocket clients against real processes: a headless demo engine on a state dir, and
`serve` on an ephemeral port in front of it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.support.browser import CHROMIUM, headless_page
from tests.support.terminal import cli
from validator_tui.control.client import SocketEngine
from validator_tui.control.paths import find_socket

pytest.importorskip("textual_serve", reason="the web extra is not installed")

COOKIE = "validator_tui_session"


class Served:
    def __init__(self, state_dir: Path, url: str, process: subprocess.Popen[str]) -> None:
        self.state_dir = state_dir
        self.url = url
        self.base, self.token = url.split("/?token=")
        self.process = process

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws?width=100&height=30"

    def cookie(self, token: str | None = None) -> dict[str, str]:
        return {"Cookie": f"{COOKIE}={token or self.token}"}


def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _serve(state: Path) -> Served:
    """A `serve` process in front of the engine on `state`, with the URL it printed."""
    server = subprocess.Popen(
        cli("serve", "--state-dir", str(state), "--port", "0", "--max-viewers", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    match = re.fullmatch(r"open (http://127\.0\.0\.1:\d+/\?token=\S+)\n", line)
    if not match:
        _stop(server)
        raise AssertionError(f"serve printed {line!r}")
    return Served(state, match.group(1), server)


@pytest.fixture(scope="module")
def engine_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("serve") / "state"
    engine = subprocess.Popen(
        cli("demo", "--headless", "--jobs-per-minute", "0", "--state-dir", str(state)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _until(lambda: find_socket(state).exists(), 30, "the engine's control socket")
        yield state
    finally:
        _stop(engine)


@pytest.fixture(scope="module")
def served(engine_state: Path) -> Iterator[Served]:
    server = _serve(engine_state)
    try:
        yield server
    finally:
        _stop(server.process)


def viewers(state_dir: Path) -> list[int]:
    """Pids of the attach processes serving viewers of `state_dir`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"attach" in argv and b"--read-only" in argv and str(state_dir).encode() in argv:
            found.append(int(entry.name))
    return found


def test_without_the_token_every_request_is_refused(served: Served) -> None:
    with httpx.Client(base_url=served.base, follow_redirects=False) as http:
        assert http.get("/").status_code == 401
        assert http.get("/static/js/textual.js").status_code == 401
        assert http.get("/", params={"token": "wrong"}).status_code == 401
        assert http.get("/", headers=served.cookie("wrong")).status_code == 401
    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(_frames(served.ws_url, {}, origin=served.base, seconds=0.5))
    assert refused.value.response.status_code == 403


def test_the_token_becomes_a_strict_httponly_cookie_and_the_page_stays_local(
    served: Served,
) -> None:
    with httpx.Client(base_url=served.base, follow_redirects=False) as http:
        exchanged = http.get("/", params={"token": served.token})
        assert exchanged.status_code == 303 and exchanged.headers["location"] == "/"
        cookie = exchanged.headers["set-cookie"]
        assert f"{COOKIE}={served.token}" in cookie
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page = http.get("/", headers=served.cookie())
        assert page.status_code == 200
        assert "textual.js" in page.text
        assert "http://" not in page.text and "https://" not in page.text
        font = http.get("/static/fonts/RobotoMono-VariableFont_wght.ttf", headers=served.cookie())
        assert font.status_code == 200 and len(font.content) > 10_000


def test_a_websocket_from_another_origin_is_refused(served: Served) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(
            _frames(served.ws_url, served.cookie(), origin="http://evil.example", seconds=0.5)
        )
    assert refused.value.response.status_code == 403


def test_a_viewer_gets_the_console_and_its_keys_change_nothing(served: Served) -> None:
    before = asyncio.run(_auto_claim(served.state_dir))
    received = asyncio.run(
        _frames(served.ws_url, served.cookie(), origin=served.base, seconds=4.0, keys="a")
    )
    assert received > 5_000
    assert asyncio.run(_auto_claim(served.state_dir)) == before
    _until(lambda: not viewers(served.state_dir), 15, "the viewer's process to end")


async def _viewer(served: Served) -> websockets.ClientConnection:
    """A viewer's connection; while the server still counts the previous test's viewer (it
    learns that a viewer's process ended a moment after the process is gone), asked again."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await websockets.connect(
                served.ws_url, additional_headers=served.cookie(), origin=served.base, max_size=None
            )
        except websockets.InvalidStatus as refused:
            if refused.response.status_code != 503 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def test_a_dropped_viewer_ends_its_process_and_max_viewers_holds(served: Served) -> None:
    async def scenario() -> None:
        first = await _viewer(served)
        try:
            second = await _viewer(served)
            try:
                await first.recv()
                with pytest.raises(websockets.InvalidStatus) as refused:
                    await _frames(served.ws_url, served.cookie(), origin=served.base, seconds=0.5)
                assert refused.value.response.status_code == 503
                assert len(viewers(served.state_dir)) == 2
            finally:
                second.transport.abort()
        finally:
            first.transport.abort()

    asyncio.run(scenario())
    _until(lambda: not viewers(served.state_dir), 30, "the dropped viewers' processes to end")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_server_leaves_no_viewer_process(
    engine_state: Path, stop: signal.Signals
) -> None:
    server = _serve(engine_state)

    async def watch() -> None:
        async with websockets.connect(
            server.ws_url, additional_headers=server.cookie(), origin=server.base, max_size=None
        ) as ws:
            await ws.recv()
            assert len(viewers(engine_state)) == 1
            server.process.send_signal(stop)
            server.process.wait(20)

    try:
        with contextlib.suppress(websockets.ConnectionClosed):
            asyncio.run(watch())
    finally:
        _stop(server.process)
    _until(lambda: not viewers(engine_state), 10, "the viewer's process to end")


def test_serve_refuses_a_remote_address_without_allow_remote(tmp_path: Path) -> None:
    refused = subprocess.run(
        cli("serve", "--state-dir", str(tmp_path), "--host", "0.0.0.0"),
        capture_output=True,
        text=True,
        timeout=30,
        env=os.environ | {"VALIDATOR_TUI_CONFIG": ""},
    )
    assert refused.returncode == 2
    assert "not a loopback address" in refused.stderr and "--allow-remote" in refused.stderr


async def _frames(
    url: str, headers: dict[str, str], *, origin: str, seconds: float, keys: str = ""
) -> int:
    """Bytes of screen the websocket brings in `seconds` (typing `keys` after the first)."""
    async with websockets.connect(
        url, additional_headers=headers, origin=origin, max_size=None
    ) as ws:
        received = len(await asyncio.wait_for(ws.recv(), 15))
        for key in keys:
            await ws.send(f'["stdin", "{key}"]')
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                received += len(await asyncio.wait_for(ws.recv(), left))
            except TimeoutError:
                break
    return received


async def _auto_claim(state_dir: Path) -> bool:
    client = SocketEngine(state_dir, read_only=True)
    await client.connect()
    try:
        delta = await client.changes_since(0, 0)
        return delta.header.auto_claim
    finally:
        await client.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed")
def test_a_real_browser_shows_the_live_dashboard(served: Served, tmp_path: Path) -> None:
    async def look() -> bytes:
        async with headless_page(1280, 800) as browser:
            await browser.call("Page.enable")
            await browser.call("Page.navigate", url=served.url)
            for _ in range(100):
                await asyncio.sleep(0.2)
                shown = await browser.call(
                    "Runtime.evaluate",
                    expression="document.body.classList.contains('-first-byte')",
                    returnByValue=True,
                )
                if shown["result"].get("value"):
                    break
            else:
                raise AssertionError("the console never painted in the browser")
            await asyncio.sleep(2.0)
            return await browser.screenshot()

    png = asyncio.run(look())
    assert png.startswith(b"\x89PNG")
    _until(lambda: not viewers(served.state_dir), 30, "the browser's viewer process to end")
    (tmp_path / "browser.png").write_bytes(png)
    shots = os.environ.get("VALIDATOR_TUI_SCREENSHOTS")
    if shots:
        (Path(shots) / "browser.png").write_bytes(png)
