"""Resources in one shape (arithmetic, fits, human units), the one error-result constructor,
the stored states, VM status records and challenge state history."""

from validator_tui.config import ResourceLimits, VmSpec
from validator_tui.engine.state import EngineState
from validator_tui.engine.store import IN_FLIGHT, Store, StoredState
from validator_tui.models.platform import JobResults
from validator_tui.models.resources import Resources
from validator_tui.shared.records import ChallengeRecord, ChallengeState, VmKind, VmRecord


def test_resources_arithmetic_and_fit():
    a = Resources(4, 4096, 51200, 1)
    b = Resources(2, 1024, 10240, 0)
    assert a + b == Resources(6, 5120, 61440, 1)
    assert a - b == Resources(2, 3072, 40960, 1)
    assert b.times(3) == Resources(6, 3072, 30720, 0)
    assert b.fits_in(a) and not a.fits_in(b)
    assert Resources(4, 4096, 51200, 2).fits_in(a) is False


def test_resources_read_in_human_units():
    assert str(Resources(4, 4096, 51200)) == "4 vCPU, 4 GB RAM, 50 GB disk"
    assert str(Resources(1, 512, 1536, 2)) == "1 vCPU, 512 MB RAM, 1.5 GB disk, 2 GPU"
    need = Resources(4, 4096, 51200)
    assert need.shortfall(Resources(0, 8192, 102400)) == "needs 4 vCPU, 0 free"
    assert need.shortfall(Resources(8, 2048, 1000)) == (
        "needs 4 GB RAM, 2 GB free; needs 50 GB disk, 1000 MB free"
    )
    assert need.shortfall(Resources(-2, 4096, 51200)) == "needs 4 vCPU, 0 free"
    assert need.shortfall(need) == ""


def test_vm_specs_and_limits_give_resources():
    assert VmSpec(vcpu=2, memory_mb=2048, disk_gb=20).resources == Resources(2, 2048, 20480)
    limits = ResourceLimits(cpu_cores=16, memory_mb=32768, disk_mb=512000, gpu_count=1)
    assert limits.total == Resources(16, 32768, 512000, 1)


def test_one_error_result_constructor():
    failure = JobResults.failure("job timed out after 60s", 60_000)
    assert failure.score == 0.0 and failure.error == "job timed out after 60s"
    assert failure.logs == ["[validator] job timed out after 60s"]
    assert failure.metrics == {} and failure.execution_time_ms == 60_000
    assert JobResults.failure("x", -5, ["a", "b"]).logs == ["a", "b"]
    assert JobResults.failure("x", -5).execution_time_ms == 0
    assert failure.to_json_bytes().startswith(b'{"score":0.0,')


def test_stored_states_round_trip(tmp_path):
    store = Store(tmp_path / "state.sqlite3")
    for state in StoredState:
        store.upsert_job(f"job-{state}", "c", state)
    in_flight = store.in_flight_jobs()
    assert {job.state for job in in_flight} == set(IN_FLIGHT)
    assert all(isinstance(job.state, StoredState) for job in in_flight)
    store.close()


def test_set_vm_status_publishes_only_changes():
    state = EngineState("hk")
    assert state.set_vm_status("nope", "running", "done") is None
    state.put_vm(VmRecord("vm-1", "n", VmKind.JOB, "job-1"))
    version = state.version
    record = state.set_vm_status("vm-1", "running", "booting")
    assert record is not None and state.version == version + 1
    state.set_vm_status("vm-1", "running", "booting")
    assert state.version == version + 1
    state.set_vm_status("vm-1", "exited", "booting", "kernel panic")
    assert (record.status, record.boot_error) == ("exited", "kernel panic")
    state.set_vm_status("vm-1", "running", "done")
    assert record.boot_error == "kernel panic"


def test_challenge_history_is_bounded_and_keeps_the_last_error():
    record = ChallengeRecord("c", "name")
    record.enter(ChallengeState.FETCHING)
    record.enter(ChallengeState.FETCHING)
    record.enter(ChallengeState.FAILED, "boot timed out")
    record.enter(ChallengeState.ACTIVE, "")
    assert [entry.text for entry in record.history] == [
        "fetching",
        "failed: boot timed out",
        "active",
    ]
    assert record.last_error == "boot timed out" and record.reason == ""
    for index in range(100):
        record.enter(ChallengeState.PENDING, f"waiting {index}")
    assert len(record.history) == 50 and record.history[-1].text == "pending: waiting 99"
