"""The evaluator a simulated VM serves on its mapped host port: asyncio streams, tiny HTTP/1.1.

`GET /health` → 200 `{"status":"ok"}`. `POST /evaluate` with JSON `{job_id, challenge_id,
submission_id, miner_hotkey, code}` → 200 `{"score": score_for_code(code), "metrics":
{tests_passed, tests_total, latency_ms}, "logs": [...]}`, changed by the `#sim:` directives in
`code` (see `directives.py`) and delayed by the simulator-wide latency; `/health` answers after
the simulator-wide health latency. Connections are
keep-alive; request bodies need Content-Length (chunked bodies get 411).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from validator_tui.sim.directives import Directives, parse_directives
from validator_tui.sim.scoring import score_for_code

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
STREAM_CHUNK = 64 * 1024
TESTS_TOTAL = 10
_HOSTILE = "\x1b[31;1m{text}\x1b[0m\x1b]0;pwned-title\x07\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2K\x1b[1A"


def bind_port(port: int, host: str = "127.0.0.1") -> socket.socket:
    """Reserve `host:port` (bound, not yet listening); raises OSError when it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    body: bytes
    keep_alive: bool


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _response(status: int, body: bytes, keep_alive: bool) -> bytes:
    """One complete HTTP/1.1 response with a JSON body."""
    if status in (204, 304):
        body = b""
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        + ("" if keep_alive else "Connection: close\r\n")
        + "\r\n"
    )
    return head.encode("latin-1") + body


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """The next request on the connection, or None at a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _BadRequest(400, "truncated request") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise _BadRequest(431, "request head too large") from exc
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest(400, "malformed header")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _BadRequest(411, "chunked request bodies are not supported")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise _BadRequest(400, "bad Content-Length")
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise _BadRequest(413, "request body too large")
    body = await reader.readexactly(length) if length else b""
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return _Request(method, target.split("?", 1)[0], body, keep_alive)


@dataclass(frozen=True)
class _Huge:
    """A 200 answer of `size` bytes, streamed (see `_stream_huge`)."""

    size: int


@dataclass(frozen=True)
class _Trickle:
    """A 200 answer sent at `rate` bytes per second (see `_stream_trickle`)."""

    rate: int


#: A trickling answer sends an hour's worth of bytes, in pieces this many times a second.
TRICKLE_SECONDS = 3600
TRICKLE_TICKS_PER_S = 10


async def _stream_trickle(writer: asyncio.StreamWriter, rate: int) -> None:
    """A valid /evaluate body sent at `rate` bytes per second, headers at once, without
    Content-Length and ended by closing the connection (after an hour's worth of bytes)."""
    head = b'{"score":0.5,"metrics":{},"logs":["'
    tail = b'"]}'
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    writer.write(head)
    await writer.drain()
    padding = rate * TRICKLE_SECONDS
    owed = 0.0
    while padding > 0:
        await asyncio.sleep(1 / TRICKLE_TICKS_PER_S)
        owed += rate / TRICKLE_TICKS_PER_S
        piece = min(padding, int(owed))
        if piece:
            writer.write(b"x" * piece)
            await writer.drain()
            owed -= piece
            padding -= piece
    writer.write(tail)
    await writer.drain()


async def _stream_huge(writer: asyncio.StreamWriter, size: int) -> None:
    """A valid /evaluate body of exactly `size` bytes (one long log line), written in chunks
    without Content-Length and ended by closing the connection; nothing this big is ever held
    in memory here."""
    head = b'{"score":0.5,"metrics":{},"logs":["'
    tail = b'"]}'
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    writer.write(head)
    padding = max(0, size - len(head) - len(tail))
    chunk = b"x" * STREAM_CHUNK
    while padding > 0:
        piece = chunk if padding >= STREAM_CHUNK else chunk[:padding]
        writer.write(piece)
        padding -= len(piece)
        await writer.drain()
    writer.write(tail)
    await writer.drain()


def _log_lines(job_id: str, count: int, ansi: bool) -> list[str]:
    """The evaluator's `logs`: `count` lines, hostile escapes included when `ansi`."""
    lines = []
    for index in range(1, count + 1):
        text = f"[evaluator] job {job_id}: test {index}/{count} ok"
        lines.append(_HOSTILE.format(text=text) if ansi else text)
    return lines


class EvaluatorServer:
    """Serves the evaluator on one socket reserved by `bind_port`; `close` drops everything."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        log: Callable[[str], None],
        latency_s: Callable[[], float],
        health_latency_s: Callable[[], float] = lambda: 0.0,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self._sock = sock
        self._log = log
        self._latency_s = latency_s
        self._health_latency_s = health_latency_s
        #: Told `evaluator <path>` for every request (the simulator's request counters).
        self._count = count
        self._server: asyncio.Server | None = None
        self._closed = False
        self._connections: set[asyncio.Task[None]] = set()
        self.port: int = sock.getsockname()[1]

    async def start(self) -> None:
        """Start listening and answering on the reserved socket (not after `close`: a VM
        removed while it boots leaves no evaluator behind)."""
        if self._closed:
            return
        self._sock.listen(128)
        self._sock.setblocking(False)
        # The server exists before the first await, so `close` always reaches it.
        self._server = await asyncio.start_server(
            self._serve_connection, sock=self._sock, limit=MAX_HEAD_BYTES, start_serving=False
        )
        await self._server.start_serving()

    def close(self) -> None:
        """Stop listening, free the port and cut every open connection (hung ones included)."""
        self._closed = True
        if self._server is not None:
            self._server.close()
        self._sock.close()
        for task in list(self._connections):
            task.cancel()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._closed:  # accepted just before `close`: the VM is gone, so is the answer
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._serve_requests(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # `close` cancelled this connection (the VM went away). asyncio's stream server
            # would log a cancelled handler task as an error, so the task ends normally.
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def _serve_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                request = await _read_request(reader)
            except _BadRequest as bad:
                writer.write(_response(bad.status, _json({"error": bad.message}), False))
                await writer.drain()
                return
            if request is None:
                return
            answer = await self._respond(request)
            if answer is None:
                return
            if isinstance(answer, _Huge):
                await _stream_huge(writer, answer.size)
                return
            if isinstance(answer, _Trickle):
                await _stream_trickle(writer, answer.rate)
                return
            status, body = answer
            writer.write(_response(status, body, request.keep_alive))
            await writer.drain()
            if not request.keep_alive:
                return

    async def _respond(self, request: _Request) -> tuple[int, bytes] | _Huge | _Trickle | None:
        """(status, body) for a request, or None to drop the connection unanswered."""
        if self._count is not None:
            self._count(f"evaluator {request.path[:40]}")
        if request.path == "/health":
            if request.method != "GET":
                return 405, _json({"error": "method not allowed"})
            delay = self._health_latency_s()
            if delay > 0:
                await asyncio.sleep(delay)
            self._log("health check: ok")
            return 200, b'{"status":"ok"}'
        if request.path == "/evaluate":
            if request.method != "POST":
                return 405, _json({"error": "method not allowed"})
            return await self._evaluate(request.body)
        return 404, _json({"error": "not found"})

    async def _evaluate(self, body: bytes) -> tuple[int, bytes] | _Huge | _Trickle | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, _json({"error": "body is not JSON"})
        if not isinstance(payload, dict) or not isinstance(payload.get("code"), str):
            return 400, _json({"error": "field 'code' must be a string"})
        code: str = payload["code"]
        job_id = str(payload.get("job_id", ""))
        directives = parse_directives(code)
        if directives.crash:
            self._log(f"evaluate job={job_id} crashed (simulated)")
            return None
        if directives.hang:
            self._log(f"evaluate job={job_id} hanging (simulated)")
            await loop.create_future()
        delay = self._latency_s() + directives.sleep_s
        if delay > 0:
            await asyncio.sleep(delay)
        if directives.trickle_bytes_per_s is not None:
            rate = directives.trickle_bytes_per_s
            self._log(f"evaluate job={job_id} trickling its answer at {rate} bytes/s")
            return _Trickle(rate)
        if directives.answer_bytes is not None:
            self._log(f"evaluate job={job_id} answering {directives.answer_bytes} bytes")
            return _Huge(directives.answer_bytes)
        if directives.status is not None:
            self._log(f"evaluate job={job_id} failed with HTTP {directives.status} (simulated)")
            message = f"simulated evaluator failure (HTTP {directives.status})"
            return directives.status, _json({"error": message})
        elapsed_ms = (loop.time() - started) * 1000
        return 200, self._result(code, job_id, directives, elapsed_ms)

    def _result(self, code: str, job_id: str, directives: Directives, elapsed_ms: float) -> bytes:
        """The /evaluate body, with the score as a raw JSON token (it may be `NaN` or a string)."""
        score = score_for_code(code)
        token = directives.score_token or json.dumps(score)
        metrics = {
            "tests_passed": int(score * TESTS_TOTAL),
            "tests_total": TESTS_TOTAL,
            "latency_ms": round(elapsed_ms, 3),
        }
        logs = _log_lines(job_id, directives.log_lines, directives.ansi)
        self._log(f"evaluate job={job_id} score={token} in {elapsed_ms:.0f} ms")
        return b'{"score":%s,"metrics":%s,"logs":%s}' % (
            token.encode(),
            _json(metrics),
            _json(logs),
        )
