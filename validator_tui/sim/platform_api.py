"""The Platform API the validators talk to (api-reference.md): the REST routes and the
validator WebSocket, with the simulator's injected faults, refusals and listing edits applied.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from validator_tui.sim.platform_faults import Fault, FaultInjector, ListingEdits
from validator_tui.sim.platform_state import PlatformState, Reply
from validator_tui.sim.platform_ws import WsHub

HOTKEY_HEADER = "X-Validator-Hotkey"
#: A logged request: (method, path, X-Validator-Hotkey or None); "WS" for a handshake.
LoggedRequest = tuple[str, str, str | None]

Handler = Callable[[Request, str], Awaitable[Response]]


def _json(reply: Reply) -> Response:
    if reply.body is None:
        return Response(status_code=reply.status)
    return JSONResponse(reply.body, status_code=reply.status)


def _fault_response(fault: Fault) -> Response:
    """The answer of a fault with a status: its body, and `Retry-After` if it has one."""
    media = "application/json" if fault.body else None
    headers = (
        {"Retry-After": f"{fault.retry_after_s:g}"} if fault.retry_after_s is not None else None
    )
    return Response(fault.body, status_code=fault.status, media_type=media, headers=headers)


class PlatformApi:
    """The validators' routes over the simulator's parts; every request is counted in
    `state.stats` and logged in `requests`."""

    def __init__(
        self,
        state: PlatformState,
        faults: FaultInjector,
        listings: ListingEdits,
        hub: WsHub,
        requests: deque[LoggedRequest],
    ) -> None:
        self._state = state
        self._faults = faults
        self._listings = listings
        self._hub = hub
        self._requests = requests

    def routes(self) -> list[BaseRoute]:
        """The REST routes, the app-compose.json files and the validator WebSocket."""
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
        return routes

    def _rest(self, key: str, handler: Handler, needs_hotkey: bool) -> Callable[..., Any]:
        """Wrap a REST handler: count it, log its hotkey, apply faults, require the header."""

        async def endpoint(request: Request) -> Response:
            request.state.received_ns = time.monotonic_ns()
            hotkey = request.headers.get(HOTKEY_HEADER)
            self._state.stats[key] += 1
            self._requests.append((request.method, request.url.path, hotkey))
            misbehaviour = await self._misbehave(key, request)
            if misbehaviour is not None:
                return misbehaviour
            if needs_hotkey and not hotkey:
                return JSONResponse({"error": f"missing {HOTKEY_HEADER} header"}, 401)
            return await handler(request, hotkey or "")

        return endpoint

    async def _misbehave(self, key: str, request: Request) -> Response | None:
        """The refusal or fault answer this request gets (after any fault delay), if any."""
        refusal = self._faults.refusing()
        if refusal is not None:
            self._state.stats["refused"] += 1
            self._state.stats[f"{key} refused"] += 1
            return JSONResponse({"error": "validator hotkey not recognised"}, refusal)
        fault = self._faults.take(request.method, request.url.path)
        if fault is None:
            return None
        if fault.delay_s > 0:
            await asyncio.sleep(fault.delay_s)
        return _fault_response(fault) if fault.status else None

    async def _get_challenges(self, request: Request, hotkey: str) -> Response:
        active = [self._state.challenge_dict(c) for c in self._state.active_challenges()]
        return JSONResponse({"challenges": self._listings.served("challenges", active)})

    async def _get_pending(self, request: Request, hotkey: str) -> Response:
        pending = [job.wire() for job in self._state.pending_jobs()]
        return JSONResponse({"jobs": self._listings.served("jobs", pending)})

    async def _claim(self, request: Request, hotkey: str) -> Response:
        job_id = request.path_params["job_id"]
        return _json(self._state.claim(job_id, hotkey, request.state.received_ns))

    async def _results(self, request: Request, hotkey: str) -> Response:
        body = await request.body()
        return _json(self._state.submit(request.path_params["job_id"], hotkey, body))

    async def _orm_query(self, request: Request, hotkey: str) -> Response:
        challenge_id = request.path_params["challenge_id"]
        return _json(self._state.orm_query(challenge_id, await request.body()))

    async def _compose(self, request: Request, hotkey: str) -> Response:
        params = request.path_params
        served = self._state.compose(params["name"], params["commit"])
        if served is None:
            return JSONResponse({"error": "not found"}, 404)
        return Response(served, media_type="application/json")

    async def _websocket(self, ws: WebSocket) -> None:
        self._requests.append(("WS", ws.url.path, ws.headers.get(HOTKEY_HEADER)))
        if self._faults.take_handshake_refusal():
            self._state.stats["ws_refused"] += 1
            await ws.close()  # before accepting: the server answers the handshake with 403
            return
        if self._faults.refusing() is not None:
            self._state.stats["refused"] += 1
            await ws.close()
            return
        self._state.stats["ws_connections"] += 1
        await self._hub.serve(ws, ws.path_params["hotkey"])
