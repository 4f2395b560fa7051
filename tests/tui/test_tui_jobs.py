"""End-to-end Pilot flows of the jobs (claim, cancel, auto-claim, stop from the quit dialog)
against the real engine and the loopback simulators; the rest of the console is tested on a
FakeEngine (tests/tui/test_console_*.py)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.console import screen_text
from tests.support.identities import ALICE
from tests.support.tui import (
    enabled_actions,
    footer_actions,
    running_app,
    select_row,
    sim_job_ids,
    wait_until,
)
from validator_tui.control import ConsoleExit
from validator_tui.shared.records import JobState
from validator_tui.tui.screens.confirm import ConfirmScreen
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


async def test_a_cancel_question_closes_when_the_job_ends_meanwhile_and_its_vm_keys_refuse(
    tmp_path: Path,
) -> None:
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
        r.env.platform.cancel_job(job_id)
        await wait_until(pilot, lambda: app.screen is app.main, "the question closed itself")
        stale = f"Cancel job: not done: job {job_id[:8]} cancelled meanwhile: nothing to cancel"
        await wait_until(  # a toast is a message: it is shown a moment after the dialog closes
            pilot,
            lambda: stale in [f"{n.title}: {n.message}" for n in app._notifications],
            "the toast saying why",
        )
        assert app.main.feed.jobs[job_id].state is JobState.CANCELLED

        vm_id = app.main.feed.jobs[job_id].vm_id
        assert vm_id is not None
        await wait_until(pilot, lambda: vm_id not in app.main.vms, "its VM gone")
        for key, title in (("D", "Remove VM"), ("s", "Start VM"), ("S", "Stop VM")):
            await pilot.press(key)
            assert app.screen is app.main
            refusal = (
                f"{title}: not done: job {job_id[:8]} is cancelled: its VM was removed when "
                "the job finished"
            )
            await wait_until(
                pilot,
                lambda refusal=refusal: (
                    refusal in [f"{n.title}: {n.message}" for n in app._notifications]
                ),
                f"{key} refused with the reason",
            )
        assert job_id not in r.env.platform.results()


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


async def test_stop_from_the_quit_dialog_stops_the_real_engine(tmp_path: Path) -> None:
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
        assert isinstance(app.screen, QuitScreen) and app.screen.running == 1
        await pilot.press("escape")
        assert app.is_running and not isinstance(app.screen, QuitScreen)
        await pilot.press("q")
        app.simulate_key("s")
        await wait_until(pilot, lambda: app.return_value is ConsoleExit.STOP, "console closing")
        await r.engine.wait_stopped()
        (result,) = r.env.platform.results()[job_id]
        assert result["error"] == "validator shutting down"
        assert result["score"] == 0


async def test_pending_jobs_say_why_they_wait_in_the_feed_and_their_details(
    tmp_path: Path,
) -> None:
    async with running_app(tmp_path, pending=2) as r:
        app, pilot = r.app, r.pilot
        target = sim_job_ids(r.env)[0]
        await wait_until(
            pilot,
            lambda: app.main.feed.cell(target, "reason").plain == "auto-claim off",
            "the Reason column says auto-claim off",
        )
        select_row(app.main.feed, target)
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: re.search(r"waiting\s+auto-claim off", screen_text(app)) is not None,
            "the job's details say why it waits",
        )
