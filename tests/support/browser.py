"""A headless Chromium driven over the DevTools protocol (a websocket): open a URL, wait, take
a screenshot. Debian's `chromium`; tests skip where it is not installed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One page of a headless Chromium, commanded over its DevTools websocket."""

    def __init__(self, page: Any) -> None:
        self._page = page
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are skipped)."""
        ident = next(self._ids)
        await self._page.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await self._page.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    async def screenshot(self) -> bytes:
        result = await self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(result["data"])


@contextlib.asynccontextmanager
async def headless_page(width: int, height: int) -> AsyncIterator[Browser]:
    """A fresh headless Chromium (its own profile) with one page of `width` x `height`."""
    assert CHROMIUM is not None
    # Chromium's helper processes may still write to the profile as it exits.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its renderers go with it (killpg below)
        )
        try:
            endpoint = await asyncio.to_thread(_devtools_endpoint, process)
            port = re.search(r":(\d+)/", endpoint)
            assert port is not None
            async with httpx.AsyncClient() as http:
                pages = (await http.get(f"http://127.0.0.1:{port.group(1)}/json/list")).json()
            target = next(page for page in pages if page.get("type") == "page")
            async with websockets.connect(target["webSocketDebuggerUrl"], max_size=None) as page:
                yield Browser(page)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _devtools_endpoint(process: subprocess.Popen[str]) -> str:
    """The `ws://…` DevTools address Chromium prints on stderr at start."""
    assert process.stderr is not None
    for line in process.stderr:
        if "DevTools listening on" in line:
            return line.split("DevTools listening on", 1)[1].strip()
    raise RuntimeError("chromium exited before printing its DevTools address")
