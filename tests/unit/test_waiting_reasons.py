"""Pending jobs say why they wait, and a pass of `claim_what_fits` rewords the reasons of the
jobs whose reason changed, after what decides them changed (an engine built, never run: no
sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.identities import ALICE
from validator_tui.config import EngineSettings, HostPorts, ResourceLimits, ValidatorConfig, VmSpec
from validator_tui.engine.quota import Allocation, CapacityError
from validator_tui.engine.validator import Validator
from validator_tui.shared.records import ChallengeRecord, ChallengeState, JobState

CHALLENGES = ("chal-a", "chal-b")
JOB_VM = VmSpec(vcpu=2, memory_mb=2048, disk_gb=10)


@pytest.fixture
async def validator(tmp_path) -> AsyncIterator[Validator]:
    config = ValidatorConfig(
        validator_hotkey=ALICE,
        platform_api_url="http://127.0.0.1:9",
        dstack_vmm_url="http://127.0.0.1:9",
        state_dir=str(tmp_path),
        engine=EngineSettings(auto_claim=True),
        job_vm=JOB_VM,
        challenge_vm=JOB_VM,
        resource_limits=ResourceLimits(cpu_cores=8, memory_mb=65536, disk_mb=1_000_000),
        host_ports=HostPorts(start=20000, end=20099),
    )
    validator = Validator(config)
    for challenge in CHALLENGES:
        validator.state.put_challenge(
            ChallengeRecord(challenge, challenge, state=ChallengeState.ACTIVE, vm_status="running")
        )
    try:
        yield validator
    finally:
        await validator.ctx.tasks.cancel_all(5.0)
        await validator.close()


def fill(validator: Validator) -> list[Allocation]:
    held = []
    while True:
        try:
            held.append(validator.ctx.hosts.place_job(JOB_VM.resources, owner=f"job {len(held)}"))
        except CapacityError:
            return held


def reasons(validator: Validator) -> dict[str, set[str]]:
    by_challenge: dict[str, set[str]] = {}
    for job in validator.state.jobs.values():
        if job.state is JobState.PENDING:
            by_challenge.setdefault(job.challenge_id, set()).add(job.waiting_reason)
    return by_challenge


async def test_reasons_follow_what_changed_between_passes_that_claim_nothing(validator):
    jobs = validator.jobs
    held = fill(validator)
    for index in range(40):
        jobs.on_new_job(f"job-{index:02d}", CHALLENGES[index % 2])
    jobs.claim_what_fits()
    jobs.claim_what_fits()  # nothing changed: the same reasons
    full = reasons(validator)
    assert full.keys() == set(CHALLENGES)
    assert all(len(texts) == 1 and "capacity" in next(iter(texts)) for texts in full.values())

    validator.state.put_challenge(
        ChallengeRecord("chal-b", "chal-b", state=ChallengeState.FAILED, vm_status="")
    )
    jobs.claim_what_fits()
    assert reasons(validator)["chal-b"] == {"challenge CVM not active"}
    assert reasons(validator)["chal-a"] == full["chal-a"]

    jobs.auto_claim = False
    jobs.claim_what_fits()
    assert reasons(validator) == {c: {"auto-claim off"} for c in CHALLENGES}

    jobs.auto_claim = True
    jobs.on_new_job("job-late", "chal-a")
    jobs.claim_what_fits()
    assert validator.state.jobs["job-late"].waiting_reason == next(iter(full["chal-a"]))

    validator.ctx.hosts.release(held.pop())
    jobs.claim_what_fits()
    # One slot: one claim (its quota taken, its reason cleared), the oldest job of an active
    # challenge; the others still wait for capacity.
    claiming = [j.id for j in validator.state.jobs.values() if j.waiting_reason == ""]
    assert claiming == ["job-00"]
    assert validator.ctx.hosts.job_capacity_reason(JOB_VM.resources)
