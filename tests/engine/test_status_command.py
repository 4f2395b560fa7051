"""`validator-tui status`: the running engine's health over its control socket, with the
monitoring-plugins exit codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)."""

from __future__ import annotations

import asyncio
import json

from tests.support.control import hosted
from tests.support.engine import FAST, wait_for
from validator_tui.cli import main
from validator_tui.config import ResourceLimits
from validator_tui.control.host import EngineHost
from validator_tui.control.interface import EngineMode
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.validator import Validator
from validator_tui.shared.records import HostState

ENGINE = FAST | {"host_down_grace_s": 0.5, "request_timeout_s": 1.0}


async def status(capsys, host_or_dir: EngineHost | str, *extra: str) -> tuple[int, str]:
    """Run `status` (in a thread: it runs its own event loop) and return (exit code, stdout)."""
    state_dir = (
        host_or_dir
        if isinstance(host_or_dir, str)
        else str(host_or_dir.validator.config.state_path)
    )
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["status", "--state-dir", state_dir, *extra])
    return code, capsys.readouterr().out


async def test_a_healthy_engine_is_ok_and_its_json_has_the_counts(capsys):
    async with DemoEnvironment(seed=61, jobs_per_minute=0, boot_seconds=0, engine=ENGINE) as env:
        async with hosted(env.config) as host:
            code, out = await status(capsys, host)
            assert (code, out.split(" - ")[0]) == (0, "VALIDATOR OK")
            code, out = await status(capsys, host, "--json")
            answer = json.loads(out)
            assert (code, answer["status"], answer["reasons"]) == (0, "OK", [])
            assert answer["dead_letters"] == 0 and answer["running"] == 0


async def test_no_engine_on_the_state_dir_is_critical(capsys, tmp_path):
    code, out = await status(capsys, str(tmp_path))
    assert code == 2
    assert out.startswith("VALIDATOR CRITICAL - no engine answers on")


async def test_a_vmm_killed_past_the_grace_is_critical(capsys):
    async with DemoEnvironment(seed=62, jobs_per_minute=0, boot_seconds=0, engine=ENGINE) as env:
        async with hosted(env.config) as host:
            validator = host.validator
            await env.vmms[0].go_down()
            await wait_for(
                lambda: validator.state.hosts["default"].state is HostState.DOWN, 10, "host down"
            )
            code, out = await status(capsys, host)
            assert code == 2
            assert "CRITICAL - no dstack host is answering (down: default)" in out
            await env.vmms[0].come_back()


async def test_one_host_down_while_others_answer_is_a_warning(capsys):
    async with DemoEnvironment(
        seed=63, jobs_per_minute=0, boot_seconds=0, engine=ENGINE, hosts=2
    ) as env:
        async with hosted(env.config) as host:
            validator = host.validator
            await env.host_of("h2").go_down()
            await wait_for(lambda: validator.state.hosts["h2"].state is HostState.DOWN, 10)
            code, out = await status(capsys, host)
            assert code == 1
            assert out.startswith("VALIDATOR WARNING - host h2 is down")
            await env.host_of("h2").come_back()


async def test_the_platform_not_answering_is_critical(capsys):
    async with DemoEnvironment(seed=64, jobs_per_minute=0, boot_seconds=0, engine=ENGINE) as env:
        async with hosted(env.config) as host:
            await env.platform.stop()
            await wait_for(lambda: not host.validator.state.header.platform_up, 10, "platform down")
            code, out = await status(capsys, host)
            assert code == 2
            assert "the platform API is not answering" in out


async def test_dead_letters_are_a_warning(capsys):
    async with DemoEnvironment(
        seed=65, jobs_per_minute=0, boot_seconds=0, engine=ENGINE, auto_claim=False
    ) as env:
        async with hosted(env.config) as host:
            validator = host.validator
            [job] = env.platform.add_jobs(1)
            await wait_for(lambda: job["id"] in validator.state.jobs, 5, "job seen")
            env.platform.inject_fault(status=400, path_prefix=f"/jobs/{job['id']}/results")
            assert (await validator.commands.claim(job["id"])).ok
            await wait_for(lambda: validator.state.header.counters.dead_letters == 1, 10)
            code, out = await status(capsys, host)
            assert code == 1
            assert "WARNING - 1 dead letters (results the platform refused)" in out
            assert "| running=0 completed=0 failed=1" in out


async def test_claims_suspended_by_disk_trouble_are_critical(capsys):
    async with DemoEnvironment(seed=66, jobs_per_minute=0, boot_seconds=0, engine=ENGINE) as env:
        # A directory where the store's file should be: the store cannot open.
        (env.config.state_path / "state.sqlite3").mkdir(parents=True)
        async with hosted(env.config) as host:
            code, out = await status(capsys, host)
            assert code == 2
            assert "claims are suspended: the state database is not writable" in out


async def test_a_slow_server_is_a_warning(capsys):
    async with DemoEnvironment(seed=67, jobs_per_minute=0, boot_seconds=0, engine=ENGINE) as env:
        async with hosted(env.config) as host:
            # Every platform request takes 0.6 s of its 1 s deadline from now on.
            env.platform.inject_fault(status=0, delay_s=0.6, count=1_000_000)
            await wait_for(lambda: bool(host.validator.state.header.slow_request), 10, "slow")
            code, out = await status(capsys, host)
            assert code == 1
            assert out.startswith("VALIDATOR WARNING - slow platform")


async def test_a_capacity_shortfall_is_a_warning(capsys):
    # Room for two challenge CVMs (2 vCPU each) and the job VM reserve (2 vCPU): one waits.
    limits = ResourceLimits(cpu_cores=6, memory_mb=65536, disk_mb=2_000_000, gpu_count=0)
    async with DemoEnvironment(
        seed=68, jobs_per_minute=0, boot_seconds=0, engine=ENGINE, resource_limits=limits
    ) as env:
        validator = Validator(env.config)
        host = EngineHost(validator, mode=EngineMode.HEADLESS)
        task = asyncio.create_task(host.run())
        try:
            await wait_for(lambda: bool(validator.state.header.capacity_warning), 15, "shortfall")
            code, out = await status(capsys, host)
            assert code == 1
            assert out.startswith("VALIDATOR WARNING - capacity shortfall: 1 of 3 challenges")
        finally:
            await validator.stop()
            await asyncio.wait_for(task, 30)


async def test_an_unreadable_config_is_unknown(capsys, tmp_path):
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["status", "--config", str(tmp_path / "missing.toml")])
    captured = capsys.readouterr()
    assert code == 3
    assert captured.out.startswith("VALIDATOR UNKNOWN - cannot tell which state dir to ask")
    assert "config error" in captured.err
