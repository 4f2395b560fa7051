"""Hostile miner hotkeys and challenge names show as inert characters on screen."""

from __future__ import annotations

from tests.support.hostile import HOSTILE
from tests.support.tui import running_app, wait_until


async def test_tui_shows_hostile_text_as_inert_characters(tmp_path):
    async with running_app(tmp_path, size=(120, 36)) as run:
        env, app, pilot = run.env, run.app, run.pilot
        jobs = [env.platform.add_job(miner_hotkey=HOSTILE) for _ in range(2)]
        env.platform.add_challenge(name=HOSTILE)
        await wait_until(pilot, lambda: app.feed.row_count == 2, "hostile jobs listed")
        await app.validator.check_challenge_updates()
        challenges = app.validator.state.challenges
        await wait_until(pilot, lambda: len(challenges) == 4, "hostile challenge listed")
        hostile = next(c for c in challenges.values() if c.name == HOSTILE)
        await wait_until(pilot, lambda: hostile.state.value == "failed", "hostile challenge failed")
        assert "not a usable URL" in hostile.reason
        await pilot.pause(0.5)
        screenshot = app.export_screenshot()
        assert app.size == (120, 36)
        assert {job["id"] for job in jobs} <= set(app.feed.jobs)
        for payload in ("pwned", "cm0gLXJmIH4", "c1-title", "\x1b", "\x07", "\x00"):
            assert payload not in screenshot
        assert 'href="https://evil.example' not in screenshot
