"""Request failures classified by whether the server may have seen the request, total
deadlines, bounded answers and request reports, through the fault proxy."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.support.identities import ALICE
from tests.support.proxy import FaultProxy
from validator_tui.clients.errors import AnswerLost, NotSent
from validator_tui.clients.platform import PlatformClient
from validator_tui.clients.transport import AnswerTooLarge, RequestReport, send
from validator_tui.clients.vmm import VmmClient
from validator_tui.sim.server import bind_socket


def closed_port_url() -> str:
    sock = bind_socket()
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


async def test_refused_connection_is_not_sent_and_reported():
    reports: list[RequestReport] = []
    async with PlatformClient(
        closed_port_url(), ALICE, timeout=1, max_attempts=1, observer=reports.append
    ) as client:
        with pytest.raises(NotSent, match="POST /jobs/j1/claim"):
            await client.claim_job("j1")
    assert len(reports) == 1
    assert reports[0].sent is False and reports[0].status is None and not reports[0].answered


@pytest.mark.parametrize("where", ["request", "response"])
async def test_reset_after_sending_is_an_answer_lost(platform_sim, where):
    job = platform_sim.add_job()
    async with FaultProxy(platform_sim.url) as proxy:
        proxy.cut(b"/claim", where)
        async with PlatformClient(proxy.url, ALICE, timeout=2, max_attempts=1) as client:
            with pytest.raises(AnswerLost):
                await client.claim_job(job["id"])
    claimed = platform_sim.job(job["id"])["claimed_by"]
    assert claimed == (ALICE if where == "response" else None)


@pytest.mark.parametrize("mode", ["blackhole", "trickle"])
async def test_whole_request_is_bounded_by_the_deadline(platform_sim, mode):
    """A black-holed or trickling server (one byte every 0.1 s: each read succeeds) cannot hold
    a request past its total deadline; the report says it timed out and was slow."""
    reports: list[RequestReport] = []
    async with FaultProxy(platform_sim.url) as proxy:
        await proxy.set_mode(mode, interval=0.1)
        async with PlatformClient(
            proxy.url, ALICE, timeout=1.0, max_attempts=1, observer=reports.append
        ) as client:
            started = time.monotonic()
            with pytest.raises(AnswerLost, match="timed out"):
                await client.get_pending_jobs()
            took = time.monotonic() - started
    assert 0.9 <= took < 3.0, took
    assert reports[-1].timed_out and reports[-1].slow and reports[-1].sent


async def test_slow_answer_is_reported_slow_but_answered(platform_sim):
    reports: list[RequestReport] = []
    platform_sim.inject_fault(status=0, delay_s=0.6, path_prefix="/jobs/pending")
    async with PlatformClient(
        platform_sim.url, ALICE, timeout=1.0, max_attempts=1, observer=reports.append
    ) as client:
        await client.get_pending_jobs()
    assert reports[-1].status == 200 and reports[-1].slow and not reports[-1].timed_out


async def test_orm_query_is_retried_like_the_other_reads(platform_sim):
    challenge = platform_sim.challenges()[0]
    platform_sim.inject_fault(status=503, count=2, path_prefix="/challenges/", method="POST")
    async with PlatformClient(platform_sim.url, ALICE, backoff_base=0.01) as client:
        rows = await client.execute_orm_query(challenge["id"], "SELECT 1 AS one")
    assert rows == [{"one": 1}]
    assert platform_sim.stats["orm_queries"] == 1


async def test_vmm_refused_is_not_sent(vmm_sim):
    async with FaultProxy(vmm_sim.url) as proxy:
        await proxy.set_mode("refuse")
        async with VmmClient(proxy.url, timeout=1) as client:
            refused = rf"^VMM {re.escape(proxy.url)} Status: unreachable: connection refused$"
            with pytest.raises(NotSent, match=refused):
                await client.status()
        await proxy.set_mode("up")
        async with VmmClient(proxy.url, timeout=1) as client:
            assert (await client.status()).vms == []


async def test_answer_bound_stops_reading_a_streamed_body(platform_sim):
    """An answer larger than `max_body` fails as soon as the bound is passed, whether or not it
    announces its length."""
    async with httpx.AsyncClient() as http:
        compose = platform_sim.challenges()[0]
        url = f"{compose['github_repo']}/raw/{compose['github_commit']}/app-compose.json"
        size = len(platform_sim.compose_bytes(compose["id"]))
        answer = await send(http, "GET", url, "GET compose", deadline=5, max_body=size)
        assert len(answer.content) == size
        with pytest.raises(AnswerTooLarge, match=f"larger than {size - 1} bytes"):
            await send(http, "GET", url, "GET compose", deadline=5, max_body=size - 1)
