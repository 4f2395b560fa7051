"""`validator-tui serve`: the console of a running engine in a browser, read-only, behind a
token.

textual-serve runs one `validator-tui attach --read-only` process per browser tab and relays
its screen over a websocket. On its own it has no authentication and no Origin check, loads
fonts from another host, builds absolute URLs from its public URL and takes any terminal
size; this server adds what a console that shows a validator's state needs:
- a token per start, printed as a URL (`http://127.0.0.1:8765/?token=…`); without it every
  request is refused (401; the websocket 403); a valid token is exchanged for an HttpOnly,
  SameSite=Strict cookie and the token leaves the address bar;
- the websocket checks `Origin` against the served origin (so no other web page the operator
  has open can read the console);
- at most `max_viewers` sessions; terminal sizes clamped;
- a page of its own: relative URLs (an SSH forward to another local port works), the font
  served from here, no request leaving the machine;
- the served command is fixed and read-only: the engine itself refuses every command of a
  read-only connection;
- a viewer that goes away (closed, frozen, network gone) ends its attach process within the
  websocket heartbeat (~30 s); a process that does not quit is killed; the children's stderr
  goes to a file, so no output is held in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from textual_serve.app_service import AppService
from textual_serve.server import Server

from validator_tui.config import is_loopback

logger = logging.getLogger("validator_tui.serve")

COOKIE = "validator_tui_session"
#: Terminal sizes a browser may ask for (columns, rows).
COLUMNS = (20, 400)
ROWS = (8, 200)
#: Seconds between websocket pings: a viewer that stops answering is dropped after ~2 of them.
HEARTBEAT_S = 15.0
#: How long a viewer's process has to quit once asked, before it is killed.
QUIT_GRACE_S = 5.0
PAGE = Path(__file__).with_name("index.html")
#: textual-serve's own static files: its terminal script, stylesheet and font.
STATIC = Path(sys.modules[Server.__module__].__file__ or ".").parent / "static"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def clamp(value: object, bounds: tuple[int, int], default: int) -> int:
    """`value` as an int within `bounds` (`default` when it is not a number)."""
    try:
        number = int(str(value))
    except ValueError:
        number = default
    return max(bounds[0], min(bounds[1], number))


class ReadOnlyConsoleServer(Server):
    """Serves the read-only console of the engine on `state_dir` to at most `max_viewers`
    browsers holding this start's token."""

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        public_url: str | None = None,
        max_viewers: int = 4,
        token: str | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.token = token or secrets.token_urlsafe(24)
        self.max_viewers = max_viewers
        self.viewers: set[web.WebSocketResponse] = set()
        command = "exec " + " ".join(
            shlex.quote(part)
            for part in (sys.executable, "-m", "validator_tui", "attach", "--read-only")
        )
        viewer_log = state_dir / "serve-viewers.log"
        command += f" --state-dir {shlex.quote(str(state_dir))} 2>>{shlex.quote(str(viewer_log))}"
        super().__init__(command, host=host, port=port, title="validator-tui")
        self.given_public_url = public_url.rstrip("/") if public_url else None
        self.statics_path = STATIC

    @property
    def url(self) -> str:
        """The URL to open: the public URL with this start's token."""
        return f"{self.public_url}/?token={self.token}"

    def initialize_logging(self) -> None:
        """Logging is the CLI's (validator_tui.logs), not textual-serve's."""

    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.add_routes(
            [
                web.get("/", self.handle_index, name="index"),
                web.get("/ws", self.handle_websocket, name="websocket"),
                web.static("/static", self.statics_path, name="static"),
            ]
        )
        return app

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Listen (port 0 picks a free one), print the URL to open, serve until `stop` is
        set; then end every viewer's process."""
        runner = web.AppRunner(await self._make_app(), handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = _bound_port(runner, self.port)
            shown = f"[{self.host}]" if ":" in self.host else self.host
            self.public_url = self.given_public_url or f"http://{shown}:{self.port}"
            logger.info("serving the read-only console of %s", self.state_dir)
            print(f"open {self.url}", flush=True)
            await stop.wait()
            # Closing the viewers' websockets ends their sessions, and so their processes.
            await asyncio.gather(
                *(viewer.close(code=1001, message=b"server stopping") for viewer in self.viewers),
                return_exceptions=True,
            )
        finally:
            await runner.cleanup()

    def _has_session(self, request: web.Request) -> bool:
        cookie = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self.token.encode())

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Every request needs the session cookie; `/?token=` with the right token sets it."""
        offered = request.query.get("token")
        if offered is not None and request.path == "/":
            if not hmac.compare_digest(offered.encode(), self.token.encode()):
                raise web.HTTPUnauthorized(text="wrong token: open the URL serve printed\n")
            exchanged = web.HTTPSeeOther("/")
            exchanged.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict", path="/")
            raise exchanged
        if not self._has_session(request):
            if request.path == "/ws":
                raise web.HTTPForbidden(text="no session\n")
            raise web.HTTPUnauthorized(
                text="open the URL `validator-tui serve` printed (it carries ?token=…)\n"
            )
        response: web.StreamResponse = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    def origin_allowed(self, request: web.Request) -> bool:
        """Whether the websocket's Origin is the page this server served: the public URL's
        origin, or the Host the request came to when that is this machine."""
        origin = request.headers.get("Origin", "")
        public = urlsplit(self.public_url)
        allowed = {f"{public.scheme}://{public.netloc}"}
        hostname = (request.host or "").rsplit(":", 1)[0] if request.host else ""
        if is_loopback(hostname):
            allowed.add(f"http://{request.host}")
        return origin in allowed

    async def handle_index(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html")

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        if not self.origin_allowed(request):
            origin = request.headers.get("Origin", "(none)")
            logger.warning("refused a viewer: Origin %r is not this server's", origin[:200])
            raise web.HTTPForbidden(text="wrong Origin\n")
        if len(self.viewers) >= self.max_viewers:
            raise web.HTTPServiceUnavailable(text=f"at most {self.max_viewers} viewers\n")
        websocket = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        self.viewers.add(websocket)
        try:
            return await self._serve_viewer(request, websocket)
        finally:
            self.viewers.discard(websocket)

    async def _serve_viewer(
        self, request: web.Request, websocket: web.WebSocketResponse
    ) -> web.WebSocketResponse:
        width = clamp(request.query.get("width", "80"), COLUMNS, 80)
        height = clamp(request.query.get("height", "24"), ROWS, 24)
        await websocket.prepare(request)
        service = AppService(
            self.command,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=lambda: _close(websocket),
            download_manager=self.download_manager,
        )
        await service.start(width, height)
        logger.info("viewer connected (%d of at most %d)", len(self.viewers), self.max_viewers)
        try:
            await self._relay(websocket, service)
        finally:
            await _end(service)
            logger.info("viewer gone")
        return websocket

    async def _relay(self, websocket: web.WebSocketResponse, service: AppService) -> None:
        """Keys, sizes and focus from the browser to the viewer's process; anything malformed
        is ignored."""
        async for message in websocket:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                envelope = json.loads(message.data)
            except ValueError:
                continue
            if not isinstance(envelope, list) or not envelope:
                continue
            kind, data = envelope[0], envelope[1] if len(envelope) > 1 else None
            if kind == "stdin" and isinstance(data, str):
                await service.send_bytes(data.encode("utf-8"))
            elif kind == "resize" and isinstance(data, dict):
                width = clamp(data.get("width"), COLUMNS, 80)
                height = clamp(data.get("height"), ROWS, 24)
                await service.set_terminal_size(width, height)
            elif kind == "ping":
                await websocket.send_json(["pong", data])
            elif kind == "blur":
                await service.blur()
            elif kind == "focus":
                await service.focus()


async def _close(websocket: web.WebSocketResponse) -> None:
    await websocket.close()


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    """The port the runner's site listens on (what port 0 became)."""
    for site in runner.sites:
        server = getattr(site, "_server", None)
        for sock in getattr(server, "sockets", None) or ():
            return int(sock.getsockname()[1])
    return asked


async def _end(service: AppService) -> None:
    """Ask the viewer's process to quit; kill it if it has not within QUIT_GRACE_S."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(service.stop(), QUIT_GRACE_S)
    process = service._process
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
