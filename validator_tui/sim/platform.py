"""The Platform API simulator: a real HTTP + WebSocket server speaking api-reference.md.

`PlatformSimulator` serves the REST routes, the validator WebSocket, the challenges'
app-compose.json files and a `/_sim/` control API, all driven by a seeded `PlatformState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from validator_tui.models.platform import OrmQueryRequest
from validator_tui.sim.platform_control import control_routes
from validator_tui.sim.platform_faults import Fault, FaultInjector
from validator_tui.sim.platform_orm import QueryError
from validator_tui.sim.platform_state import PlatformState, Reply, SimJob
from validator_tui.sim.platform_ws import Frame, WsHub
from validator_tui.sim.server import RunningServer, start_server

HOTKEY_HEADER = "X-Validator-Hotkey"
#: The lists the platform sends, by the key their envelope holds them under.
ListName = Literal["jobs", "challenges"]
REQUEST_LOG_LIMIT = 10_000

Handler = Callable[[Request, str], Awaitable[Response]]


def _json(reply: Reply) -> Response:
    if reply.body is None:
        return Response(status_code=reply.status)
    return JSONResponse(reply.body, status_code=reply.status)


def _frame(**fields: Any) -> str:
    return json.dumps(fields, separators=(",", ":"))


class PlatformSimulator:
    """A seeded Platform API on loopback; control it in-process or over `/_sim/`."""

    def __init__(
        self,
        *,
        seed: int = 0,
        challenges: int = 3,
        jobs_per_minute: float = 0.0,
        pending_limit: int = 100,
    ) -> None:
        self.url = ""
        self._state = PlatformState(seed, pending_limit)
        self._faults = FaultInjector()
        self._hub = WsHub(on_frame_sent=self._count_frame)
        self._server: RunningServer | None = None
        self._generator: asyncio.Task[None] | None = None
        self._jobs_per_minute = jobs_per_minute
        self._raw_entries: dict[str, list[Any]] = {"jobs": [], "challenges": []}
        self._overrides: dict[str, dict[str, dict[str, Any]]] = {"jobs": {}, "challenges": {}}
        self._refuse_websockets = 0
        self._floods: set[asyncio.Task[int]] = set()
        #: While set, (status, until on time.monotonic): every request is refused (see
        #: `refuse_everything`).
        self._refusal: tuple[int, float] | None = None
        #: (method, path, X-Validator-Hotkey or None) of the latest REST requests.
        self.requests: deque[tuple[str, str, str | None]] = deque(maxlen=REQUEST_LOG_LIMIT)
        for _ in range(challenges):
            self._state.add_challenge()
        self.app = Starlette(routes=self._routes())

    @property
    def stats(self) -> Counter[str]:
        """Live counters: requests per route, claims_ok/conflict/not_found,
        results_accepted/rejected, ws_frames_sent, ws_connections, refused (requests turned
        away by `refuse_everything`; per route: "<route> refused")."""
        return self._state.stats

    # lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on `host:port` (0 = ephemeral) and return the base URL."""
        self._server = await start_server(self.app, host, port)
        self.url = self._state.base_url = self._server.url
        self._restart_generator()
        return self.url

    async def stop(self) -> None:
        """Stop generating jobs and frames, close every WebSocket and stop the server."""
        await self._stop_generator()
        for flood in list(self._floods):
            flood.cancel()
        await asyncio.gather(*self._floods, return_exceptions=True)
        self._hub.drop_all()
        if self._server is not None:
            await self._server.stop()
            self._server = None

    # in-process control

    def add_challenge(self, name: str | None = None) -> dict[str, Any]:
        """Add an active challenge and return it as `/challenges/active` shows it."""
        return self._state.challenge_dict(self._state.add_challenge(name))

    def remove_challenge(self, challenge_id: str) -> None:
        """Take a challenge off the active list."""
        self._state.remove_challenge(challenge_id)

    def update_challenge(self, challenge_id: str, *, bad_hash: bool = False) -> dict[str, Any]:
        """Publish a new commit and compose; announce `challenge_updated`.

        With `bad_hash`, the served compose bytes do not match the advertised compose_hash.
        """
        challenge = self._state.update_challenge(challenge_id, bad_hash=bad_hash)
        self._hub.broadcast(
            Frame(
                _frame(
                    type="challenge_updated",
                    challenge_id=challenge.id,
                    github_commit=challenge.commit,
                )
            )
        )
        return self._state.challenge_dict(challenge)

    def add_job(
        self,
        challenge_id: str | None = None,
        code: str | None = None,
        miner_hotkey: str | None = None,
    ) -> dict[str, Any]:
        """Create a pending job (and its submission row) and announce `new_job`."""
        job = self._state.add_job(challenge_id, code, miner_hotkey)
        self._announce(job)
        return job.as_dict()

    def add_jobs(self, n: int, challenge_id: str | None = None) -> list[dict[str, Any]]:
        """`add_job` n times."""
        return [self.add_job(challenge_id) for _ in range(n)]

    def add_unclaimable(self, count: int, challenge_id: str | None = None) -> list[str]:
        """List `count` pending entries whose claims answer 404 (another validator's
        leftovers), never announced; returns their ids. `stats["claims_not_found"]` counts the
        claims that answered 404."""
        return self._state.add_unclaimable(count, challenge_id)

    def cancel_job(self, job_id: str) -> None:
        """Cancel a pending or claimed job and announce `job_cancelled`."""
        if self._state.cancel_job(job_id):
            self._hub.broadcast(Frame(_frame(type="job_cancelled", job_id=job_id)))

    def set_job_rate(self, jobs_per_minute: float) -> None:
        """Generate jobs in the background at this rate (0 stops)."""
        if jobs_per_minute < 0:
            raise ValueError("jobs_per_minute must be >= 0")
        self._jobs_per_minute = jobs_per_minute
        if self._server is not None:
            self._restart_generator()

    def inject_fault(
        self,
        *,
        status: int = 503,
        count: int = 1,
        path_prefix: str = "",
        method: str = "",
        delay_s: float = 0.0,
        body: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        """Make the next `count` matching REST requests answer `status` with `body`.

        `status=0` only delays them by `delay_s`, then serves them normally. Control routes
        are never affected. `retry_after_s` adds a `Retry-After` header.
        """
        self._faults.add(Fault(status, count, path_prefix, method, delay_s, body, retry_after_s))

    def refuse_everything(self, status: int = 401, seconds: float = 0.0) -> None:
        """For `seconds` (0 = stop now), answer every REST request `status` (401 or 403) and
        turn every WebSocket handshake away (HTTP 403), as a platform that no longer
        recognises the validators' hotkeys does. Open WebSockets are closed."""
        if status not in (401, 403):
            raise ValueError("a refusal is HTTP 401 or 403")
        if seconds <= 0:
            self._refusal = None
            return
        self._refusal = (status, time.monotonic() + seconds)
        self._hub.drop_all()

    def _refusing(self) -> int | None:
        """The status every request gets now, while a refusal is in force."""
        if self._refusal is None:
            return None
        status, until = self._refusal
        if time.monotonic() >= until:
            self._refusal = None
            return None
        return status

    def drop_websockets(self) -> int:
        """Close every validator WebSocket; return how many were open."""
        return self._hub.drop_all()

    def send_raw_ws(self, text: str) -> int:
        """Send `text` verbatim to every connected validator (a test hook); return how many."""
        return self._hub.broadcast(Frame(text))

    def send_ws_frames(self, text: str, count: int = 1, size: int = 0) -> None:
        """Send `text` verbatim `count` times to every connected validator, in the background
        (waiting for each connection's queue, never dropping it: a flood). With `size`, the
        frame is padded with trailing spaces to `size` bytes (an oversized frame)."""
        padded = text + " " * max(0, size - len(text.encode()))
        flood = asyncio.create_task(self._hub.flood(Frame(padded), count))
        self._floods.add(flood)
        flood.add_done_callback(self._floods.discard)

    def refuse_websockets(self, count: int = 1) -> None:
        """Refuse the next `count` WebSocket handshakes with HTTP 403."""
        self._refuse_websockets += max(0, count)

    def add_raw_entry(self, listing: ListName, entry: Any) -> None:
        """Serve `entry` (any JSON value, malformed or not) at the end of `listing`
        (`jobs`: `GET /jobs/pending`, `challenges`: `GET /challenges/active`)."""
        self._raw_entries[listing].append(entry)

    def override_entry(self, listing: ListName, entry_id: str, fields: dict[str, Any]) -> None:
        """Serve the entry `entry_id` of `listing` with `fields` replaced (e.g. a job's
        `created_at` as "yesterday"); the job or challenge itself is unchanged."""
        self._overrides[listing].setdefault(entry_id, {}).update(fields)

    def clear_entries(self) -> None:
        """Serve the lists as they are again: no raw entries, no overrides."""
        for raw in self._raw_entries.values():
            raw.clear()
        for overrides in self._overrides.values():
            overrides.clear()

    def connected_validators(self) -> list[str]:
        """Hotkeys of the validators connected over WebSocket."""
        return self._hub.hotkeys()

    def results(self) -> dict[str, list[dict[str, Any]]]:
        """job id → every result body accepted for it (there should be exactly one)."""
        return {job_id: list(bodies) for job_id, bodies in self._state.results.items()}

    def job(self, job_id: str) -> dict[str, Any]:
        """One job: id, challenge_id, submission_id, miner_hotkey, code, status, claimed_by,
        announced_ns, claim_received_ns, created_at. KeyError if unknown."""
        return self._state.job(job_id).as_dict()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job still in history, oldest first."""
        return [job.as_dict() for job in self._state.jobs.values()]

    def challenges(self) -> list[dict[str, Any]]:
        """Every challenge (removed ones show status "inactive")."""
        return [self._state.challenge_dict(c) for c in self._state.challenges.values()]

    def compose_bytes(self, challenge_id: str) -> bytes:
        """The compose bytes served for the challenge's current commit."""
        challenge = self._state.challenge(challenge_id)
        served = self._state.compose(challenge.name, challenge.commit)
        if served is None:
            raise KeyError(f"no compose for challenge {challenge_id!r}")
        return served

    # internals

    def _count_frame(self) -> None:
        self._state.stats["ws_frames_sent"] += 1

    def _announce(self, job: SimJob) -> None:
        def stamp() -> None:
            if not job.announce_written:
                job.announce_written = True
                job.announced_ns = time.monotonic_ns()

        text = _frame(type="new_job", job_id=job.id, challenge_id=job.challenge_id)
        self._hub.broadcast(Frame(text, stamp))

    def _restart_generator(self) -> None:
        if self._generator is not None:
            self._generator.cancel()
            self._generator = None
        if self._jobs_per_minute > 0:
            self._generator = asyncio.create_task(self._generate(60.0 / self._jobs_per_minute))

    async def _stop_generator(self) -> None:
        if self._generator is not None:
            self._generator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._generator
            self._generator = None

    async def _generate(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(ValueError):
                self.add_job()

    def _routes(self) -> list[BaseRoute]:
        rest = [
            ("GET", "/challenges/active", self._get_challenges, True),
            ("GET", "/jobs/pending", self._get_pending, True),
            ("POST", "/jobs/{job_id}/claim", self._claim, True),
            ("POST", "/jobs/{job_id}/results", self._results, True),
            ("POST", "/challenges/{challenge_id}/orm/query", self._orm_query, True),
            ("GET", "/repos/{name}/raw/{commit}/app-compose.json", self._compose, False),
        ]
        routes: list[BaseRoute] = [
            Route(path, self._rest(f"{method} {path}", handler, needs_hotkey), methods=[method])
            for method, path, handler, needs_hotkey in rest
        ]
        routes.append(WebSocketRoute("/validators/{hotkey}/ws", self._websocket))
        routes.extend(control_routes(self))
        return routes

    def _rest(self, key: str, handler: Handler, needs_hotkey: bool) -> Callable[..., Any]:
        """Wrap a REST handler: count it, log its hotkey, apply faults, require the header."""

        async def endpoint(request: Request) -> Response:
            request.state.received_ns = time.monotonic_ns()
            hotkey = request.headers.get(HOTKEY_HEADER)
            self._state.stats[key] += 1
            self.requests.append((request.method, request.url.path, hotkey))
            refusal = self._refusing()
            if refusal is not None:
                self._state.stats["refused"] += 1
                self._state.stats[f"{key} refused"] += 1
                return JSONResponse({"error": "validator hotkey not recognised"}, refusal)
            fault = self._faults.take(request.method, request.url.path)
            if fault is not None:
                if fault.delay_s > 0:
                    await asyncio.sleep(fault.delay_s)
                if fault.status:
                    media = "application/json" if fault.body else None
                    headers = (
                        {"Retry-After": f"{fault.retry_after_s:g}"}
                        if fault.retry_after_s is not None
                        else None
                    )
                    return Response(
                        fault.body, status_code=fault.status, media_type=media, headers=headers
                    )
            if needs_hotkey and not hotkey:
                return JSONResponse({"error": f"missing {HOTKEY_HEADER} header"}, 401)
            return await handler(request, hotkey or "")

        return endpoint

    async def _get_challenges(self, request: Request, hotkey: str) -> Response:
        active = [self._state.challenge_dict(c) for c in self._state.active_challenges()]
        return JSONResponse({"challenges": self._served("challenges", active)})

    async def _get_pending(self, request: Request, hotkey: str) -> Response:
        pending = [job.wire() for job in self._state.pending_jobs()]
        return JSONResponse({"jobs": self._served("jobs", pending)})

    def _served(self, listing: ListName, entries: list[dict[str, Any]]) -> list[Any]:
        """`entries` with their overrides applied, then the raw entries."""
        overrides = self._overrides[listing]
        served: list[Any] = [entry | overrides.get(entry["id"], {}) for entry in entries]
        return served + self._raw_entries[listing]

    async def _claim(self, request: Request, hotkey: str) -> Response:
        job = self._state.jobs.get(request.path_params["job_id"])
        if job is not None and job.claim_received_ns is None:
            job.claim_received_ns = request.state.received_ns
        return _json(self._state.claim(request.path_params["job_id"], hotkey))

    async def _results(self, request: Request, hotkey: str) -> Response:
        body = await request.body()
        return _json(self._state.submit(request.path_params["job_id"], hotkey, body))

    async def _orm_query(self, request: Request, hotkey: str) -> Response:
        self._state.stats["orm_queries"] += 1
        challenge = self._state.challenges.get(request.path_params["challenge_id"])
        if challenge is None:
            return JSONResponse({"error": "challenge not found"}, 404)
        try:
            query = OrmQueryRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": f"invalid query body: {exc.errors()[0]['msg']}"}, 400)
        try:
            rows = challenge.db.query(query.query, query.params)
        except QueryError as exc:
            self._state.stats["orm_refused"] += 1
            return JSONResponse({"error": f"query refused: {exc}"}, 400)
        return JSONResponse({"rows": rows})

    async def _compose(self, request: Request, hotkey: str) -> Response:
        params = request.path_params
        served = self._state.compose(params["name"], params["commit"])
        if served is None:
            return JSONResponse({"error": "not found"}, 404)
        return Response(served, media_type="application/json")

    async def _websocket(self, ws: WebSocket) -> None:
        self.requests.append(("WS", ws.url.path, ws.headers.get(HOTKEY_HEADER)))
        if self._refuse_websockets > 0:
            self._refuse_websockets -= 1
            self._state.stats["ws_refused"] += 1
            await ws.close()  # before accepting: the server answers the handshake with 403
            return
        if self._refusing() is not None:
            self._state.stats["refused"] += 1
            await ws.close()
            return
        self._state.stats["ws_connections"] += 1
        await self._hub.serve(ws, ws.path_params["hotkey"])
