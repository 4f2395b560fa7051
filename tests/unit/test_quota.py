"""CVMQuotaManager: exact accounting, ports, release exactly once."""

import random

import pytest

from validator_tui.config import HostPorts, ResourceLimits
from validator_tui.engine.quota import CapacityError, CVMQuotaManager
from validator_tui.shared.records import Resources

JOB = Resources(vcpu=4, memory_mb=4096, disk_mb=51200, gpu=0)


def make(cpu=16, ports=(20000, 20009)):
    return CVMQuotaManager(
        ResourceLimits(cpu_cores=cpu, memory_mb=65536, disk_mb=10_000_000, gpu_count=1),
        HostPorts(start=ports[0], end=ports[1]),
    )


def test_allocate_until_full_then_refuse():
    quota = make(cpu=16)
    allocations = [quota.allocate(JOB, owner=f"j{i}") for i in range(4)]
    assert not quota.check_capacity(JOB)
    with pytest.raises(CapacityError):
        quota.allocate(JOB, owner="too-many")
    usage = quota.get_usage()
    assert usage.used.vcpu == 16 and usage.ports_used == 4 and usage.allocations == 4
    assert len({a.port for a in allocations}) == 4


def test_release_exactly_once():
    quota = make()
    allocation = quota.allocate(JOB, owner="j")
    assert quota.release(allocation) is True
    assert quota.release(allocation) is False
    usage = quota.get_usage()
    assert usage.used == Resources() and usage.ports_used == 0 and usage.allocations == 0


def test_port_pool_exhaustion_and_round_robin():
    quota = make(cpu=1000, ports=(30000, 30002))
    first = [quota.allocate(Resources(vcpu=1), owner=str(i)) for i in range(3)]
    assert sorted(a.port for a in first) == [30000, 30001, 30002]
    with pytest.raises(CapacityError, match="no free host port"):
        quota.allocate(Resources(vcpu=1), owner="x")
    quota.release(first[0])
    again = quota.allocate(Resources(vcpu=1), owner="y")
    assert again.port == 30000


def test_specific_port_for_adoption():
    quota = make()
    allocation = quota.allocate(JOB, owner="cvm", port=20005)
    assert allocation.port == 20005
    with pytest.raises(CapacityError):
        quota.allocate(JOB, owner="other", port=20005)


def test_gpu_accounted():
    quota = make()
    quota.set_gpus(["18:00.0", "2a:00.0"], busy=[])  # gpu_count 1, two GPUs listed
    allocation = quota.allocate(Resources(gpu=1), owner="g", need_port=False)
    assert allocation.gpu_slots == ("18:00.0",)
    assert not quota.check_capacity(Resources(gpu=1), need_port=False)


def test_random_interleaving_never_drifts():
    rng = random.Random(7)
    quota = make(cpu=64, ports=(40000, 40031))
    live = []
    for _ in range(5000):
        if live and rng.random() < 0.5:
            allocation = live.pop(rng.randrange(len(live)))
            assert quota.release(allocation)
            assert not quota.release(allocation)
        elif quota.check_capacity(JOB):
            live.append(quota.allocate(JOB, owner="r"))
        usage = quota.get_usage()
        assert usage.used.vcpu == 4 * len(live)
        assert usage.ports_used == len(live)
    for allocation in live:
        quota.release(allocation)
    assert quota.get_usage().used == Resources()
    assert quota.get_usage().ports_used == 0


def test_used_by_sums_one_kind_and_fits_beside_ignores_the_rest():
    quota = make(cpu=16)
    cvm = quota.allocate(JOB, owner="challenge a", kind="challenge")
    quota.allocate(JOB, owner="job 1")
    quota.allocate(JOB, owner="job 2")
    assert quota.used_by("challenge") == JOB
    assert quota.used_by("job").vcpu == 8
    held = quota.used_by("challenge")
    # 1 CVM + 1 reserved job VM + 1 more CVM fit in 16 vCPU whatever the jobs hold now...
    assert quota.fits_beside(Resources(8, 8192, 102400, 0), JOB)
    # ...and a fourth 4-vCPU share does not.
    assert not quota.fits_beside(Resources(16, 8192, 102400, 0), JOB)
    quota.release(cvm)
    assert quota.used_by("challenge") == Resources()
    assert held == JOB


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_port_set_aside_is_handed_to_no_vm_until_its_time_is_over():
    clock = Clock()
    quota = CVMQuotaManager(
        ResourceLimits(cpu_cores=1000, memory_mb=65536, disk_mb=10_000_000),
        HostPorts(start=30000, end=30002),
        clock=clock,
    )
    quota.set_aside(30000, 60)
    held = quota.allocate(Resources(vcpu=1), owner="a")
    assert held.port == 30001
    quota.set_aside(30001, 60)  # held now: given back to the set-aside ports, not the free ones
    assert quota.release(held)
    assert quota.allocate(Resources(vcpu=1), owner="b").port == 30002
    assert not quota.check_capacity(Resources(vcpu=1))
    assert quota.ports_set_aside == 2
    clock.now += 61
    assert quota.check_capacity(Resources(vcpu=1)) and quota.ports_set_aside == 0
    assert {quota.allocate(Resources(vcpu=1), owner=o).port for o in "cd"} == {30000, 30001}


def test_replace_port_moves_an_allocation_and_its_old_handle_releases_the_new_port():
    quota = make(cpu=1000, ports=(30000, 30003))
    first = quota.allocate(Resources(vcpu=1), owner="job")
    quota.set_aside(first.port, 600)
    moved = quota.replace_port(first)
    assert moved.id == first.id and moved.port == 30001
    assert quota.get_usage().allocations == 1 and quota.get_usage().ports_used == 2
    assert quota.release(first) and not quota.release(moved)
    usage = quota.get_usage()
    assert usage.used == Resources() and usage.allocations == 0
    assert usage.ports_used == 1  # 30000 stays aside; 30001 is free again
    assert quota.allocate(Resources(vcpu=1), owner="next").port == 30002
    quota.set_aside(30003, 600)
    last = quota.allocate(Resources(vcpu=1), owner="last")
    assert last.port == 30001
    with pytest.raises(CapacityError, match="no other free host port"):
        quota.replace_port(last)
