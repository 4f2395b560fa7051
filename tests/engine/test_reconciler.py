"""The reconciler: a job VM of ours that no job runs in is removed; a VMM that refuses the
listing changes nothing."""

from __future__ import annotations

import json

from tests.support.engine import FAST, challenge_resources, running, wait_for
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.store import StoredState
from validator_tui.models.vmm import PortMapping, VmConfiguration

COMPOSE = json.dumps({"manifest_version": 2, "name": "evaluator", "runner": "docker-compose"})


async def test_orphaned_job_vm_is_removed_and_a_failed_listing_changes_nothing():
    async with DemoEnvironment(seed=12, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            ports = env.config.host_ports
            orphan = VmConfiguration(
                name=validator.ctx.naming.job_vm("nobody-runs-this"),
                image="dstack-0.5.2",
                compose_file=COMPOSE,
                vcpu=1,
                memory=512,
                disk_size=1,
                ports=[PortMapping(host_port=ports.end, vm_port=ports.evaluator_port)],
            )
            # Ours: the store recorded its name (a job VM no store recorded is another
            # validator's, left alone: engine/foreign).
            validator.ctx.store.upsert_job(
                "nobody-runs-this", "c", StoredState.LOST, vm_name=orphan.name
            )
            orphan_id = await validator.ctx.hosts["default"].vmm.create_vm(orphan)
            await validator.reconciler.reconcile()
            assert all(vm["id"] != orphan_id or vm["status"] == "removing" for vm in env.vmm.vms())
            assert any("removed orphaned job VM" in e.message for e in validator.state.events)

            env.vmm.fail_next("Status", 1, "boom")
            before = len(validator.state.events)
            await validator.reconciler.reconcile()
            assert len(validator.state.events) == before
            await wait_for(lambda: validator.ctx.hosts.get_usage().used == challenge_resources(), 5)
