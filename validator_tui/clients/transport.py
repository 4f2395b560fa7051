"""One HTTP request under a total deadline.

httpx's timeouts bound each phase (connect, each read, each write), so a server trickling one
byte at a time can hold a request forever. `send` bounds the whole request, body included,
classifies a failure by whether the server may have seen the request (`NotSent` vs
`AnswerLost`), optionally bounds the answer's size while it streams in, and reports every
request to an observer (the engine's health trackers).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from validator_tui.clients.errors import AnswerLost, ClientError, NotSent
from validator_tui.sanitize import clean_line

#: A request that took at least this share of its deadline is reported as slow.
SLOW_SHARE = 0.5


class AnswerTooLarge(ClientError):
    """The answer's body is larger than the caller's bound; it was not read to the end."""

    def __init__(self, what: str, limit: int) -> None:
        self.limit = limit
        super().__init__(f"{what}: answer larger than {limit} bytes")


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete HTTP answer: status, headers and the whole body."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (ValueError or RecursionError when it is not)."""
        return json.loads(self.content)


@dataclass(frozen=True, slots=True)
class RequestReport:
    """What one request did, for whoever watches a server's health."""

    what: str
    elapsed: float
    deadline: float
    status: int | None = None
    sent: bool = True
    timed_out: bool = False
    error: str = ""

    @property
    def answered(self) -> bool:
        """An HTTP answer came back (whatever its status)."""
        return self.status is not None

    @property
    def slow(self) -> bool:
        """The request ran out of time, or used at least SLOW_SHARE of it."""
        return self.timed_out or self.elapsed >= self.deadline * SLOW_SHARE


RequestObserver = Callable[[RequestReport], None]


class _SendWatch:
    """An httpcore trace hook that notes when the request's first bytes start to go out."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_headers.started"):
            self.sent = True


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    what: str,
    *,
    deadline: float | None,
    observer: RequestObserver | None = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    max_body: int | None = None,
) -> Answer:
    """Send one request and read its whole answer within `deadline` seconds (None: the caller
    bounds the request itself, e.g. by cancelling it; no timeout of its own).

    Raises `NotSent` when the request never left (the server cannot have acted on it),
    `AnswerLost` when it may have reached the server but no complete answer came back
    (timeouts, resets, the deadline), `AnswerTooLarge` when `max_body` is given and the body
    exceeds it (read no further than the bound), and `ClientError` for a URL that cannot be
    requested. Every outcome but a cancellation is reported to `observer`.
    """
    watch = _SendWatch()
    started = time.monotonic()
    status: int | None = None
    error = ""
    timed_out = False
    completed = False
    try:
        # Each phase (connect, every read, every write) may take up to the whole deadline: the
        # deadline is the request's bound, never a shorter client-wide default.
        request = http.build_request(
            method,
            url,
            content=content,
            headers=headers,
            extensions={"trace": watch},
            timeout=httpx.Timeout(deadline),
        )
    except httpx.InvalidURL as exc:
        raise ClientError(f"{what}: not a usable URL: {clean_line(str(exc), 200)}") from None
    try:
        async with asyncio.timeout(deadline):
            response = await http.send(request, stream=True)
            try:
                status = response.status_code
                body = await _read_body(response, what, max_body)
            finally:
                await response.aclose()
        answer = Answer(status, response.headers, body)
        completed = True
        return answer
    except TimeoutError:
        timed_out = True
        error = f"{what}: timed out (no complete answer within {deadline:g}s)"
        if watch.sent:
            raise AnswerLost(error) from None
        raise NotSent(error) from None
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        watch.sent = False
        error = f"{what}: {_describe(exc)}"
        raise NotSent(error) from None
    except httpx.HTTPError as exc:
        error = f"{what}: {_describe(exc)}"
        if watch.sent:
            raise AnswerLost(error) from None
        raise NotSent(error) from None
    except AnswerTooLarge as exc:
        error = str(exc)
        raise
    finally:
        # A cancelled request (the caller gave up) says nothing about the server.
        if observer is not None and (completed or error):
            elapsed = time.monotonic() - started
            bound = math.inf if deadline is None else deadline
            observer(RequestReport(what, elapsed, bound, status, watch.sent, timed_out, error))


async def _read_body(response: httpx.Response, what: str, max_body: int | None) -> bytes:
    """The response's body; with `max_body`, refused as soon as it is known to be larger."""
    if max_body is None:
        return await response.aread()
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        raise AnswerTooLarge(what, max_body)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_body:
            raise AnswerTooLarge(what, max_body)
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    text = clean_line(str(exc) or type(exc).__name__, 300)
    if isinstance(exc, httpx.ConnectError):
        refused = "refused" in text.lower() or text == "All connection attempts failed"
        return "unreachable: connection refused" if refused else f"unreachable: {text}"
    return text
