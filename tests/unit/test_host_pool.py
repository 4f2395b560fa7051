"""The host pool: placement (spread, pack, ties by name, only hosts that take VMs), per-host
quota with concrete GPU slots, the challenge CVMs' reserve per host, and exact accounting over
several hosts (no drift in 5,000 random steps)."""

from __future__ import annotations

import random
from collections import Counter

import httpx
import pytest

from tests.support.identities import ALICE
from validator_tui.config import HostConfig, HostPorts, ResourceLimits, ValidatorConfig
from validator_tui.engine.hosts import HostPool, NoRoom, build_pool
from validator_tui.engine.quota import CapacityError
from validator_tui.engine.state import EngineState
from validator_tui.engine.tasks import TaskRegistry
from validator_tui.shared.records import HostState, Resources

JOB = Resources(vcpu=2, memory_mb=2048, disk_mb=10240)
CVM = Resources(vcpu=2, memory_mb=2048, disk_mb=20480)


def pool(
    *cpus: int,
    placement: str = "spread",
    gpus: int = 0,
    ports: int = 50,
    names: tuple[str, ...] = (),
) -> HostPool:
    """A pool of hosts with `cpus[i]` vCPU each (named h1, h2, … unless `names`)."""
    hosts = [
        HostConfig(
            name=names[index] if names else f"h{index + 1}",
            url=f"http://10.0.0.{index + 1}:11530",
            resource_limits=ResourceLimits(
                cpu_cores=cpu, memory_mb=1 << 20, disk_mb=1 << 30, gpu_count=gpus
            ),
            host_ports=HostPorts(start=20000 + 1000 * index, end=20000 + 1000 * index + ports - 1),
        )
        for index, cpu in enumerate(cpus)
    ]
    config = ValidatorConfig(validator_hotkey=ALICE, hosts=hosts)
    return build_pool(
        config.host_settings(env={}),
        state=EngineState(ALICE),
        http=httpx.AsyncClient(),
        tasks=TaskRegistry(),
        timeout=1.0,
        vm_poll_interval=1.0,
        placement=placement,  # type: ignore[arg-type]
        grace=30.0,
    )


def test_spread_places_each_job_on_the_host_with_most_free_capacity_ties_by_name():
    hosts = pool(16, 16, 16)
    placed = [hosts.place_job(JOB, owner=f"job {i}").host for i in range(6)]
    assert placed == ["h1", "h2", "h3", "h1", "h2", "h3"]
    bigger = pool(8, 32)
    placed = Counter(bigger.place_job(JOB, owner=f"job {i}").host for i in range(10))
    # h2 has four times the room: it takes jobs until its free share is down to h1's.
    assert placed == {"h2": 8, "h1": 2}


def test_pack_fills_the_fullest_host_that_still_fits_first():
    hosts = pool(8, 8, 8, placement="pack")
    placed = [hosts.place_job(JOB, owner=f"job {i}").host for i in range(9)]
    assert placed == ["h1"] * 4 + ["h2"] * 4 + ["h3"]


def test_only_hosts_that_take_vms_get_them_and_the_reason_says_why_none_does():
    hosts = pool(8, 8, 8)
    hosts["h1"].draining = True
    hosts["h2"].down = True
    assert {hosts.place_job(JOB, owner=f"j{i}").host for i in range(4)} == {"h3"}
    with pytest.raises(CapacityError) as full:
        hosts.place_job(JOB, owner="j5")
    assert str(full.value).startswith("waiting for capacity on every host (h3: needs 2 vCPU")
    hosts["h3"].health.up = False
    reason = hosts.job_capacity_reason(JOB)
    assert reason == "waiting for a host that takes VMs (h1 drained, h2 down, h3 unreachable)"
    assert hosts["h1"].state is HostState.DRAINED and hosts["h2"].state is HostState.DOWN


def test_a_drained_host_is_one_draining_with_nothing_left_on_it():
    hosts = pool(8, 8)
    job = hosts.place_job(JOB, owner="j")
    assert job.host == "h1"
    hosts["h1"].draining = True
    assert hosts["h1"].state is HostState.DRAINING
    assert hosts.release(job) and not hosts.release(job)
    assert hosts["h1"].state is HostState.DRAINED


def test_challenge_cvms_go_to_the_roomiest_host_keeping_the_job_reserve_there():
    hosts = pool(6, 8)
    cvms = [hosts.place_cvm(CVM, owner=f"c{i}", job_vm=JOB, reserve_vms=1) for i in range(5)]
    # Each goes where the smallest free share is largest; h1 (6 vCPU) takes two CVMs and keeps
    # 2 vCPU for a job VM, h2 (8 vCPU) three.
    assert [cvm.host for cvm in cvms] == ["h2", "h1", "h2", "h1", "h2"]
    with pytest.raises(NoRoom) as short:
        hosts.place_cvm(CVM, owner="c6", job_vm=JOB, reserve_vms=1)
    assert short.value.shortfall == 1
    assert "keep room for 1 job VMs" in str(short.value)
    # A rebuild of an h1 CVM may use the room that CVM itself holds.
    rebuilt = hosts.place_cvm(CVM, owner="c1", job_vm=JOB, reserve_vms=1, replacing=cvms[1])
    assert rebuilt.host == "h1"


def test_cvm_placement_waits_for_jobs_and_for_a_host_that_takes_vms():
    hosts = pool(8)
    jobs = [hosts.place_job(JOB, owner=f"j{i}") for i in range(4)]
    with pytest.raises(NoRoom) as busy:
        hosts.place_cvm(CVM, owner="c", job_vm=JOB, reserve_vms=1)
    assert busy.value.shortfall == 0 and "running jobs" in str(busy.value)
    for job in jobs:
        hosts.release(job)
    hosts["h1"].draining = True
    with pytest.raises(NoRoom, match="host h1 is being drained"):
        hosts.place_cvm(CVM, owner="c", job_vm=JOB, reserve_vms=1)


def test_gpu_jobs_on_two_hosts_with_two_gpus_each_never_share_a_slot():
    hosts = pool(64, 64, gpus=2)
    for host in hosts:
        host.quota.set_gpus(["18:00.0", "2a:00.0"], busy=[])
    gpu_job = Resources(vcpu=2, memory_mb=2048, disk_mb=10240, gpu=1)
    held = [hosts.place_job(gpu_job, owner=f"g{i}") for i in range(4)]
    slots = [(allocation.host, allocation.gpu_slots) for allocation in held]
    assert sorted(slots) == [
        ("h1", ("18:00.0",)),
        ("h1", ("2a:00.0",)),
        ("h2", ("18:00.0",)),
        ("h2", ("2a:00.0",)),
    ]
    with pytest.raises(CapacityError):
        hosts.place_job(gpu_job, owner="g5")
    hosts.release(held[0])
    again = hosts.place_job(gpu_job, owner="g6")
    assert (again.host, again.gpu_slots) == (held[0].host, held[0].gpu_slots)


def test_gpu_slots_busy_elsewhere_or_unlisted_are_never_handed_out():
    hosts = pool(64, gpus=2)
    quota = hosts["h1"].quota
    gpu_job = Resources(vcpu=1, gpu=1)
    assert not quota.check_capacity(gpu_job)  # not listed yet
    with pytest.raises(CapacityError, match="not listed yet"):
        quota.allocate(gpu_job, owner="g")
    quota.set_gpus(["18:00.0", "2a:00.0"], busy=["18:00.0"])  # another VM holds 18:00.0
    assert quota.allocate(gpu_job, owner="g").gpu_slots == ("2a:00.0",)
    assert not quota.check_capacity(gpu_job)
    quota.limit_gpus(1)
    assert quota.total.gpu == 1
    # Adoption takes the slots the VM was created with, unless we hold them already.
    adopted = quota.allocate(Resources(vcpu=1), owner="cvm", gpu_slots=("18:00.0",))
    assert adopted.gpu_slots == ("18:00.0",)
    with pytest.raises(CapacityError, match="already held"):
        quota.allocate(Resources(vcpu=1), owner="twice", gpu_slots=("18:00.0",))


def test_5000_random_steps_over_three_hosts_never_drift():
    rng = random.Random(11)
    hosts = pool(16, 24, 32, placement="spread", ports=12)
    live = []
    seen: set[str] = set()
    for step in range(5000):
        roll = rng.random()
        if roll < 0.02:
            host = hosts[rng.choice(["h1", "h2", "h3"])]
            host.draining = not host.draining
        elif live and roll < 0.5:
            allocation = live.pop(rng.randrange(len(live)))
            assert hosts.release(allocation)
            assert not hosts.release(allocation)
        else:
            kind = rng.choice(["job", "challenge"])
            try:
                if kind == "job":
                    live.append(hosts.place_job(JOB, owner=f"s{step}"))
                else:
                    live.append(hosts.place_cvm(CVM, owner=f"s{step}", job_vm=JOB, reserve_vms=1))
            except CapacityError:
                pass
        for host in hosts:
            mine = [a for a in live if a.host == host.name]
            usage = host.quota.get_usage()
            expected = Resources()
            for allocation in mine:
                expected += allocation.resources
            assert usage.used == expected
            assert usage.ports_used == usage.allocations == len(mine)
            assert usage.used.fits_in(usage.total)
            assert len({a.port for a in mine}) == len(mine)
        total = hosts.get_usage()
        assert total.allocations == len(live)
        seen.update(a.host for a in live)
    assert seen == {"h1", "h2", "h3"}
    for allocation in live:
        hosts.release(allocation)
    assert hosts.get_usage().used == Resources() and hosts.get_usage().ports_used == 0
