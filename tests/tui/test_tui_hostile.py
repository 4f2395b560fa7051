"""Hostile miner hotkeys and challenge names show as inert characters on screen."""

from __future__ import annotations

from tests.support.hostile import HOSTILE
from tests.support.tui import running_app, wait_until
from validator_tui.control import ChallengeRecord


async def test_tui_shows_hostile_text_as_inert_characters(tmp_path):
    async with running_app(tmp_path, size=(120, 36)) as run:
        env, app, pilot = run.env, run.app, run.pilot
        jobs = [env.platform.add_job(miner_hotkey=HOSTILE) for _ in range(2)]
        env.platform.add_challenge(name=HOSTILE)
        await wait_until(pilot, lambda: app.main.feed.row_count == 2, "hostile jobs listed")
        await run.engine.call(run.engine.validator.check_challenge_updates)

        def hostile_challenge() -> ChallengeRecord | None:
            return next(
                (c for c in app.main.challenge_table.challenges.values() if c.name == HOSTILE), None
            )

        await wait_until(
            pilot,
            lambda: (c := hostile_challenge()) is not None and c.state.value == "failed",
            "hostile challenge listed and failed",
        )
        hostile = hostile_challenge()
        assert hostile is not None and "not a usable URL" in hostile.reason
        await pilot.pause(0.5)
        screenshot = app.export_screenshot()
        assert app.size == (120, 36)
        assert {job["id"] for job in jobs} <= set(app.main.feed.jobs)
        for payload in ("pwned", "cm0gLXJmIH4", "c1-title", "\x1b", "\x07", "\x00"):
            assert payload not in screenshot
        assert 'href="https://evil.example' not in screenshot
