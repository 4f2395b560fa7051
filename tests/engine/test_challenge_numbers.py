"""Per-challenge numbers through the real engine: each finished job updates its challenge's
last-hour numbers, which travel in the challenge's record (and so over the control socket)."""

from __future__ import annotations

from tests.support.engine import FAST, running, wait_for
from validator_tui.control.frames import decode_server, state_frames
from validator_tui.demo import DemoEnvironment


async def test_finished_jobs_update_their_challenges_numbers():
    async with DemoEnvironment(seed=9, jobs_per_minute=0, boot_seconds=0, engine=FAST) as env:
        async with running(env.config) as validator:
            challenge_id = next(iter(validator.state.challenges))
            jobs = [
                env.platform.add_job(challenge_id=challenge_id),
                env.platform.add_job(challenge_id=challenge_id),
                env.platform.add_job(challenge_id=challenge_id, code="#sim:status=500"),
            ]

            def finished() -> bool:
                records = [validator.state.jobs.get(job["id"]) for job in jobs]
                return all(r is not None and r.state.finished for r in records)

            await wait_for(finished, 15, "three jobs finished")
            stats = validator.state.challenges[challenge_id].stats
            assert (stats.completed, stats.failed) == (2, 1)
            scores = [validator.state.jobs[job["id"]].score for job in jobs[:2]]
            assert stats.mean_score == sum(scores) / 2
            assert stats.p50_ms is not None and stats.p95_ms is not None
            (frame,) = state_frames(validator.state.changes_since(0, 0), snapshot=True)
            decoded = decode_server(frame)
            sent = {c.id: c for c in decoded.challenges or []}
            assert sent[challenge_id].stats == stats
