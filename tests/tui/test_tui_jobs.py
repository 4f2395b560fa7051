"""Pilot tests of the job flows (claim, cancel, auto-claim, filter, sort, details, quit),
against the real engine and the loopback simulators."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Static

from tests.support.identities import ALICE
from tests.support.tui import (
    enabled_actions,
    footer_actions,
    plain_text,
    running_app,
    select_row,
    sim_job_ids,
    wait_until,
)
from validator_tui.engine.records import JobState
from validator_tui.tui.screens.confirm import ConfirmScreen
from validator_tui.tui.screens.job_details import JobDetailsScreen
from validator_tui.tui.screens.quit import QuitScreen
from validator_tui.tui.widgets.status_bar import StatusBar


async def test_claim_selected_pending_job_with_auto_claim_off(tmp_path: Path) -> None:
    async with running_app(tmp_path, pending=3) as r:
        app, pilot = r.app, r.pilot
        target = sim_job_ids(r.env)[1]
        select_row(app.main.feed, target)
        await pilot.pause()
        assert "claim_job" in footer_actions(app)
        await pilot.press("c")
        await wait_until(
            pilot, lambda: app.main.feed.jobs[target].state is JobState.COMPLETED, "job completed"
        )
        assert r.env.platform.job(target)["claimed_by"] == ALICE
        await wait_until(pilot, lambda: target in r.env.platform.results(), "result accepted")
        others = [j for j in sim_job_ids(r.env) if j != target]
        assert all(app.main.feed.jobs[j].state is JobState.PENDING for j in others)
        assert app.main.feed.cell(target, "state").plain == "✓ completed"
        assert await r.state(lambda s: s.header.counters.completed) == 1
        await wait_until(pilot, lambda: "claim_job" not in enabled_actions(app), "claim greyed")


async def test_cancel_running_job_asks_first(tmp_path: Path) -> None:
    async with running_app(tmp_path, pending=1) as r:
        app, pilot = r.app, r.pilot
        r.env.vmm.set_evaluator(latency_s=30.0)
        job_id = sim_job_ids(r.env)[0]
        select_row(app.main.feed, job_id)
        await pilot.press("c")
        await wait_until(
            pilot, lambda: app.main.feed.jobs[job_id].state is JobState.RUNNING, "job running"
        )
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.pause(0.2)
        assert app.main.feed.jobs[job_id].state is JobState.RUNNING

        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(
            pilot, lambda: app.main.feed.jobs[job_id].state.finished, "job finished after cancel"
        )
        await wait_until(pilot, lambda: job_id in r.env.platform.results(), "error result sent")
        (result,) = r.env.platform.results()[job_id]
        assert result["error"] == "cancelled by operator"
        assert result["score"] == 0
        vm_id = app.main.feed.jobs[job_id].vm_id
        assert vm_id is not None
        await wait_until(
            pilot, lambda: vm_id not in {vm["id"] for vm in r.env.vmm.vms()}, "job VM removed"
        )


async def test_auto_claim_toggle_claims_waiting_jobs(tmp_path: Path) -> None:
    async with running_app(tmp_path, pending=2) as r:
        app, pilot = r.app, r.pilot
        assert "auto-claim OFF" in " ".join(app.main.query_one("#status", StatusBar).texts)
        await pilot.press("a")
        await wait_until(pilot, lambda: app.main.header.auto_claim, "auto-claim on in the header")
        assert await r.state(lambda s: s.header.auto_claim) is True
        await wait_until(
            pilot,
            lambda: all(job.state is JobState.COMPLETED for job in app.main.feed.jobs.values()),
            "both jobs completed",
        )
        assert set(r.env.platform.results()) == set(sim_job_ids(r.env))
        await pilot.press("a")
        await wait_until(pilot, lambda: not app.main.header.auto_claim, "auto-claim off again")
        (new_job,) = [job["id"] for job in r.env.platform.add_jobs(1)]
        await wait_until(pilot, lambda: new_job in app.main.feed.jobs, "new job listed")
        await pilot.pause(0.3)
        assert app.main.feed.jobs[new_job].state is JobState.PENDING
        assert "auto-claim OFF" in " ".join(app.main.query_one("#status", StatusBar).texts)


async def test_filter_and_sort_job_feed(tmp_path: Path) -> None:
    async with running_app(tmp_path, pending=6) as r:
        app, pilot = r.app, r.pilot
        feed = app.main.feed
        challenges = app.main.challenge_table.challenges
        name = challenges[next(iter(challenges))].name
        expected = {
            job.id
            for job in feed.jobs.values()
            if app.main.challenge_table.names()[job.challenge_id] == name
        }
        assert 0 < len(expected) < 6
        await pilot.press("slash")
        assert app.focused is app.main.query_one("#filter", Input)
        await pilot.press(*name)
        assert set(feed.row_keys()) == expected
        assert feed.filter_text == name
        await pilot.press("enter")
        assert app.focused is feed
        await pilot.press("escape")
        assert len(feed.row_keys()) == 6
        assert feed.filter_text == ""

        newest_first = sorted(feed.jobs.values(), key=lambda j: (j.created_at, j.id), reverse=True)
        assert feed.row_keys() == [job.id for job in newest_first]
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert feed.sort_key == "challenge"
        names = [feed.cell(key, "challenge").plain for key in feed.row_keys()]
        assert names == sorted(names, reverse=True)
        await pilot.press("exclamation_mark")
        names = [feed.cell(key, "challenge").plain for key in feed.row_keys()]
        assert names == sorted(names)


async def test_job_details_screen_is_sanitised(tmp_path: Path) -> None:
    async with running_app(tmp_path, pending=0) as r:
        app, pilot = r.app, r.pilot
        evil = "[bold red]EVIL[/]\x1b[2J\x1b]0;owned\x07"
        (job,) = [r.env.platform.add_job(miner_hotkey=evil)]
        await wait_until(
            pilot,
            lambda: job["id"] in app.main.feed.jobs and app.main.feed.jobs[job["id"]].miner_hotkey,
            "job listed",
        )
        select_row(app.main.feed, job["id"])
        await pilot.press("c")
        await wait_until(
            pilot, lambda: app.main.feed.jobs[job["id"]].state is JobState.COMPLETED, "job done"
        )
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailsScreen)
        await pilot.pause()
        text = plain_text(app.screen.query_one("#details-body", Static).content)
        assert job["id"] in text
        assert "[bold red]EVIL[/]" in text
        assert "\x1b" not in text
        assert "claimed" in text
        score = app.main.feed.jobs[job["id"]].score
        assert score is not None and f"{score:.3f}" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, JobDetailsScreen)


async def test_quit_with_running_jobs_confirms_then_stops_engine(tmp_path: Path) -> None:
    async with running_app(tmp_path, pending=1) as r:
        app, pilot = r.app, r.pilot
        r.env.vmm.set_evaluator(latency_s=30.0)
        job_id = sim_job_ids(r.env)[0]
        select_row(app.main.feed, job_id)
        await pilot.press("c")
        await wait_until(
            pilot, lambda: app.main.feed.jobs[job_id].state is JobState.RUNNING, "job running"
        )
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("n")
        assert app.is_running and not isinstance(app.screen, QuitScreen)
        await pilot.press("q")
        await pilot.press("s")
        await wait_until(pilot, lambda: not app.is_running, "app exited", timeout=20.0)
        (result,) = r.env.platform.results()[job_id]
        assert result["error"]
        assert result["score"] == 0
