"""The state directory on a real, tiny tmpfs that is read-only or full, at start-up and mid-run.

The tests mount a tmpfs (they need root with CAP_SYS_ADMIN, and skip otherwise): a full disk is
a filler file that takes every free block, a read-only disk is `mount -o remount,ro` (the
kernel refuses that while the database is open for writing, so "read-only" is a start-up case
and "full" both a start-up and a mid-run case). SQLite then fails for real (SQLITE_FULL,
SQLITE_CANTOPEN). Promise under test: a
clear error event, no result lost (kept in memory and sent), claims refused, no crash loop, no
orphan VM, quota exact.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import FAST, challenge_resources, job_vms, running, wait_for
from validator_tui.demo import DemoEnvironment
from validator_tui.shared.records import JobState


def _mount(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["mount", *args], capture_output=True, check=False)


@contextlib.contextmanager
def tmpfs(path: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of `size_kb` KB mounted at `path` for the duration."""
    path.mkdir()
    if _mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)).returncode:
        pytest.skip("mounting a tmpfs needs root with CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def read_only(path: Path) -> None:
    assert _mount("-o", "remount,ro", str(path)).returncode == 0


def fill(path: Path) -> Path:
    """Take every free block of the file system holding `path`; returns the filler file."""
    filler = path / "filler"
    chunk = b"\0" * 4096
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def fill_with_empty_wal(path: Path) -> Path:
    """`fill`, after the state database's WAL is checkpointed and truncated: the engine's next
    write needs new blocks (with WAL space left over from earlier writes, it might not)."""
    db = sqlite3.connect(path / "state.sqlite3")
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        db.close()
    return fill(path)


def store_errors(validator) -> list[str]:
    return [e.message for e in validator.state.events if e.kind == "store" and e.level == "error"]


@pytest.mark.parametrize("trouble", ["read-only", "full"])
async def test_unusable_state_dir_at_start_runs_but_refuses_to_claim(tmp_path, trouble):
    with tmpfs(tmp_path / "state", 256) as state:
        if trouble == "read-only":
            read_only(state)
        else:
            fill(state)
        async with DemoEnvironment(
            seed=21, jobs_per_minute=0, boot_seconds=0, engine=FAST, state_dir=str(state)
        ) as env:
            async with running(env.config) as validator:
                errors = store_errors(validator)
                assert errors and "cannot open state database" in errors[0]
                assert "running without claims" in errors[0]
                job = env.platform.add_job()
                await wait_for(lambda: job["id"] in validator.state.jobs, 5, "job seen")
                outcome = await validator.commands.claim(job["id"])
                assert not outcome.ok and "not writable" in outcome.message
                await validator.jobs.check_challenge_updates()
                assert env.platform.stats["claims_ok"] == 0
                assert env.platform.job(job["id"])["status"] == "pending"
                assert validator.state.jobs[job["id"]].state is JobState.PENDING


async def test_disk_full_mid_run_keeps_every_result(tmp_path):
    with tmpfs(tmp_path / "state", 4096) as state:
        async with DemoEnvironment(
            seed=22, jobs_per_minute=0, boot_seconds=0.1, engine=FAST, state_dir=str(state)
        ) as env:
            env.vmm.set_evaluator(latency_s=0.3)
            async with running(env.config) as validator:
                before = env.platform.add_jobs(3)
                await wait_for(lambda: len(env.platform.results()) == 3, 10, "first results")
                during = env.platform.add_jobs(6)
                await wait_for(
                    lambda: any(j.state is JobState.RUNNING for j in validator.state.jobs.values()),
                    5,
                    "a job evaluating",
                )
                filler = fill_with_empty_wal(state)
                after = env.platform.add_jobs(6)

                def settled() -> bool:
                    active = [j for j in validator.state.jobs.values() if j.state.active]
                    return not active and validator.state.header.counters.outbox_pending == 0

                await wait_for(settled, 15, "every claimed job answered")
                await wait_for(lambda: not job_vms(env), 5, "job VMs removed")
                assert not validator.jobs.claims_allowed
                assert any("claims suspended" in m for m in store_errors(validator))
                results = env.platform.results()
                ours = env.config.validator_hotkey
                claimed = [j for j in env.platform.jobs() if j["claimed_by"] == ours]
                assert {j["id"] for j in before} <= {j["id"] for j in claimed}
                assert {j["id"] for j in claimed} == set(results)
                assert all(len(bodies) == 1 for bodies in results.values())
                unclaimed = [j for j in during + after if j["id"] not in results]
                assert unclaimed, "the disk broke too late to test anything"
                assert all(env.platform.job(j["id"])["status"] == "pending" for j in unclaimed)
                assert validator.ctx.hosts.get_usage().used == challenge_resources()
                assert validator.state.header.counters.running == 0
                filler.unlink()


async def test_disk_full_between_claim_and_vm_creation_still_answers_the_job(tmp_path):
    with tmpfs(tmp_path / "state", 4096) as state:
        async with DemoEnvironment(
            seed=23, jobs_per_minute=0, boot_seconds=0, engine=FAST, state_dir=str(state)
        ) as env:
            async with running(env.config) as validator:
                env.platform.inject_fault(
                    status=0, delay_s=0.5, count=3, path_prefix="/challenges/", method="POST"
                )
                jobs = env.platform.add_jobs(3)
                await wait_for(
                    lambda: all(
                        j["id"] in validator.state.jobs
                        and validator.state.jobs[j["id"]].state is JobState.CLAIMED
                        for j in jobs
                    ),
                    5,
                    "jobs claimed, fetching their code",
                )
                fill(state)
                await wait_for(lambda: len(env.platform.results()) == 3, 10, "3 results")
                await wait_for(lambda: not job_vms(env), 5, "job VMs removed")
                results = env.platform.results()
                assert all(len(bodies) == 1 for bodies in results.values())
                errors = [bodies[0]["error"] or "" for bodies in results.values()]
                assert all("not creating a VM" in e and "disk is full" in e for e in errors)
                assert validator.ctx.hosts.get_usage().used == challenge_resources()
                assert validator.state.header.counters.running == 0
                assert not validator.jobs.claims_allowed


def store_events(validator) -> list[str]:
    return [e.message for e in validator.state.events if e.kind == "store"]


async def test_freed_disk_resumes_claims_by_themselves(tmp_path):
    with tmpfs(tmp_path / "state", 4096) as state:
        async with DemoEnvironment(
            seed=24, jobs_per_minute=0, boot_seconds=0, engine=FAST, state_dir=str(state)
        ) as env:
            async with running(env.config) as validator:
                first = env.platform.add_job()
                await wait_for(lambda: first["id"] in env.platform.results(), 10, "a result")
                filler = fill_with_empty_wal(state)
                jobs = env.platform.add_jobs(4)
                await wait_for(lambda: not validator.jobs.claims_allowed, 10, "claims suspended")
                assert "not writable" in validator.state.header.claims_paused
                assert all(env.platform.job(j["id"])["status"] == "pending" for j in jobs)
                filler.unlink()
                await wait_for(
                    lambda: all(j["id"] in env.platform.results() for j in jobs),
                    20,
                    "every job claimed and answered once the disk has room",
                )
                assert validator.jobs.claims_allowed
                assert validator.state.header.claims_paused == ""
                messages = store_events(validator)
                suspended = [m for m in messages if m.startswith("claims suspended: ")]
                resumed = [m for m in messages if m.startswith("claims resumed: ")]
                assert len(suspended) == 1 and "disk is full" in suspended[0]
                assert len(resumed) == 1 and "takes writes again" in resumed[0]
                assert messages.index(suspended[0]) < messages.index(resumed[0])
                assert all(len(bodies) == 1 for bodies in env.platform.results().values())
