"""Prometheus metrics scraped from a running engine, compared with its state and with what
the platform simulator accepted."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.engine import FAST, running, wait_for
from tests.support.identities import ALICE, BOB
from validator_tui import __version__
from validator_tui.config import MetricsSettings, ValidatorConfig
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.validator import Validator
from validator_tui.shared.records import JobState

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def with_metrics(config: ValidatorConfig) -> ValidatorConfig:
    return config.model_copy(update={"metrics": MetricsSettings(listen="127.0.0.1:0")})


async def scrape(validator: Validator) -> Samples:
    """Every sample `GET /metrics` serves, by name and sorted labels."""
    assert validator.metrics_server is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(validator.metrics_server.url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_scraped_figures_match_the_engine_and_the_platform():
    async with DemoEnvironment(seed=4, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        bob_config = env.make_config(BOB, env.config.state_path.parent / "bob")
        async with running(with_metrics(env.config)) as alice, running(bob_config):
            jobs = env.platform.add_jobs(40)
            await wait_for(lambda: len(env.platform.results()) == 40, 60, "40 results")
            await wait_for(lambda: alice.state.header.counters.outbox_pending == 0, 10, "sent")

            def settled() -> bool:
                records = [alice.state.jobs.get(job["id"]) for job in jobs]
                return all(r is None or r.state.finished for r in records)

            await wait_for(settled, 10, "every job of Alice's finished or gone")
            samples = await scrape(alice)

            ours = [job["id"] for job in jobs if env.platform.job(job["id"])["claimed_by"] == ALICE]
            states = [job.state for job in alice.state.jobs.values()]
            completed, lost = states.count(JobState.COMPLETED), states.count(JobState.LOST)
            assert completed == len(ours) > 0
            # A job Bob claimed and finished before Alice tried is gone, not lost, for Alice.
            assert 0 < lost <= 40 - len(ours)
            finished = "validator_jobs_finished_total"
            assert value(samples, finished, outcome="completed") == completed
            assert value(samples, finished, outcome="lost") == lost
            assert value(samples, finished, outcome="failed") == 0
            assert value(samples, "validator_claims_total", result="won") == len(ours)
            assert value(samples, "validator_claims_total", result="lost") == lost
            # One sample per claim answered (won or lost): a job Bob took before Alice tried
            # has none.
            assert value(samples, "validator_claim_latency_seconds_count") == len(ours) + lost
            assert value(samples, "validator_job_duration_seconds_count") == completed
            accepted = value(samples, "validator_results_total", status="accepted")
            assert accepted == len(ours) == alice.state.header.counters.completed
            assert value(samples, "validator_outbox_pending") == 0
            assert value(samples, "validator_dead_letters") == 0
            assert value(samples, "validator_jobs", state="running") == 0
            assert value(samples, "validator_host_up", host="default") == 1
            assert value(samples, "validator_platform_up") == 1
            assert value(samples, "validator_websocket_connected") == 1
            assert value(samples, "validator_challenge_cvms", state="active") == 3
            assert value(samples, "validator_build_info", version=__version__) == 1
            usage = alice.ctx.hosts.get_usage()
            for resource, used, total in (
                ("vcpu", usage.used.vcpu, usage.total.vcpu),
                ("memory_mb", usage.used.memory_mb, usage.total.memory_mb),
                ("ports", usage.ports_used, usage.ports_total),
            ):
                assert (
                    value(samples, "validator_quota_used", host="default", resource=resource)
                    == used
                )
                assert (
                    value(samples, "validator_quota_limit", host="default", resource=resource)
                    == total
                )


async def test_gauges_follow_the_engine_and_other_paths_are_not_served():
    async with DemoEnvironment(seed=5, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(with_metrics(env.config)) as validator:
            validator.jobs.auto_claim = False
            env.platform.add_jobs(3)
            await wait_for(lambda: len(validator.state.jobs) == 3, 10, "3 jobs announced")
            samples = await scrape(validator)
            assert value(samples, "validator_jobs", state="pending") == 3
            assert value(samples, "validator_claims_total", result="won") == 0
            assert validator.metrics_server is not None
            async with httpx.AsyncClient() as client:
                other = await client.get(validator.metrics_server.url.replace("/metrics", "/"))
            assert other.status_code == 404
            assert validator.state.header.metrics_url == validator.metrics_server.url
