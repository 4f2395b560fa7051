"""Host ports another program holds: QEMU cannot forward them, the VMM refuses to start the VM;
the engine sets the port aside and uses another one, for challenge CVMs and job VMs alike."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from tests.support.engine import FAST, job_vms, running, wait_for
from tests.support.identities import BOB
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.vm_ops import PORT_ASIDE_S
from validator_tui.shared.records import ChallengeState
from validator_tui.sim.scoring import score_for_code


@contextlib.contextmanager
def strangers(ports: range) -> Iterator[None]:
    """Another program listening on `ports` of the loopback address."""
    sockets = []
    try:
        for port in ports:
            sock = socket.socket()
            # As servers do: a port a closed connection left in TIME_WAIT can be listened on.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen()
            sockets.append(sock)
        yield
    finally:
        for sock in sockets:
            sock.close()


async def test_cvms_and_jobs_use_other_ports_than_those_another_program_holds():
    async with DemoEnvironment(seed=51, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        first = env.config.host_ports.start
        with strangers(range(first, first + 5)):
            async with running(env.config) as validator:
                cvm_ports = {c.host_port for c in validator.state.vms.values()}
                assert len(cvm_ports) == 3 and not cvm_ports & set(range(first, first + 5))
                quota = validator.ctx.hosts["default"].quota
                assert quota.ports_set_aside == 5
                next_port = max(cvm_ports) + 1
                with strangers(range(next_port, next_port + 2)):
                    job = env.platform.add_job()
                    await wait_for(lambda: job["id"] in env.platform.results(), 10, "result")
                [result] = env.platform.results()[job["id"]]
                assert result["error"] is None
                assert result["score"] == score_for_code(env.platform.job(job["id"])["code"])
                assert "in use by another program: trying" in "\n".join(result["logs"])
                await wait_for(lambda: not job_vms(env), 10, "the job VM removed")
                hosts = validator.ctx.hosts
                await wait_for(lambda: hosts.get_usage().allocations == 3, 5, "quota back")
                assert quota.ports_set_aside == 7
                warnings = [e.message for e in validator.state.events if e.kind == "quota"]
                assert len(warnings) == 7, warnings
                assert f"no VM gets it for {PORT_ASIDE_S / 60:g} min" in warnings[0]
                assert all(c.last_error == "" for c in validator.state.challenges.values())


async def test_a_rebuild_whose_port_is_taken_keeps_the_old_cvm_until_the_new_one_serves():
    """The rebuilt CVM has the old one's name: setting the taken port aside removes the VM the
    VMM kept under that name only if the engine does not know it, so the serving CVM stays."""
    async with DemoEnvironment(seed=52, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            challenge = next(iter(validator.state.challenges.values()))
            old_vm = challenge.vm_id
            next_port = max(vm.host_port or 0 for vm in validator.state.vms.values()) + 1
            with strangers(range(next_port, next_port + 1)):
                assert (await validator.commands.rebuild(challenge.id)).ok

                def rebuilt() -> bool:
                    now = validator.state.challenges[challenge.id]
                    return now.vm_id != old_vm and now.state is ChallengeState.ACTIVE

                await wait_for(rebuilt, 15, "the rebuilt CVM active")
            messages = [e.message for e in validator.state.events]
            assert not [m for m in messages if "no longer has it" in m or "failed" in m]
            # One RemoveVm: the old CVM's, once the new one served (not one more before).
            await wait_for(lambda: env.vmm.stats["vms_removed"] == 1, 5, "the old CVM removed")
            assert env.vmm.stats["RemoveVm"] == 1
            assert validator.ctx.hosts["default"].quota.ports_set_aside == 1


async def test_validators_of_one_demo_get_host_port_ranges_of_their_own():
    """Two validators on one VMM with overlapping ranges would map the same host port (the VMM
    refuses the second: "Port conflict"); a demo's ranges never overlap."""
    async with DemoEnvironment(seed=53, jobs_per_minute=0, boot_seconds=0, hosts=2) as env:
        ranges = [
            (host.host_ports.start, host.host_ports.end)
            for index in range(2)
            for host in env.make_config(BOB, f"/nonexistent/{index}").hosts
        ]
        ranges.append((env.config.hosts[0].host_ports.start, env.config.hosts[0].host_ports.end))
        ranges.append((env.config.hosts[1].host_ports.start, env.config.hosts[1].host_ports.end))
        for i, (start, end) in enumerate(ranges):
            for other_start, other_end in ranges[i + 1 :]:
                assert end < other_start or other_end < start, ranges
