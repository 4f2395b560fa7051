"""Claim latency with Prometheus scrapes: the engine (headless, in this process, metrics on)
without scrapes, then with `GET /metrics` every `--scrape-every` seconds, then with a scrape
every 0.1 s (ten times a usual rate), then without again. Latency is the simulator's own
stamps: `new_job` written on the WebSocket → claim request received. The scrape's own time
(request → whole answer) is printed too.

    .venv/bin/python bench/metrics_scrape.py --jobs 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from benchlib import (
    HOTKEYS,
    Row,
    SimProcesses,
    bench_config,
    median,
    percentile,
    print_machine,
    print_table,
    sim_processes,
)
from claim_latency import Claimer, Probe, run_phase

from validator_tui.config import MetricsSettings
from validator_tui.engine.validator import Validator


def scraped_engine(every: float | None, scrape_ms: list[float]) -> Claimer:
    """The engine with metrics on 127.0.0.1 (a free port), scraped every `every` seconds
    (None: never); each scrape's time goes to `scrape_ms`."""

    @asynccontextmanager
    async def claimer(sims: SimProcesses, hotkey: str, state: Path) -> AsyncIterator[Probe]:
        config = bench_config(sims.platform_url, sims.vmm_url, state, hotkey=hotkey)
        config = config.model_copy(update={"metrics": MetricsSettings(listen="127.0.0.1:0")})
        validator = Validator(config)
        task = asyncio.create_task(validator.run())

        async def scrape_forever() -> None:
            await validator.wait_started()
            assert validator.metrics_server is not None
            async with httpx.AsyncClient(trust_env=False) as client:
                while every is not None:
                    started = time.perf_counter()
                    response = await client.get(validator.metrics_server.url)
                    response.raise_for_status()
                    scrape_ms.append((time.perf_counter() - started) * 1000)
                    await asyncio.sleep(every)

        scraper = asyncio.create_task(scrape_forever())

        async def version() -> int:
            return validator.state.version

        try:
            yield version
        finally:
            scraper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scraper
            await validator.stop()
            await asyncio.wait_for(task, 60)

    return claimer


async def main(args: argparse.Namespace) -> None:
    print_machine()
    print(
        f"claim latency with scrapes: {args.jobs} jobs per phase, one every "
        f"{args.interval_ms:g} ms, first {args.warmup} of each phase dropped",
        flush=True,
    )
    scrapes: dict[str, list[float]] = {}
    phases = [
        ("no scrape", None),
        (f"scrape every {args.scrape_every:g} s", args.scrape_every),
        ("scrape every 0.1 s", 0.1),
        ("no scrape (again)", None),
    ]
    samples: dict[str, list[float]] = {}
    async with sim_processes(seed=args.seed) as sims:
        for index, (name, every) in enumerate(phases):
            scrapes[name] = []
            latencies = await run_phase(
                sims,
                scraped_engine(every, scrapes[name]),
                HOTKEYS[index % len(HOTKEYS)],
                args.jobs + args.warmup,
                args.interval_ms,
            )
            samples[name] = latencies[args.warmup :]
            print(
                f"  {name}: {len(samples[name])} samples, {len(scrapes[name])} scrapes", flush=True
            )
    floor = samples["no scrape"] + samples["no scrape (again)"]
    base = median(floor)
    rows = [Row("engine, no scrape: new_job → claim (ms)", base, percentile(floor, 99), base)]
    for name, every in phases[1:3]:
        values = samples[name]
        rows.append(
            Row(
                f"engine, {name}: new_job → claim (ms)",
                median(values),
                percentile(values, 99),
                base,
            )
        )
        taken = scrapes[name]
        if every is not None and taken:
            rows.append(Row(f"{name}: one scrape (ms)", median(taken), percentile(taken, 99), None))
    print_table("Claim latency with Prometheus scrapes", rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300, help="samples per phase")
    parser.add_argument("--interval-ms", type=float, default=40.0, help="spacing of the jobs")
    parser.add_argument("--warmup", type=int, default=5, help="samples dropped per phase")
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds between scrapes")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
