"""The Platform API simulator: a real HTTP + WebSocket server speaking api-reference.md.

`PlatformSimulator` serves the validators' routes (`platform_api.py`), the challenges'
app-compose.json files and a `/_sim/` control API (`platform_control.py`), all driven by a
seeded `PlatformState`; its methods are the in-process controls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette

from validator_tui.sim.platform_api import LoggedRequest, PlatformApi
from validator_tui.sim.platform_control import control_routes
from validator_tui.sim.platform_faults import Fault, FaultInjector, ListingEdits, ListName
from validator_tui.sim.platform_state import PlatformState, SimJob
from validator_tui.sim.platform_ws import Frame, WsHub
from validator_tui.sim.server import RunningServer, start_server

REQUEST_LOG_LIMIT = 10_000


def _frame(**fields: Any) -> str:
    return json.dumps(fields, separators=(",", ":"))


class JobGenerator:
    """Calls `make_job` in the background at a steady rate while started."""

    def __init__(self, make_job: Callable[[], object], jobs_per_minute: float) -> None:
        self._make_job = make_job
        self._jobs_per_minute = jobs_per_minute
        self._task: asyncio.Task[None] | None = None
        self._started = False

    def set_rate(self, jobs_per_minute: float) -> None:
        """Generate at this rate from now on (0 stops)."""
        if jobs_per_minute < 0:
            raise ValueError("jobs_per_minute must be >= 0")
        self._jobs_per_minute = jobs_per_minute
        if self._started:
            self.start()

    def start(self) -> None:
        """Start (or restart) generating at the current rate."""
        self._started = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._jobs_per_minute > 0:
            self._task = asyncio.create_task(self._generate(60.0 / self._jobs_per_minute))

    async def stop(self) -> None:
        """Stop generating and wait for the background task to end."""
        self._started = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _generate(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(ValueError):
                self._make_job()


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
        self._listings = ListingEdits()
        self._hub = WsHub(on_frame_sent=self._count_frame)
        self._server: RunningServer | None = None
        self._generator = JobGenerator(self.add_job, jobs_per_minute)
        #: (method, path, X-Validator-Hotkey or None) of the latest requests ("WS" handshakes).
        self.requests: deque[LoggedRequest] = deque(maxlen=REQUEST_LOG_LIMIT)
        for _ in range(challenges):
            self._state.add_challenge()
        api = PlatformApi(self._state, self._faults, self._listings, self._hub, self.requests)
        self.app = Starlette(routes=[*api.routes(), *control_routes(self)])

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
        self._generator.start()
        return self.url

    async def stop(self) -> None:
        """Stop generating jobs and frames, close every WebSocket and stop the server."""
        await self._generator.stop()
        await self._hub.close()
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
        self._generator.set_rate(jobs_per_minute)

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
        self._faults.refuse_everything(status, seconds)
        if seconds > 0:
            self._hub.drop_all()

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
        self._hub.flood(Frame(padded), count)

    def refuse_websockets(self, count: int = 1) -> None:
        """Refuse the next `count` WebSocket handshakes with HTTP 403."""
        self._faults.refuse_handshakes(count)

    def add_raw_entry(self, listing: ListName, entry: Any) -> None:
        """Serve `entry` (any JSON value, malformed or not) at the end of `listing`
        (`jobs`: `GET /jobs/pending`, `challenges`: `GET /challenges/active`)."""
        self._listings.add_raw(listing, entry)

    def override_entry(self, listing: ListName, entry_id: str, fields: dict[str, Any]) -> None:
        """Serve the entry `entry_id` of `listing` with `fields` replaced (e.g. a job's
        `created_at` as "yesterday"); the job or challenge itself is unchanged."""
        self._listings.override(listing, entry_id, fields)

    def clear_entries(self) -> None:
        """Serve the lists as they are again: no raw entries, no overrides."""
        self._listings.clear()

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
