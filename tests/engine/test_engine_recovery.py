"""Restart behaviour: adopt our challenge CVMs, remove our orphaned job VMs, leave others alone."""

from __future__ import annotations

import json

import httpx

from tests.support.engine import running, wait_for
from validator_tui.demo import DemoEnvironment
from validator_tui.engine.naming import VmNaming
from validator_tui.engine.store import Store
from validator_tui.models.platform import Challenge, JobResults
from validator_tui.shared.records import ChallengeState

FAST = {"poll_interval_s": 0.5, "vm_poll_interval_s": 0.05}

FOREIGN = {
    "name": "someone-else-vm",
    "image": "dstack-0.5.2",
    "compose_file": json.dumps({"manifest_version": 2, "name": "x", "runner": "docker-compose"}),
    "vcpu": 1,
    "memory": 512,
    "disk_size": 1,
}


async def test_restart_adopts_cvms_and_never_touches_foreign_vms():
    async with DemoEnvironment(seed=21, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with httpx.AsyncClient() as http:
            reply = await http.post(f"{env.vmm.url}/prpc/CreateVm?json", json=FOREIGN)
            foreign_id = reply.json()["id"]
        async with running(env.config) as first:
            cvms = {c.id: c.vm_id for c in first.state.challenges.values()}
        creates = env.vmm.stats["CreateVm"]
        async with running(env.config) as second:
            assert {c.id: c.vm_id for c in second.state.challenges.values()} == cvms
            assert env.vmm.stats["CreateVm"] == creates
            assert all(
                c.reason == "adopted after restart" for c in second.state.challenges.values()
            )
            job = env.platform.add_job()
            await wait_for(lambda: job["id"] in env.platform.results(), 10)
            assert env.platform.results()[job["id"]][0]["error"] is None
            assert second.ctx.hosts.get_usage().allocations == 3
        assert foreign_id in {vm["id"] for vm in env.vmm.vms()}


async def test_restart_reports_in_flight_jobs_and_removes_their_vms(tmp_path):
    async with DemoEnvironment(
        seed=22, jobs_per_minute=0, boot_seconds=0, engine=FAST, state_dir=str(tmp_path)
    ) as env:
        hotkey = env.config.validator_hotkey
        job = env.platform.add_job()
        vm_name = VmNaming(hotkey).job_vm(job["id"])
        async with httpx.AsyncClient() as http:
            claim = await http.post(
                f"{env.platform.url}/jobs/{job['id']}/claim",
                headers={"X-Validator-Hotkey": hotkey},
            )
            assert claim.status_code == 200
            created = await http.post(
                f"{env.vmm.url}/prpc/CreateVm?json", json=FOREIGN | {"name": vm_name}
            )
            vm_id = created.json()["id"]
        store = Store(tmp_path / "state.sqlite3")
        store.upsert_job(job["id"], job["challenge_id"], "running", vm_name=vm_name, vm_id=vm_id)
        store.close()
        async with running(env.config):
            await wait_for(lambda: job["id"] in env.platform.results(), 10)
            live = {vm["id"] for vm in env.vmm.vms() if vm["status"] != "removing"}
            assert vm_id not in live
        body = env.platform.results()[job["id"]]
        assert len(body) == 1 and body[0]["error"] == "validator restarted"


async def test_unsent_results_are_resent_after_restart(tmp_path):
    async with DemoEnvironment(
        seed=23, jobs_per_minute=0, boot_seconds=0, engine=FAST, state_dir=str(tmp_path)
    ) as env:
        job = env.platform.add_job()
        claim = None
        async with httpx.AsyncClient() as http:
            claim = await http.post(
                f"{env.platform.url}/jobs/{job['id']}/claim",
                headers={"X-Validator-Hotkey": env.config.validator_hotkey},
            )
        assert claim.status_code == 200
        body = JobResults(score=0.5, metrics={"a": 1}, logs=["x"], execution_time_ms=5)
        store = Store(tmp_path / "state.sqlite3")
        store.upsert_job(job["id"], job["challenge_id"], "submitting")
        store.finish_job_with_result(job["id"], "submitting", body.to_json_bytes())
        store.close()
        async with running(env.config):
            await wait_for(lambda: job["id"] in env.platform.results(), 10)
        assert env.platform.results()[job["id"]] == [body.model_dump(mode="json")]
        store = Store(tmp_path / "state.sqlite3")
        assert store.pending_results() == []
        store.close()


async def test_challenge_manager_reference_methods():
    async with DemoEnvironment(seed=24, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            manager = validator.challenges
            challenge = env.platform.challenges()[0]
            status = manager.get_challenge_status(challenge["id"])
            assert status is not None and status.state is ChallengeState.ACTIVE
            old_vm = status.vm_id
            rebuilt = await manager.update_challenge(challenge["id"])
            assert rebuilt is not None and rebuilt.state is ChallengeState.ACTIVE
            assert rebuilt.vm_id != old_vm
            spec = Challenge.model_validate(challenge)
            await manager.destroy_challenge(challenge["id"])
            assert manager.get_challenge_status(challenge["id"]) is None
            live = {vm["id"] for vm in env.vmm.vms() if vm["status"] != "removing"}
            assert rebuilt.vm_id not in live
            again = await manager.provision_challenge(spec)
            assert again.state is ChallengeState.ACTIVE and again.vm_id in {
                vm["id"] for vm in env.vmm.vms()
            }
            assert validator.ctx.hosts.get_usage().allocations == 3


async def test_a_cvm_created_but_not_recorded_before_a_crash_is_adopted_not_foreign(tmp_path):
    async with DemoEnvironment(
        seed=24, jobs_per_minute=0, boot_seconds=0, engine=FAST, state_dir=str(tmp_path)
    ) as env:
        async with running(env.config) as first:
            cvms = {c.id: c.vm_id for c in first.state.challenges.values()}
        # As if the engine died between CreateVm and recording the id of one CVM: its intent
        # (committed before CreateVm) is all the store knows of it.
        lost_challenge, lost_vm = sorted(cvms.items())[0]
        store = Store(tmp_path / "state.sqlite3")
        store.delete_challenge_vm(lost_vm)
        store.intend_challenge_vm(
            "default", VmNaming(env.config.validator_hotkey).challenge_vm(lost_challenge)
        )
        store.close()
        creates = env.vmm.stats["CreateVm"]
        async with running(env.config) as second:
            assert {c.id: c.vm_id for c in second.state.challenges.values()} == cvms
            assert env.vmm.stats["CreateVm"] == creates
            await second.reconciler.reconcile()
            await second.reconciler.reconcile()
            assert second.state.header.conflict == ""
        store = Store(tmp_path / "state.sqlite3")
        assert store.challenge_vm_intents("default") == set()
        assert lost_vm in {stored.vm_id for stored in store.challenge_vms()}
        store.close()
