"""Every operator command refuses what cannot be done with a reason the operator can act on
(read-only engine, unknown job, VM, challenge or host, a host already draining, an ORM query
that writes), and a gone job VM's log is served from its record."""

from __future__ import annotations

import pytest

from tests.support.engine import FAST, running, wait_for
from validator_tui.clients.errors import VmmError
from validator_tui.control import frames
from validator_tui.control.desk import CommandDesk
from validator_tui.demo import DemoEnvironment
from validator_tui.shared.records import JobState


async def test_a_read_only_engine_refuses_every_command_itself():
    """Whatever the console asks (even a console that is not read-only), through the command
    desk every command reaches the engine by."""
    async with DemoEnvironment(
        seed=61, jobs_per_minute=0, boot_seconds=0, engine=FAST, auto_claim=False
    ) as env:
        async with running(env.config, read_only=True) as validator:
            job = env.platform.add_job()
            await wait_for(lambda: job["id"] in validator.state.jobs, 10, "job seen")
            challenge = next(iter(validator.state.challenges))
            vm = next(iter(validator.state.vms))
            desk = CommandDesk(validator)
            commands: list[frames.Command] = [
                frames.Claim(job_id=job["id"]),
                frames.Cancel(job_id=job["id"]),
                frames.Rebuild(challenge_id=challenge),
                frames.StartVm(vm_id=vm),
                frames.StopVm(vm_id=vm),
                frames.RemoveVm(vm_id=vm),
                frames.SetAutoClaim(enabled=True),
                frames.DrainHost(host="default"),
                frames.UndrainHost(host="default"),
                frames.RetryDeadLetter(job_id=job["id"]),
                frames.DiscardDeadLetter(job_id=job["id"]),
                frames.OrmQuery(challenge_id=challenge, sql="SELECT 1"),
                frames.StopValidator(),
            ]
            outcomes = [await desk.run("test", command, read_only=False) for command in commands]
            assert all(not o.ok and "read-only" in o.message for o in outcomes), outcomes
            assert validator.state.jobs[job["id"]].state is JobState.PENDING
            assert not validator.state.header.auto_claim
            assert env.platform.results() == {}


async def test_commands_on_what_does_not_exist_say_what_is_missing():
    async with DemoEnvironment(seed=62, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            rebuild = await validator.commands.rebuild("no-such-challenge")
            assert not rebuild.ok and "unknown challenge" in rebuild.message
            stop = await validator.commands.stop_vm("no-such-vm")
            assert not stop.ok and "not one of this validator's VMs" in stop.message
            drain = await validator.commands.drain_host("nowhere")
            assert not drain.ok and "no host named 'nowhere'" in drain.message
            assert "default" in drain.message  # the hosts there are
            undrain = await validator.commands.undrain_host("default")
            assert not undrain.ok and "not draining" in undrain.message
            drained = await validator.commands.drain_host("default")
            assert drained.ok and "no other host takes VMs" in drained.message
            again = await validator.commands.drain_host("default")
            assert not again.ok and "already" in again.message
            assert (await validator.commands.undrain_host("default")).ok
            write = await validator.commands.orm_query(
                next(iter(validator.state.challenges)), "DELETE FROM submissions", []
            )
            assert not write.ok and write.rows == ()
            with pytest.raises(VmmError, match="not found"):  # one host: the VMM answers
                _ = [line async for line in validator.commands.vm_logs("no-such-vm", follow=False)]


async def test_a_gone_job_vms_log_is_served_from_its_record():
    async with DemoEnvironment(seed=63, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            job = env.platform.add_job()
            await wait_for(
                lambda: (
                    job["id"] in validator.state.jobs
                    and validator.state.jobs[job["id"]].state.finished
                ),
                15,
                "job finished (its result answered)",
            )
            record = validator.state.jobs[job["id"]]
            await wait_for(lambda: record.vm_id not in validator.state.vms, 10, "VM gone")
            assert record.vm_log, "the job kept its VM's log"
            lines = [line async for line in validator.commands.vm_logs(record.vm_id, follow=False)]
            assert lines[:-1] == list(record.vm_log)[-200:]
            assert lines[-1].endswith("log lines kept") and record.vm_id in lines[-1]


async def test_vm_commands_on_a_finished_jobs_vm_say_it_was_removed_with_the_job():
    async with DemoEnvironment(seed=64, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            job = env.platform.add_job()
            await wait_for(
                lambda: (
                    job["id"] in validator.state.jobs
                    and validator.state.jobs[job["id"]].state.finished
                ),
                15,
                "job finished (its result answered)",
            )
            record = validator.state.jobs[job["id"]]
            vm_id = record.vm_id
            assert vm_id is not None
            await wait_for(lambda: vm_id not in validator.state.vms, 10, "VM gone")
            for command in (
                validator.commands.start_vm,
                validator.commands.stop_vm,
                validator.commands.remove_vm,
            ):
                outcome = await command(vm_id)
                assert not outcome.ok
                assert outcome.message == (
                    f"VM {vm_id} of job {job['id']} was removed when the job finished "
                    f"({record.state.value})"
                )
