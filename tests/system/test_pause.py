"""A real `run --headless` stopped with SIGSTOP past its jobs' deadline while their evaluators
answer, then continued: the answers in hand are used, not reported as timeouts."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.support.crash import start_engine
from tests.support.engine import wait_for
from validator_tui.config_io import write_config
from validator_tui.demo import DemoEnvironment
from validator_tui.sim.scoring import score_for_code

ENGINE = {
    "auto_claim": True,
    "poll_interval_s": 0.3,
    "vm_poll_interval_s": 0.05,
    "request_timeout_s": 1.0,
    "job_timeout_s": 3.0,
}


async def test_answers_that_came_during_a_sigstop_are_used(tmp_path: Path) -> None:
    async with DemoEnvironment(
        seed=61, jobs_per_minute=0, boot_seconds=0, engine=ENGINE, state_dir=str(tmp_path)
    ) as env:
        assert env.config is not None
        config_path = write_config(env.config, tmp_path / "config.toml")
        log = tmp_path / "engine.log"
        process = await start_engine(config_path, log)
        try:
            codes = [f"print({n})  #sim:sleep=0.5" for n in range(3)]
            ids = [env.platform.add_job(code=code)["id"] for code in codes]
            await wait_for(
                lambda: env.vmm.stats["evaluator /evaluate"] == len(ids), 30, "evaluations sent"
            )
            process.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(4.0)  # the evaluators answer; the jobs' 3 s run out
            finally:
                process.send_signal(signal.SIGCONT)
            await wait_for(lambda: all(i in env.platform.results() for i in ids), 15, "results")
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 20) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        results = env.platform.results()
        for job_id, code in zip(ids, codes, strict=True):
            [result] = results[job_id]
            assert result["error"] is None, log.read_text(encoding="utf-8")[-2000:]
            assert result["score"] == score_for_code(code)
