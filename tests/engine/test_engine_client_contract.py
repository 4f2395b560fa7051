"""Every `EngineClient` keeps the same contract: the in-process engine, the control-socket
client and the console tests' `FakeEngine` answer the same command scenarios the same way (a
command done and seen in the state, refused for a missing host or an unknown job, refused
for a read-only console), so the fake the console tests use cannot drift from the engine.
The real clients run a real engine against the simulators."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.control import hosted
from tests.support.engine import FAST, all_challenges_active, wait_for
from tests.support.fake_engine import FakeEngine
from validator_tui.control import READ_ONLY_REFUSAL, EngineClient, JobState, Outcome
from validator_tui.control.client import SocketEngine
from validator_tui.control.inprocess import InProcessEngine
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.validator import Validator

CLIENTS = ["in-process", "socket", "fake"]


@dataclass(frozen=True, slots=True)
class Subject:
    """A client under test and a pending job its engine holds."""

    client: EngineClient
    job_id: str


def _environment(tmp_path: Path) -> DemoEnvironment:
    return DemoEnvironment(
        seed=71,
        jobs_per_minute=0,
        boot_seconds=0,
        auto_claim=False,
        engine=FAST,
        state_dir=str(tmp_path / "state"),
    )


@contextlib.asynccontextmanager
async def _in_process(tmp_path: Path, read_only: bool) -> AsyncIterator[Subject]:
    """The console's embedded engine (a read-only one refuses every console's commands)."""
    async with _environment(tmp_path) as env:
        (job,) = env.platform.add_jobs(1)
        assert env.config is not None
        validator = Validator(env.config, read_only=read_only)
        engine = InProcessEngine(validator)
        engine.start()
        try:
            await engine.wait_started()
            await wait_for(lambda: all_challenges_active(validator), 20, "challenge CVMs active")
            await wait_for(lambda: job["id"] in validator.state.jobs, 10, "the job")
            yield Subject(engine, job["id"])
        finally:
            engine.request_stop()
            await engine.wait_stopped()


@contextlib.asynccontextmanager
async def _socket(tmp_path: Path, read_only: bool) -> AsyncIterator[Subject]:
    """An attached console (a read-only one, on an engine that takes commands)."""
    async with _environment(tmp_path) as env:
        (job,) = env.platform.add_jobs(1)
        assert env.config is not None
        async with hosted(env.config) as host:
            await wait_for(lambda: job["id"] in host.validator.state.jobs, 10, "the job")
            client = SocketEngine(Path(host.info.state_dir), read_only=read_only)
            await client.connect()
            try:
                yield Subject(client, job["id"])
            finally:
                await client.close()


@contextlib.asynccontextmanager
async def _fake(tmp_path: Path, read_only: bool) -> AsyncIterator[Subject]:
    """The console tests' fake, with one host and one pending job."""
    engine = FakeEngine(read_only=read_only)
    engine.add_host("default")
    job = engine.add_job(JobState.PENDING)
    yield Subject(engine, job.id)


SUBJECTS = {"in-process": _in_process, "socket": _socket, "fake": _fake}


async def _auto_claim_seen(client: EngineClient) -> bool:
    return (await client.changes_since(0, 0)).header.auto_claim


async def _auto_claim_turns_on(client: EngineClient, timeout: float = 10.0) -> bool:
    """Whether the client's view shows auto-claim on within `timeout` (the socket client's
    view follows the engine's change feed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await _auto_claim_seen(client):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_command_done_shows_in_the_state(kind: str, tmp_path: Path) -> None:
    async with SUBJECTS[kind](tmp_path, False) as subject:
        assert not await _auto_claim_seen(subject.client)
        outcome = await subject.client.set_auto_claim(True)
        assert outcome.ok, outcome.message
        assert await _auto_claim_turns_on(subject.client)


#: Commands the engine refuses, each with what its reason must name.
REFUSALS: dict[str, tuple[Callable[[EngineClient], Awaitable[Outcome]], str]] = {
    "a host that is not in the pool": (lambda client: client.drain_host("nowhere"), "nowhere"),
    "an unknown job": (lambda client: client.claim("no-such-job"), "no-such-job"),
}


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_command_refused_names_what_is_missing(
    kind: str, case: str, tmp_path: Path
) -> None:
    send, missing = REFUSALS[case]
    async with SUBJECTS[kind](tmp_path, False) as subject:
        outcome = await send(subject.client)
        assert not outcome.ok
        assert missing in outcome.message


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_read_only_console_is_refused_in_one_wording(kind: str, tmp_path: Path) -> None:
    async with SUBJECTS[kind](tmp_path, True) as subject:
        assert subject.client.read_only
        for outcome in (
            await subject.client.claim(subject.job_id),
            await subject.client.set_auto_claim(True),
            await subject.client.drain_host("default"),
        ):
            assert not outcome.ok
            assert outcome.message == READ_ONLY_REFUSAL
        assert not await _auto_claim_seen(subject.client)
        job = await subject.client.job(subject.job_id)
        assert job is not None and job.state is JobState.PENDING
