"""Pilot tests of the CVM, ORM, read-only, help, palette and VM console flows, against the
real engine and the loopback simulators."""

from __future__ import annotations

from pathlib import Path

from textual.command import CommandList
from textual.widgets import DataTable, Input, Select, Static, TextArea

from tests.support.tui import (
    running_app,
    select_row,
    sim_job_ids,
    wait_until,
)
from validator_tui.engine.records import ChallengeState, JobState
from validator_tui.tui.screens.confirm import ConfirmScreen
from validator_tui.tui.screens.help import HelpScreen
from validator_tui.tui.screens.orm import OrmScreen
from validator_tui.tui.widgets.status_bar import StatusBar


async def test_rebuild_challenge_after_confirm(tmp_path: Path) -> None:
    async with running_app(tmp_path) as r:
        app, pilot = r.app, r.pilot
        table = app.main.challenge_table
        table.focus()
        challenge_id = table.row_keys()[0]
        select_row(table, challenge_id)
        old_vm = table.challenges[challenge_id].vm_id
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: (
                table.challenges[challenge_id].vm_id not in (None, old_vm)
                and table.challenges[challenge_id].state is ChallengeState.ACTIVE
            ),
            "rebuilt CVM active",
        )
        await wait_until(
            pilot, lambda: old_vm not in {vm["id"] for vm in r.env.vmm.vms()}, "old CVM removed"
        )


async def test_stop_start_and_remove_challenge_vm(tmp_path: Path) -> None:
    async with running_app(tmp_path) as r:
        app, pilot = r.app, r.pilot
        table = app.main.challenge_table
        table.focus()
        challenge_id = table.row_keys()[0]
        select_row(table, challenge_id)
        vm_id = table.challenges[challenge_id].vm_id
        assert vm_id is not None
        await pilot.pause()
        assert app.main.why_not("start_vm") is not None
        assert app.main.why_not("stop_vm") is None

        def sim_status() -> str:
            return next(vm["status"] for vm in r.env.vmm.vms() if vm["id"] == vm_id)

        await pilot.press("S")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: sim_status() == "stopped", "VM stopped in the VMM")
        await wait_until(pilot, lambda: app.main.vm_status(vm_id) == "stopped", "stopped in the UI")
        assert app.main.why_not("start_vm") is None

        await pilot.press("s")
        await wait_until(pilot, lambda: sim_status() == "running", "VM running again")

        await pilot.press("D")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(
            pilot, lambda: vm_id not in {vm["id"] for vm in r.env.vmm.vms()}, "VM removed"
        )
        await wait_until(
            pilot,
            lambda: (
                table.challenges[challenge_id].vm_id not in (None, vm_id)
                and table.challenges[challenge_id].state is ChallengeState.ACTIVE
            ),
            "challenge re-provisioned",
            timeout=15.0,
        )


async def test_orm_query_rows_and_refused_write(tmp_path: Path) -> None:
    async with running_app(tmp_path, pending=2) as r:
        app, pilot = r.app, r.pilot
        await pilot.press("o")
        assert isinstance(app.screen, OrmScreen)
        screen = app.screen
        assert isinstance(screen.query_one("#orm-challenge", Select).value, str)
        challenge_id = screen.query_one("#orm-challenge", Select).value
        submissions = {
            job["submission_id"]
            for job in r.env.platform.jobs()
            if job["challenge_id"] == challenge_id
        }
        sql = screen.query_one("#orm-sql", TextArea)
        sql.text = "SELECT id FROM submissions WHERE id != ? ORDER BY id"
        screen.query_one("#orm-params", Input).value = '["none"]'
        await pilot.press("ctrl+r")
        results = screen.query_one("#orm-results", DataTable)
        await wait_until(pilot, lambda: results.row_count == len(submissions), "rows shown")
        shown = {results.get_row_at(i)[0].plain for i in range(results.row_count)}
        assert shown == submissions

        sql.text = "DELETE FROM submissions"
        await pilot.press("ctrl+r")
        status = screen.query_one("#orm-status", Static)
        await wait_until(pilot, lambda: "refused" in status.render().plain, "write refused")
        assert results.row_count == 0  # a refused query clears the previous results

        screen.query_one("#orm-params", Input).value = "{not json"
        await pilot.press("ctrl+r")
        assert "not valid JSON" in status.render().plain
        await pilot.press("escape")
        assert not isinstance(app.screen, OrmScreen)


async def test_read_only_hides_and_refuses_every_command(tmp_path: Path) -> None:
    async with running_app(tmp_path, pending=2, read_only=True) as r:
        app, pilot = r.app, r.pilot
        commands = {"claim_job", "cancel_job", "rebuild_challenge", "start_vm", "stop_vm"}
        commands |= {"remove_vm", "toggle_auto_claim", "orm_query"}
        for name in commands:
            assert "read-only" in (app.main.why_not(name) or "")
        shown = {b.binding.action.removeprefix("app.") for b in app.screen.active_bindings.values()}
        assert not shown & commands
        job_id = sim_job_ids(r.env)[0]
        select_row(app.main.feed, job_id)
        await pilot.press("c", "a", "o")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, OrmScreen)
        assert app.main.feed.jobs[job_id].state is JobState.PENDING
        assert r.env.platform.job(job_id)["claimed_by"] is None
        assert not app.main.header.auto_claim
        refused = await r.engine.claim(job_id)
        assert not refused.ok and "read-only" in refused.message
        assert "READ-ONLY" in " ".join(app.main.query_one("#status", StatusBar).texts)


async def test_help_and_palette(tmp_path: Path) -> None:
    async with running_app(tmp_path, pending=1) as r:
        app, pilot = r.app, r.pilot
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"auto-claim")
        hits = app.screen.query_one(CommandList)
        await wait_until(pilot, lambda: hits.option_count > 0, "palette hits")
        assert "auto-claim" in str(hits.get_option_at_index(0).prompt).lower()
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.main.header.auto_claim, "auto-claim on by palette")


async def test_vm_console_follows_selection(tmp_path: Path) -> None:
    async with running_app(tmp_path, pending=1) as r:
        app, pilot = r.app, r.pilot
        r.env.vmm.set_evaluator(latency_s=30.0)
        job_id = sim_job_ids(r.env)[0]
        select_row(app.main.feed, job_id)
        await pilot.press("c")
        await wait_until(
            pilot, lambda: app.main.feed.jobs[job_id].state is JobState.RUNNING, "job running"
        )
        console = app.main.vm_console
        vm_id = app.main.feed.jobs[job_id].vm_id
        await wait_until(pilot, lambda: console.vm_id == vm_id, "console on the job's VM")
        await wait_until(pilot, lambda: any("boot" in line for line in console.lines), "boot log")
        assert all("\x1b" not in line for line in console.lines)
        await pilot.press("f")
        assert console.paused
        await pilot.press("f", "w")
        assert not console.paused and console.wrap

        app.main.challenge_table.focus()
        challenge = app.main.challenge_table.selected_challenge
        assert challenge is not None
        await wait_until(pilot, lambda: console.vm_id == challenge.vm_id, "console switched")
