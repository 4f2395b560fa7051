"""PlatformClient: the Platform API over REST (httpx) and WebSocket (websockets).

Every request carries `X-Validator-Hotkey`. Failures surface as the typed errors of
`validator_tui.clients.errors`, with untrusted server text sanitised.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from validator_tui.clients.backoff import Backoff, full_jitter
from validator_tui.clients.errors import (
    ApiError,
    ClaimLost,
    DecodeError,
    NetworkError,
)
from validator_tui.clients.orm_guard import check_read_only
from validator_tui.clients.pool import PooledClient, http_transport
from validator_tui.clients.transport import Answer, RequestObserver, send
from validator_tui.logs import Once, RepeatLimiter
from validator_tui.models.platform import (
    Challenge,
    ChallengesResponse,
    ClaimResponse,
    EntryT,
    Job,
    Listing,
    MessageDecodeError,
    OrmQueryRequest,
    OrmQueryResponse,
    PendingJobsResponse,
    UnknownMessage,
    WsMessage,
    parse_ws_message,
    read_entries,
)
from validator_tui.sanitize import clean_line

logger = logging.getLogger("validator_tui.platform")

HOTKEY_HEADER = "X-Validator-Hotkey"
RETRYABLE_STATUSES = frozenset({408, 429})
CLAIM_LOST_STATUSES = frozenset({404, 409, 410})
WS_FIRST_DELAY = 0.5
WS_HEALTHY_AFTER = 10.0

ModelT = TypeVar("ModelT", bound=BaseModel)


class SubmitOutcome(enum.Enum):
    """What the platform did with a result."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class WsState:
    """A WebSocket connection state change, as reported to `on_state`."""

    status: Literal["connecting", "connected", "reconnecting", "closed"]
    retry_in: float | None = None
    last_error: str | None = None
    since: float = field(default_factory=time.monotonic)


class PlatformClient(PooledClient):
    """Async client of the Platform API; one pooled HTTP client, usable as a context manager."""

    def __init__(
        self,
        base_url: str,
        hotkey: str,
        *,
        timeout: float = 10.0,
        max_attempts: int = 5,
        backoff_base: float = 0.2,
        backoff_cap: float = 5.0,
        ws_backoff_cap: float = 30.0,
        observer: RequestObserver | None = None,
        repeat_log_window_s: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: How errors name this server: `platform http://host:port`.
        self.name = f"platform {clean_line(self.base_url, 200)}"
        #: Told about every REST request (the engine watches the platform's health with it).
        self.observer = observer
        self.hotkey = hotkey
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.ws_backoff_cap = ws_backoff_cap
        self.frames_received = 0
        self.frames_malformed = 0
        self.frames_unknown = 0
        #: List entries skipped as unreadable (each is logged the first time it is seen).
        self.entries_skipped = 0
        self._reported_entries = Once()
        #: WebSocket trouble (disconnects, refused connects, malformed frames) and reconnects
        #: are logged at most once per `repeat_log_window_s` each, with a count.
        self._ws_trouble = RepeatLimiter(_log_warning, repeat_log_window_s)
        self._ws_connects = RepeatLimiter(_log_info, repeat_log_window_s)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={HOTKEY_HEADER: hotkey},
            timeout=timeout,
            transport=http_transport(),
        )

    # REST

    async def get_challenges(self) -> Listing[Challenge]:
        """The active challenges (retried on transient failures); an unreadable entry is
        skipped (see `_read_list`)."""
        path = "/challenges/active"
        envelope = await self._get_json(path, ChallengesResponse)
        return self._read_list(path, "challenge", envelope.challenges, Challenge)

    async def get_pending_jobs(self) -> Listing[Job]:
        """The pending jobs offered to this validator (retried on transient failures); an
        unreadable entry is skipped (see `_read_list`)."""
        path = "/jobs/pending"
        envelope = await self._get_json(path, PendingJobsResponse)
        return self._read_list(path, "pending job", envelope.jobs, Job)

    def _read_list(
        self, path: str, what: str, raw: list[Any], model: type[EntryT]
    ) -> Listing[EntryT]:
        """Read `raw` entry by entry: the readable entries are kept; each unreadable one is
        skipped and logged (sanitised, with the field and value) the first time it is seen
        (the same id and field, or the same problem for an entry without an id)."""
        listing = read_entries(raw, model)
        for entry in listing.skipped:
            self.entries_skipped += 1
            seen = entry.field if entry.id is not None else entry.problem
            if self._reported_entries.first((path, entry.id, seen)):
                logger.warning(
                    "%s", clean_line(f"{self.name} GET {path}: {entry.describe(what)}", 500)
                )
        return listing

    async def claim_job(self, job_id: str) -> ClaimResponse:
        """Claim a job, once, without retries.

        Raises ClaimLost on 404/409/410 or a 5xx with an empty body; ApiError on any other
        error status; NotSent if the request never left (not claimed); AnswerLost if it may
        have reached the platform but no answer came (claimed or not: ask `/jobs/pending`).
        """
        what = f"{self.name} POST /jobs/{clean_line(job_id, 100)}/claim"
        response = await self._send("POST", f"/jobs/{_segment(job_id)}/claim", what)
        status = response.status_code
        if status in CLAIM_LOST_STATUSES or (status >= 500 and not response.content.strip()):
            raise ClaimLost(job_id, status)
        _raise_for_status(response, what)
        return _decode(response, ClaimResponse, what)

    async def submit_results(self, job_id: str, body: bytes) -> SubmitOutcome:
        """Send a job's results, `body` as serialised once by `JobResults.to_json_bytes`
        (retried on transient failures).

        ACCEPTED on 2xx, DUPLICATE on 409 (already accepted), CANCELLED on 410; any other
        error status raises ApiError.
        """
        what = f"{self.name} POST /jobs/{clean_line(job_id, 100)}/results"
        path = f"/jobs/{_segment(job_id)}/results"
        headers = {"Content-Type": "application/json"}
        response = await self._retried(
            what, lambda: self._send("POST", path, what, content=body, headers=headers)
        )
        if response.status_code == 409:
            return SubmitOutcome.DUPLICATE
        if response.status_code == 410:
            return SubmitOutcome.CANCELLED
        _raise_for_status(response, what)
        return SubmitOutcome.ACCEPTED

    async def execute_orm_query(
        self, challenge_id: str, query: str, params: Sequence[Any] = ()
    ) -> list[dict[str, Any]]:
        """Run a read-only query on a challenge's database and return its rows.

        A read: retried on transient failures like the other reads. Raises QueryRefused,
        before anything is sent, unless `query` is a single read-only statement; ApiError with
        the server's words if the server refuses it.
        """
        check_read_only(query)
        what = f"{self.name} POST /challenges/{clean_line(challenge_id, 100)}/orm/query"
        path = f"/challenges/{_segment(challenge_id)}/orm/query"
        body = OrmQueryRequest(query=query, params=list(params)).model_dump_json().encode()
        headers = {"Content-Type": "application/json"}
        response = await self._retried(
            what, lambda: self._send("POST", path, what, content=body, headers=headers)
        )
        _raise_for_status(response, what)
        return _decode(response, OrmQueryResponse, what).rows

    async def fetch_bytes(self, url: str) -> bytes:
        """GET an absolute URL (e.g. an app-compose.json) and return the exact body bytes.

        Retried on transient failures; an error status raises ApiError.
        """
        what = f"GET {clean_line(url, 200)}"
        response = await self._retried(what, lambda: self._send("GET", url, what))
        _raise_for_status(response, what)
        return response.content

    async def _get_json(self, path: str, model: type[ModelT]) -> ModelT:
        """GET `path` (retried), raise ApiError for an error status, decode the body as `model`."""
        what = f"{self.name} GET {path}"
        response = await self._retried(what, lambda: self._send("GET", path, what))
        _raise_for_status(response, what)
        return _decode(response, model, what)

    async def _send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request under the total deadline (`timeout`, the whole request, body included).

        Failures become NotSent / AnswerLost (see `transport.send`); a URL that cannot be
        requested (e.g. built from a hostile `github_repo`) a ClientError.
        """
        return await send(
            self._http,
            method,
            url,
            what,
            deadline=self.timeout,
            observer=self.observer,
            content=content,
            headers=headers,
        )

    async def _retried(self, what: str, attempt: Callable[[], Awaitable[Answer]]) -> Answer:
        """Run `attempt` until it gets a non-retryable answer or `max_attempts` are spent.

        Retries NetworkError, 408, 429 and 5xx with full-jitter backoff, honouring a
        `Retry-After` in seconds (capped at backoff_cap). After the last attempt the last
        error is raised (ApiError for a status).
        """
        for number in range(1, self.max_attempts + 1):
            delay = full_jitter(number, self.backoff_base, self.backoff_cap)
            try:
                response = await attempt()
            except NetworkError:
                if number == self.max_attempts:
                    raise
            else:
                status = response.status_code
                if status not in RETRYABLE_STATUSES and status < 500:
                    return response
                if number == self.max_attempts:
                    raise _api_error(response, what)
                retry_after = _retry_after(response)
                if retry_after is not None:
                    delay = min(retry_after, self.backoff_cap)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    # WebSocket

    def websocket_url(self) -> str:
        """`base_url` with http→ws / https→wss, plus `/validators/{hotkey}/ws`."""
        scheme, rest = self.base_url.split("://", 1)
        ws_scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
        return f"{ws_scheme}://{rest}/validators/{_segment(self.hotkey)}/ws"

    async def connect_websocket(
        self,
        callback: Callable[[WsMessage], Awaitable[None] | None],
        *,
        on_state: Callable[[WsState], None] | None = None,
        on_connect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Listen to the platform's WebSocket until cancelled, reconnecting forever.

        On each (re)connect: `on_state(connected)`, then `await on_connect()`. Each frame is
        parsed and handed to `callback`; malformed frames and callback errors are logged and
        skipped. A lost connection reports `reconnecting` with the delay and the error, waits
        (exponential backoff with jitter, reset after a healthy connection) and reconnects.
        Cancelling closes the connection, reports `closed` and re-raises CancelledError.
        """
        notify = on_state or _ignore_state
        backoff = Backoff(WS_FIRST_DELAY, self.ws_backoff_cap)
        url = self.websocket_url()
        notify(WsState("connecting"))
        try:
            while True:
                ended = await self._one_connection(url, callback, notify, on_connect)
                if ended.healthy:
                    backoff.reset()
                delay = backoff.next()
                self._log_ended(url, ended, delay)
                notify(WsState("reconnecting", retry_in=delay, last_error=ended.error))
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            notify(WsState("closed"))
            raise

    async def _one_connection(
        self,
        url: str,
        callback: Callable[[WsMessage], Awaitable[None] | None],
        notify: Callable[[WsState], None],
        on_connect: Callable[[], Awaitable[None]] | None,
    ) -> _Ended:
        """Run one connection to its end; say why it ended, whether it opened and whether it
        was healthy."""
        opened_at: float | None = None
        received_before = self.frames_received
        try:
            async with connect(
                url,
                additional_headers={HOTKEY_HEADER: self.hotkey},
                compression=None,
                open_timeout=self.timeout,
                close_timeout=2,
            ) as ws:
                opened_at = time.monotonic()
                self._ws_connects.say("connected", f"WebSocket connected: {url}")
                notify(WsState("connected"))
                if on_connect is not None:
                    await _guarded(on_connect(), "on_connect")
                async for frame in ws:
                    self.frames_received += 1
                    await self._dispatch(frame, callback)
            error = "connection closed by the server"
        except (OSError, TimeoutError, WebSocketException) as exc:
            error = clean_line(f"{type(exc).__name__}: {exc}", 300)
        healthy = self.frames_received > received_before or (
            opened_at is not None and time.monotonic() - opened_at > WS_HEALTHY_AFTER
        )
        return _Ended(error, opened_at is not None, healthy)

    def _log_ended(self, url: str, ended: _Ended, delay: float) -> None:
        """Log a lost connection or a failed connect with its cause (each cause at most once
        per window, with a count)."""
        if ended.opened:
            what = f"WebSocket disconnected: {ended.error}; reconnecting in {delay:.1f} s ({url})"
        else:
            what = f"WebSocket cannot connect: {ended.error}; retrying in {delay:.1f} s ({url})"
        self._ws_trouble.say((ended.opened, ended.error), what)

    async def _dispatch(
        self, frame: str | bytes, callback: Callable[[WsMessage], Awaitable[None] | None]
    ) -> None:
        try:
            message = parse_ws_message(frame)
        except MessageDecodeError as exc:
            self.frames_malformed += 1
            problem = clean_line(str(exc), 300)
            self._ws_trouble.say(
                ("malformed", problem), f"skipped a malformed WebSocket frame: {problem}"
            )
            return
        if isinstance(message, UnknownMessage):
            self.frames_unknown += 1
        try:
            outcome = callback(message)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            logger.error(
                "WebSocket callback failed on a %s message: %s",
                clean_line(message.type, 100),
                clean_line(f"{type(exc).__name__}: {exc}", 300),
            )


@dataclass(frozen=True, slots=True)
class _Ended:
    """How one WebSocket connection ended."""

    error: str
    opened: bool
    healthy: bool


def _log_warning(message: str) -> None:
    logger.warning("%s", clean_line(message, 500))


def _log_info(message: str) -> None:
    logger.info("%s", clean_line(message, 500))


def _ignore_state(state: WsState) -> None:
    """The default `on_state`: nothing to report to."""


async def _guarded(awaitable: Awaitable[None], what: str) -> None:
    """Await a user hook; log (sanitised) and swallow any exception it raises."""
    try:
        await awaitable
    except Exception as exc:
        logger.error("%s failed: %s", what, clean_line(f"{type(exc).__name__}: {exc}", 300))


def _segment(value: str) -> str:
    """`value` percent-encoded as one URL path segment."""
    return quote(value, safe="")


def _retry_after(response: Answer) -> float | None:
    """The `Retry-After` header in seconds, if it is a non-negative number."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _server_words(response: Answer) -> str:
    """The server's explanation: a JSON `error`/`detail`/`message` field, else the raw text."""
    text = response.content.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if key in data and data[key] is not None:
                value = data[key]
                return value if isinstance(value, str) else json.dumps(value)
    return text


def _api_error(response: Answer, what: str) -> ApiError:
    return ApiError(response.status_code, _server_words(response), what=what)


def _raise_for_status(response: Answer, what: str) -> None:
    if response.status_code >= 400:
        raise _api_error(response, what)


def _decode(response: Answer, model: type[ModelT], what: str) -> ModelT:
    """Validate a 2xx body as `model`; DecodeError names the endpoint and the first bad field."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise DecodeError(f"{what}: response is not valid JSON") from None
        where = ".".join(str(part) for part in first["loc"]) or "<root>"
        reason = clean_line(f"{where}: {first['msg']}", 300)
        raise DecodeError(f"{what}: unexpected response shape at {reason}") from None
