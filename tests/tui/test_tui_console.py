"""End-to-end Pilot flows of the challenge CVMs (stop, start, remove) and the ORM screen
against the real engine and the loopback simulators; the rest of the console is tested on a
FakeEngine (tests/tui/test_console_*.py)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input, Select, Static, TextArea

from tests.support.tui import (
    running_app,
    select_row,
    sim_job_ids,
    wait_until,
)
from validator_tui.shared.records import ChallengeState
from validator_tui.tui.screens.confirm import ConfirmScreen
from validator_tui.tui.screens.orm import OrmScreen
from validator_tui.tui.screens.outbox import OutboxScreen


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
        assert "only a stopped VM can be started" in (app.main.why_not("start_vm") or "")
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
        refusal = "✗ query refused: must start with SELECT or WITH, not 'DELETE'"
        assert status.render().plain == refusal
        assert status.render().plain.count("refused") == 1
        assert results.row_count == 0

        screen.query_one("#orm-params", Input).value = "{not json"
        await pilot.press("ctrl+r")
        assert "not valid JSON" in status.render().plain
        await pilot.press("escape")
        assert not isinstance(app.screen, OrmScreen)


async def test_outbox_shows_a_dead_letter_and_sends_it_again(tmp_path: Path) -> None:
    async with running_app(tmp_path, pending=1) as r:
        app, pilot = r.app, r.pilot
        (job_id,) = sim_job_ids(r.env)
        r.env.platform.inject_fault(
            status=400,
            path_prefix=f"/jobs/{job_id}/results",
            body='{"error": "score out of range"}',
        )
        select_row(app.main.feed, job_id)
        await pilot.press("c")
        await wait_until(pilot, lambda: app.main.header.counters.dead_letters == 1, "dead letter")
        await pilot.press("u")
        assert isinstance(app.screen, OutboxScreen)
        table = app.screen.query_one("#outbox-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, "outbox listed")
        row = [cell.plain for cell in table.get_row_at(0)]
        assert row[0] == job_id[:8] and row[1] == "‼ dead letter"
        assert row[4].endswith("HTTP 400: score out of range"), row[4]
        await pilot.press("r")
        await wait_until(pilot, lambda: job_id in r.env.platform.results(), "sent again")
        await wait_until(
            pilot,
            lambda: table.row_count == 1 and table.get_row_at(0)[1].plain == "✓ accepted",
            "shown accepted",
        )
        await wait_until(pilot, lambda: app.main.header.counters.dead_letters == 0, "counter")
