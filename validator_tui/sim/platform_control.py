"""The simulator's HTTP control API under `/_sim/` (never subject to injected faults)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from validator_tui.sim.platform import PlatformSimulator

BodyT = TypeVar("BodyT", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobsBody(_Body):
    count: int = Field(default=1, ge=1, le=10_000)
    challenge_id: str | None = None
    code: str | None = None
    miner_hotkey: str | None = None


class UnclaimableBody(_Body):
    count: int = Field(default=1, ge=1, le=100_000)
    challenge_id: str | None = None


class ChallengeBody(_Body):
    name: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[\w.-]+$")


class UpdateBody(_Body):
    bad_hash: bool = False


class FaultBody(_Body):
    status: int = Field(default=503, ge=0, le=599)
    count: int = Field(default=1, ge=1)
    path_prefix: str = ""
    method: str = ""
    delay_s: float = Field(default=0.0, ge=0.0, le=600.0)
    body: str = ""
    retry_after_s: float | None = Field(default=None, ge=0.0)


class WsSendBody(_Body):
    text: str
    count: int = Field(default=1, ge=1, le=1_000_000)
    size: int = Field(default=0, ge=0, le=64 * 1024 * 1024)


class RefuseWsBody(_Body):
    count: int = Field(default=1, ge=1, le=1_000_000)


class RawEntryBody(_Body):
    list: Literal["jobs", "challenges"]
    entry: Any


class OverrideBody(_Body):
    list: Literal["jobs", "challenges"]
    id: str
    fields: dict[str, Any]


class RefuseBody(_Body):
    status: int = Field(default=401)
    seconds: float = Field(default=0.0, ge=0.0, le=3600.0)


class RateBody(_Body):
    jobs_per_minute: float = Field(ge=0.0, le=60_000.0)


async def _parse(request: Request, model: type[BodyT]) -> BodyT:
    raw = await request.body()
    return model.model_validate_json(raw) if raw.strip() else model.model_validate({})


def _guarded(handler: Callable[[Request], Awaitable[Any]]) -> Callable[..., Any]:
    """JSON-encode the handler's result; KeyError → 404, ValueError → 400 `{"error"}`."""

    async def endpoint(request: Request) -> Response:
        try:
            result = await handler(request)
        except KeyError as exc:
            return JSONResponse({"error": str(exc.args[0] if exc.args else exc)}, 404)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(result)

    return endpoint


def control_routes(sim: PlatformSimulator) -> list[BaseRoute]:
    """The `/_sim/` routes acting on `sim`."""

    async def add_jobs(request: Request) -> Any:
        body = await _parse(request, JobsBody)
        jobs = [
            sim.add_job(body.challenge_id, body.code, body.miner_hotkey) for _ in range(body.count)
        ]
        return {"jobs": jobs}

    async def add_unclaimable(request: Request) -> Any:
        body = await _parse(request, UnclaimableBody)
        return {"jobs": sim.add_unclaimable(body.count, body.challenge_id)}

    async def cancel_job(request: Request) -> Any:
        sim.cancel_job(request.path_params["job_id"])
        return {"ok": True}

    async def add_challenge(request: Request) -> Any:
        return sim.add_challenge((await _parse(request, ChallengeBody)).name)

    async def remove_challenge(request: Request) -> Any:
        sim.remove_challenge(request.path_params["challenge_id"])
        return {"ok": True}

    async def update_challenge(request: Request) -> Any:
        body = await _parse(request, UpdateBody)
        return sim.update_challenge(request.path_params["challenge_id"], bad_hash=body.bad_hash)

    async def add_fault(request: Request) -> Any:
        sim.inject_fault(**(await _parse(request, FaultBody)).model_dump())
        return {"ok": True}

    async def refuse(request: Request) -> Any:
        body = await _parse(request, RefuseBody)
        sim.refuse_everything(body.status, body.seconds)
        return {"ok": True}

    async def drop_ws(request: Request) -> Any:
        return {"dropped": sim.drop_websockets()}

    async def send_ws(request: Request) -> Any:
        body = await _parse(request, WsSendBody)
        sim.send_ws_frames(body.text, body.count, body.size)
        return {"ok": True}

    async def refuse_ws(request: Request) -> Any:
        sim.refuse_websockets((await _parse(request, RefuseWsBody)).count)
        return {"ok": True}

    async def add_raw_entry(request: Request) -> Any:
        body = await _parse(request, RawEntryBody)
        sim.add_raw_entry(body.list, body.entry)
        return {"ok": True}

    async def override_entry(request: Request) -> Any:
        body = await _parse(request, OverrideBody)
        sim.override_entry(body.list, body.id, body.fields)
        return {"ok": True}

    async def clear_entries(request: Request) -> Any:
        sim.clear_entries()
        return {"ok": True}

    async def set_rate(request: Request) -> Any:
        sim.set_job_rate((await _parse(request, RateBody)).jobs_per_minute)
        return {"ok": True}

    async def results(request: Request) -> Any:
        return {"results": sim.results()}

    async def jobs(request: Request) -> Any:
        return {"jobs": sim.jobs()}

    async def stats(request: Request) -> Any:
        return {"stats": dict(sim.stats)}

    table: list[tuple[str, str, Callable[[Request], Awaitable[Any]]]] = [
        ("POST", "/_sim/jobs", add_jobs),
        ("GET", "/_sim/jobs", jobs),
        ("POST", "/_sim/jobs/{job_id}/cancel", cancel_job),
        ("POST", "/_sim/unclaimable", add_unclaimable),
        ("POST", "/_sim/challenges", add_challenge),
        ("DELETE", "/_sim/challenges/{challenge_id}", remove_challenge),
        ("POST", "/_sim/challenges/{challenge_id}/update", update_challenge),
        ("POST", "/_sim/faults", add_fault),
        ("POST", "/_sim/refuse", refuse),
        ("POST", "/_sim/ws/drop", drop_ws),
        ("POST", "/_sim/ws/send", send_ws),
        ("POST", "/_sim/ws/refuse", refuse_ws),
        ("POST", "/_sim/entries/raw", add_raw_entry),
        ("POST", "/_sim/entries/override", override_entry),
        ("DELETE", "/_sim/entries", clear_entries),
        ("POST", "/_sim/rate", set_rate),
        ("GET", "/_sim/results", results),
        ("GET", "/_sim/stats", stats),
    ]
    return [Route(path, _guarded(handler), methods=[method]) for method, path, handler in table]
