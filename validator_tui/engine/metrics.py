"""Prometheus metrics of one engine, and the `GET /metrics` server on the engine's loop.

Counters and histograms are counted from the engine's own record of what happened (every job
record put into the state passes `EngineMetrics.on_job`; every answered result passes
`on_result`); they start from zero at each start, as Prometheus expects. Gauges are read from
the engine's state at scrape time (`StateCollector`), so nothing is updated on the claim path
but a counter increment.

The server runs on the engine's event loop: a scrape is one short synchronous step (the
exposition of a few dozen series), never a wait a claim sits behind, and it reads the state
without locks because nothing else runs meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from validator_tui import __version__
from validator_tui.config import is_loopback, split_listen
from validator_tui.engine.health import ServerHealth
from validator_tui.engine.state import EngineState
from validator_tui.models.resources import Resources
from validator_tui.shared.records import (
    ChallengeState,
    HostState,
    JobRecord,
    JobState,
    ResultStatus,
)

logger = logging.getLogger("validator_tui.engine.metrics")

#: The exposition format's content type (text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: A request line and headers longer than this are refused (a scrape sends a few hundred).
MAX_REQUEST_BYTES = 16 * 1024
REQUEST_TIMEOUT_S = 10.0

#: Claim answers: announcement (the job record's creation) to the platform's answer.
CLAIM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Claim to the job's end: minutes to hours.
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
#: Job states the `validator_jobs` gauge shows (finished jobs are counted, not gauged).
GAUGED_JOB_STATES = tuple(state for state in JobState if not state.finished)
#: What each outbox answer is called in `validator_results_total{status}`.
RESULT_NAMES = {
    ResultStatus.SENT: "accepted",
    ResultStatus.DEAD: "dead_letter",
    ResultStatus.DROPPED: "dropped",
    ResultStatus.NOT_OURS: "not_ours",
}
#: Quota resources per host, with how each is read from a host's usage.
QUOTA_RESOURCES = ("vcpu", "memory_mb", "disk_mb", "gpu", "ports")
#: Dropped jobs the claim tracker may remember before it forgets them all at once.
PRUNE_SLACK = 1000
HOST_DOWN_STATES = frozenset({HostState.UNREACHABLE, HostState.DOWN})


def claim_result(before: JobState, job: JobRecord, note: str | None) -> str | None:
    """What a claim came to, seen from a job record put after it (its state before, its note);
    None when this put is not a claim's answer."""
    if before is not JobState.PENDING:
        return None
    if job.state is JobState.CLAIMED:
        return "unsure" if job.claim_unsure else "won"
    if job.state is JobState.LOST and note and note.startswith("claim lost"):
        return "lost"
    if job.state is JobState.PENDING and note and note.startswith(("claim failed", "claim not")):
        return "error"
    return None


class EngineMetrics:
    """The engine's counters and histograms, and the collector of its gauges, in a registry
    of its own (several engines in one process never share series)."""

    def __init__(self, state: EngineState, platform: ServerHealth) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs_finished = Counter(
            "validator_jobs_finished",
            "Jobs that ended, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.claims = Counter(
            "validator_claims",
            "Claim requests answered, by result",
            ["result"],
            registry=self.registry,
        )
        self.claim_latency = Histogram(
            "validator_claim_latency_seconds",
            "From a job's announcement to the platform's answer to our claim",
            buckets=CLAIM_BUCKETS,
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "validator_job_duration_seconds",
            "From a job's claim to its end",
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.results = Counter(
            "validator_results",
            "Results the platform answered, by status",
            ["status"],
            registry=self.registry,
        )
        for outcome in JobState:
            if outcome.finished:
                self.jobs_finished.labels(outcome.value)
        for result in ("won", "lost", "unsure", "error"):
            self.claims.labels(result)
        for name in RESULT_NAMES.values():
            self.results.labels(name)
        self.registry.register(StateCollector(state, platform))
        self._state = state
        #: The last state seen of every unfinished job; pending jobs the state drops (taken by
        #: another validator) are pruned once they outnumber the jobs held (see `_prune`).
        self._seen: dict[str, JobState] = {}
        state.job_watchers.append(self.on_job)

    def on_job(self, job: JobRecord, note: str | None) -> None:
        """Count what this put of a job record says happened: a claim answered, a job ended."""
        before = self._seen.get(job.id)
        if before is not None:
            result = claim_result(before, job, note)
            if result is not None:
                self.claims.labels(result).inc()
                self.claim_latency.observe(max(0.0, _claim_answered_at(job) - job.created_at))
        if job.state.finished:
            if self._seen.pop(job.id, None) is not None:
                self.jobs_finished.labels(job.state.value).inc()
                if job.claimed_at is not None and job.finished_at is not None:
                    self.job_duration.observe(max(0.0, job.finished_at - job.claimed_at))
        else:
            self._seen[job.id] = job.state
            if len(self._seen) > 2 * len(self._state.jobs) + PRUNE_SLACK:
                self._prune()

    def _prune(self) -> None:
        """Forget the jobs the state no longer holds (amortised: at most once per
        PRUNE_SLACK jobs dropped)."""
        held = self._state.jobs
        self._seen = {job_id: seen for job_id, seen in self._seen.items() if job_id in held}

    def on_result(self, job_id: str, status: ResultStatus, detail: str) -> None:
        """Count one answer of the platform to a result (a `ResultOutbox.on_done` listener)."""
        name = RESULT_NAMES.get(status)
        if name is not None:
            self.results.labels(name).inc()

    def exposition(self) -> bytes:
        """Every metric, in the text exposition format."""
        return generate_latest(self.registry)


def _claim_answered_at(job: JobRecord) -> float:
    """When the claim's answer came: the claim time, else the job's latest timeline entry."""
    if job.claimed_at is not None:
        return job.claimed_at
    return job.finished_at or (job.timeline[-1].at if job.timeline else job.created_at)


class StateCollector(Collector):
    """The gauges, read from the engine's state at each scrape."""

    def __init__(self, state: EngineState, platform: ServerHealth) -> None:
        self.state = state
        self.platform = platform

    def collect(self) -> Iterator[Metric]:
        state = self.state
        header = state.header
        jobs = GaugeMetricFamily("validator_jobs", "Jobs held now, by state", labels=["state"])
        by_state = Tally(job.state for job in state.jobs.values())
        for job_state in GAUGED_JOB_STATES:
            jobs.add_metric([job_state.value], by_state[job_state])
        yield jobs
        yield GaugeMetricFamily(
            "validator_outbox_pending",
            "Results not answered yet",
            value=header.counters.outbox_pending,
        )
        yield GaugeMetricFamily(
            "validator_dead_letters",
            "Results the platform refused, awaiting the operator",
            value=header.counters.dead_letters,
        )
        yield from self._hosts()
        yield GaugeMetricFamily(
            "validator_platform_up", "1 while the platform API answers", value=int(self.platform.up)
        )
        yield GaugeMetricFamily(
            "validator_websocket_connected",
            "1 while the platform's WebSocket is connected",
            value=int(header.platform.status == "connected"),
        )
        cvms = GaugeMetricFamily(
            "validator_challenge_cvms", "Challenge CVMs, by state", labels=["state"]
        )
        by_cvm = Tally(challenge.state for challenge in state.challenges.values())
        for cvm_state in ChallengeState:
            cvms.add_metric([cvm_state.value], by_cvm[cvm_state])
        yield cvms
        info = GaugeMetricFamily("validator_build_info", "The running version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    def _hosts(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("validator_host_up", "1 while a host's VMM answers", labels=["host"])
        used = GaugeMetricFamily(
            "validator_quota_used", "Resources our VMs hold", labels=["host", "resource"]
        )
        limit = GaugeMetricFamily(
            "validator_quota_limit", "Resources a host lends us", labels=["host", "resource"]
        )
        for host in self.state.hosts.values():
            up.add_metric([host.id], int(host.state not in HOST_DOWN_STATES))
            usage = host.usage
            held = (*_resource_values(usage.used), usage.ports_used)
            total = (*_resource_values(usage.total), usage.ports_total)
            for resource, u, t in zip(QUOTA_RESOURCES, held, total, strict=True):
                used.add_metric([host.id, resource], u)
                limit.add_metric([host.id, resource], t)
        yield from (up, used, limit)


def _resource_values(resources: Resources) -> tuple[int, int, int, int]:
    """vcpu, memory_mb, disk_mb and gpu of `resources`."""
    return resources.vcpu, resources.memory_mb, resources.disk_mb, resources.gpu


class MetricsServer:
    """`GET /metrics` over HTTP/1.1 on the engine's loop (every other path: 404)."""

    def __init__(self, metrics: EngineMetrics, listen: str) -> None:
        self.metrics = metrics
        self.host, self.port = split_listen(listen)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen (a port of 0 picks a free one: see `port` after this); a non-loopback
        address is logged as a warning."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if not is_loopback(self.host):
            logger.warning("metrics are served beyond this machine, on %s", self.url)
        logger.info("metrics on %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body = self._answer(head)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def _answer(self, head: bytes) -> tuple[str, bytes]:
        if len(head) > MAX_REQUEST_BYTES:
            return "431 Request Header Fields Too Large", b""
        method, _, rest = head.partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD") or path != b"/metrics":
            return "404 Not Found", b"only GET /metrics is served here\n"
        body = self.metrics.exposition()
        return "200 OK", b"" if method == b"HEAD" else body
