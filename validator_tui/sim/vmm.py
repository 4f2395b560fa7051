"""A loopback dstack VMM simulator: pRPC JSON API, `/logs`, per-VM evaluators, test controls.

Wire behaviour follows spec/dstack-vmm.md: `/prpc/<Method>` on POST (`?json` or a JSON
content type) and GET (fields from the query string), `Teepod.` prefix trimmed, empty body =
`{}`, errors HTTP 400 `{"error": …}`, Empty responses `null`. It lists `gpus` fake GPUs
(`ListGpus`) and refuses to start a VM with a GPU slot another running VM holds, as dstack's
QEMU does. A unix socket is served owner-only (mode 0600), as dstack's default listener.

Tests steer it in-process (`fail_next`, `set_boot`, `set_evaluator`, `crash`,
`restart_empty`, `go_down`/`come_back`, `outage`) or over HTTP under `/_sim/` (never behind auth):
POST `/_sim/fail` `{method, count, error, name_contains?}`, POST `/_sim/boot` `{seconds?,
never?, name_contains?}`, POST `/_sim/evaluator` `{latency_s, health_latency_s?}`, POST
`/_sim/crash` `{id, boot_error?}`, POST `/_sim/outage` `{seconds, empty?}` (stop answering, VMs
kept running, and answer again after `seconds`; with `empty`, a host reboot: the VMs die with it
and it comes back on the same address without them), GET `/_sim/vms`, GET `/_sim/stats`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from validator_tui.sim.server import RunningServer, serve_socket, start_server
from validator_tui.sim.vmm_http import DstackFront
from validator_tui.sim.vmm_logs import CHANNELS, stream_log
from validator_tui.sim.vmm_state import VERSION, VmmState
from validator_tui.sim.vmm_validate import SimVmmError

MAX_BODY_BYTES = 10 * 1024 * 1024
PROTOBUF_REFUSED = "protobuf encoding not supported by the simulator; use ?json"
_LIST_FIELDS = frozenset({"ids", "kms_urls", "gateway_urls"})
_JSON = "application/json"


def _error(message: str) -> Response:
    return Response(json.dumps({"error": message}).encode(), 400, media_type=_JSON)


def _query_body(query: QueryParams) -> dict[str, Any]:
    """A GET request's message: one field per query key (lists for repeated fields)."""
    body: dict[str, Any] = {}
    for key in query:
        if key in ("json", "token"):
            continue
        values = query.getlist(key)
        body[key] = values if key in _LIST_FIELDS else values[-1]
    return body


def _flag(value: str | None, default: bool) -> bool:
    return default if value is None else value.lower() in ("true", "1", "yes")


async def _json_object(request: Request) -> dict[str, Any]:
    """The control API's JSON body (an empty body is `{}`)."""
    raw = await request.body()
    data = json.loads(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


class VmmSimulator:
    """A dstack VMM (v0.6.0) on loopback whose VMs boot instantly or on a timer."""

    def __init__(
        self,
        *,
        boot_seconds: float = 0.0,
        port_mapping_enabled: bool = True,
        token: str | None = None,
        max_vms: int = 1000,
        seed: int = 0,
        max_vcpu: int = 1024,
        max_memory_mb: int = 4 * 1024 * 1024,
        removing_seconds: float = 0.2,
        shutdown_seconds: float = 0.1,
        log_heartbeat_s: float = 60.0,
        gpus: int = 0,
    ) -> None:
        self._state = VmmState(
            boot_seconds=boot_seconds,
            port_mapping_enabled=port_mapping_enabled,
            max_vms=max_vms,
            max_vcpu=max_vcpu,
            max_memory_mb=max_memory_mb,
            removing_seconds=removing_seconds,
            shutdown_seconds=shutdown_seconds,
            seed=seed,
            gpus=gpus,
        )
        self.log_heartbeat_s = log_heartbeat_s
        self.stats: dict[str, int] = self._state.stats
        self.url = ""
        self._failures: dict[str, deque[tuple[str, str]]] = {}
        self._servers: list[RunningServer] = []
        self._unix_paths: list[str] = []
        #: Where it serves (`("tcp", host, port)` or `("unix", path, 0)`), to come back there.
        self._listeners: list[tuple[str, str, int]] = []
        self._outage: asyncio.Task[None] | None = None
        routes = [
            Route("/prpc/{method}", self._prpc, methods=["GET", "POST"]),
            Route("/logs", self._logs, methods=["GET"]),
            Route("/_sim/{action}", self._control, methods=["GET", "POST"]),
        ]
        self._controls: dict[str, Callable[[dict[str, Any]], Response]] = {
            "fail": self._control_fail,
            "boot": self._control_boot,
            "evaluator": self._control_evaluator,
            "crash": self._control_crash,
            "outage": self._control_outage,
            "vms": self._control_vms,
            "stats": self._control_stats,
        }
        self.app = DstackFront(Starlette(routes=routes), token=token, version=VERSION)

    # ---- serving ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on TCP `host:port` (0 = ephemeral); returns and remembers the base URL."""
        running = await start_server(self.app, host, port)
        self._servers.append(running)
        self._listeners.append(("tcp", host, int(running.url.rsplit(":", 1)[1])))
        self.url = running.url
        return self.url

    async def start_unix(self, path: str) -> str:
        """Serve on a unix socket at `path`, owner-only (mode 0600, set before it listens);
        returns and remembers `unix:<path>`."""
        if os.path.exists(path):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(1024)
        sock.setblocking(False)
        self._servers.append(await serve_socket(self.app, sock, f"unix:{path}"))
        self._unix_paths.append(path)
        self._listeners.append(("unix", path, 0))
        self.url = f"unix:{path}"
        return self.url

    async def stop(self) -> None:
        """Kill every VM (closing their evaluators and log streams) and stop serving."""
        if self._outage is not None:
            self._outage.cancel()
        self._state.close()
        await self._close_listeners()
        self._listeners.clear()

    async def _close_listeners(self) -> None:
        for running in self._servers:
            await running.stop()
        self._servers.clear()
        for path in self._unix_paths:
            if os.path.exists(path):
                os.unlink(path)
        self._unix_paths.clear()

    # ---- outages ---------------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """It answers on its address(es) (False while down)."""
        return bool(self._servers)

    async def go_down(self) -> None:
        """Stop answering, as a VMM process that died: its address refuses connections (the
        unix socket is gone). Its VMs keep running (dstack's supervisor keeps QEMU up)."""
        await self._close_listeners()

    async def come_back(self) -> None:
        """Answer again on the same address(es), with every VM it had."""
        listeners, self._listeners = self._listeners, []
        for kind, where, port in listeners:
            if kind == "unix":
                await self.start_unix(where)
            else:
                await self.start(where, port)

    def outage(self, seconds: float, *, empty: bool = False) -> None:
        """Go down now and come back after `seconds` (a running outage is replaced); `empty`:
        as a host that rebooted, every VM dies as it goes down and it comes back without them."""
        if self._outage is not None:
            self._outage.cancel()
        self._outage = asyncio.create_task(self._down_for(seconds, empty))

    async def _down_for(self, seconds: float, empty: bool) -> None:
        await asyncio.sleep(0.05)  # the control request that asked for it gets its answer
        await self.go_down()
        if empty:
            self.restart_empty()
        await asyncio.sleep(seconds)
        await self.come_back()

    # ---- controls --------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        count: int = 1,
        error: str = "simulated failure",
        *,
        name_contains: str = "",
    ) -> None:
        """Make the next `count` calls of `method` (only those whose request's `name` contains
        `name_contains`, if given) answer 400 `{"error": error}`."""
        self._failures.setdefault(method, deque()).extend([(error, name_contains)] * count)

    def set_boot(
        self, *, seconds: float | None = None, never: bool = False, name_contains: str = ""
    ) -> None:
        """Boot plan for VMs created from now on (only those whose name contains the text)."""
        self._state.boot.set(seconds=seconds, never=never, name_contains=name_contains)

    def set_evaluator(self, *, latency_s: float = 0.0, health_latency_s: float = 0.0) -> None:
        """Extra latency every /evaluate answer waits, and every /health answer."""
        self._state.evaluator_latency_s = latency_s
        self._state.health_latency_s = health_latency_s

    def crash(self, vm_id: str, boot_error: str = "") -> None:
        """Make a VM's process die by itself (status `exited`); KeyError for unknown ids."""
        self._state.crash(vm_id, boot_error)

    def restart_empty(self) -> int:
        """Act as a VMM that restarted and forgot every VM (killed, ports freed, no longer
        listed). Returns how many VMs were forgotten."""
        return self._state.forget_all()

    def vms(self) -> list[dict[str, Any]]:
        """Every VM in creation order: id, name, status, boot_progress, host_ports, created."""
        return self._state.summary()

    # ---- routes ----------------------------------------------------------------------------

    async def _prpc(self, request: Request) -> Response:
        method = request.path_params["method"].removeprefix("Teepod.")
        if request.method == "GET":
            body = _query_body(request.query_params)
        else:
            content_type = request.headers.get("content-type", "")
            if "json" not in request.query_params and not content_type.startswith(_JSON):
                return _error(PROTOBUF_REFUSED)
            raw = await request.body()
            if len(raw) > MAX_BODY_BYTES:
                return _error("Failed to decode request: body too large")
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                return _error(f"Failed to decode request: {exc}")
            if body is None:
                body = {}
            if not isinstance(body, dict):
                return _error("Failed to decode request: expected a JSON object")
        handler = self._state.methods.get(method)
        if handler is None:
            return _error(f"Service not found: {method}")
        self.stats[method] = self.stats.get(method, 0) + 1
        pending = self._failures.get(method)
        if pending and pending[0][1] in str(body.get("name", "")):
            return _error(pending.popleft()[0])
        try:
            result = await handler(body)
        except SimVmmError as exc:
            return _error(str(exc))
        return Response(json.dumps(result).encode(), media_type=_JSON)

    async def _logs(self, request: Request) -> Response:
        self.stats["logs"] = self.stats.get("logs", 0) + 1
        query = request.query_params
        vm = self._state.vms.get(query.get("id", ""))
        if vm is None:
            return PlainTextResponse("VM not found", 404)
        channel = query.get("ch", "serial")
        if channel not in CHANNELS:
            return PlainTextResponse(f"Unknown channel {channel}", 400)
        lines_text = query.get("lines", "10000")
        if not lines_text.isdigit():
            return PlainTextResponse(f"Invalid lines {lines_text}", 400)
        chunks = stream_log(
            vm.logs[channel],
            lines=int(lines_text),
            follow=_flag(query.get("follow"), False),
            ansi=_flag(query.get("ansi"), True),
            heartbeat_s=self.log_heartbeat_s,
        )
        return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")

    async def _control(self, request: Request) -> Response:
        handler = self._controls.get(request.path_params["action"])
        if handler is None:
            return JSONResponse({"error": "unknown control"}, 404)
        try:
            data = await _json_object(request) if request.method == "POST" else {}
            return handler(data)
        except (KeyError, ValueError, TypeError) as exc:
            return JSONResponse({"error": f"bad control request: {exc!r}"}, 400)

    def _control_fail(self, data: dict[str, Any]) -> Response:
        self.fail_next(
            str(data["method"]),
            int(data.get("count", 1)),
            str(data.get("error", "simulated failure")),
            name_contains=str(data.get("name_contains", "")),
        )
        return JSONResponse({"ok": True})

    def _control_boot(self, data: dict[str, Any]) -> Response:
        seconds = data.get("seconds")
        self.set_boot(
            seconds=None if seconds is None else float(seconds),
            never=bool(data.get("never", False)),
            name_contains=str(data.get("name_contains", "")),
        )
        return JSONResponse({"ok": True})

    def _control_evaluator(self, data: dict[str, Any]) -> Response:
        self.set_evaluator(
            latency_s=float(data.get("latency_s", 0.0)),
            health_latency_s=float(data.get("health_latency_s", 0.0)),
        )
        return JSONResponse({"ok": True})

    def _control_crash(self, data: dict[str, Any]) -> Response:
        try:
            self.crash(str(data["id"]), str(data.get("boot_error", "")))
        except KeyError:
            return JSONResponse({"error": "VM not found"}, 404)
        return JSONResponse({"ok": True})

    def _control_outage(self, data: dict[str, Any]) -> Response:
        seconds = float(data.get("seconds", 30.0))
        if not 0 < seconds <= 3600:
            raise ValueError("seconds must be in (0, 3600]")
        self.outage(seconds, empty=bool(data.get("empty", False)))
        return JSONResponse({"ok": True, "down_for_s": seconds})

    def _control_vms(self, data: dict[str, Any]) -> Response:
        return JSONResponse(self.vms())

    def _control_stats(self, data: dict[str, Any]) -> Response:
        return JSONResponse(dict(self.stats))
