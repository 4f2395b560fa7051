"""Several dstack hosts in the console (FakeEngine): the Hosts panel with each host's state,
gauges and VM count; a host column in the job feed and the CVM table; drain/undrain keys that
ask first and act on the right host. With one host none of it shows."""

from __future__ import annotations

from tests.support.console import fake_console, open_dialog, select
from tests.support.fake_engine import FakeEngine, demo_state, with_hosts
from validator_tui.control import HostState, JobState


async def test_hosts_panel_and_host_columns_show_only_with_several_hosts() -> None:
    async with fake_console(demo_state(FakeEngine())) as console:
        main = console.app.main
        assert not main.host_table.display
        assert "host" in main.feed.hidden and "Host" not in console.text()
    engine = with_hosts(demo_state(FakeEngine()))
    async with fake_console(engine) as console:
        main = console.app.main
        assert main.host_table.display
        rows = {key: main.host_table.get_row(key) for key in main.host_table.row_keys()}
        assert [cell.plain for cell in rows["tdx-b"][:2]] == ["tdx-b", "✗ down 1m"]
        assert rows["tdx-c"][1].plain == "◐ draining"
        assert rows["tdx-a"][2].plain.endswith("10/16") and rows["tdx-a"][5].plain == "5"
        running = next(j for j in engine.state.jobs.values() if j.state is JobState.RUNNING)
        assert main.feed.cell(running.id, "host").plain == running.host
        assert main.challenge_table.cell("chal-1", "host").plain == "tdx-a"
        assert str(main.host_table.border_title) == "Hosts (3) · 1 down · 1 draining"
        assert " Host " in console.text()
        # A host coming back is shown at the next feed.
        engine.add_host("tdx-b", HostState.UP)
        await console.sync()
        assert main.host_table.get_row("tdx-b")[1].plain == "● up"


async def test_drain_asks_first_then_drains_the_host_under_the_cursor() -> None:
    engine = with_hosts(demo_state(FakeEngine()))
    async with fake_console(engine) as console:
        await select(console, "hosts", "tdx-a")
        text, buttons = await open_dialog(console, "h")
        assert "Drain host tdx-a?" in text
        assert "challenge CVM(s) move to other hosts" not in text  # no other host is up
        assert "none does now" in text and "running job(s) finish there" in text
        assert buttons == ["Drain host (y)", "Keep it (n · esc)"]
        await console.pilot.press("n")
        assert engine.sent("drain_host") == []
        await open_dialog(console, "h")
        await console.pilot.press("y")
        await console.until(lambda: engine.sent("drain_host") == [("tdx-a",)], "drain sent")


async def test_drain_and_undrain_say_why_not_and_undrain_asks_first() -> None:
    engine = with_hosts(demo_state(FakeEngine()))
    async with fake_console(engine) as console:
        await select(console, "hosts", "tdx-c")
        await console.pilot.press("h")
        await console.until(
            lambda: any("already being drained" in toast for toast in console.toasts()),
            "refusal toast",
        )
        assert engine.sent("drain_host") == []
        text, _ = await open_dialog(console, "H")
        assert "Return host tdx-c to the pool?" in text
        await console.pilot.press("y")
        await console.until(lambda: engine.sent("undrain_host") == [("tdx-c",)], "undrain sent")
        await select(console, "hosts", "tdx-a")
        await console.pilot.press("H")
        await console.until(
            lambda: any("only a drained or draining host" in t for t in console.toasts()),
            "undrain refused",
        )


async def test_drain_from_a_job_acts_on_its_host() -> None:
    engine = with_hosts(demo_state(FakeEngine()))
    job = next(j for j in engine.state.jobs.values() if j.host == "tdx-a" and j.state.active)
    async with fake_console(engine) as console:
        await select(console, "jobs", job.id)
        text, _ = await open_dialog(console, "h")
        assert "Drain host tdx-a?" in text
        await console.pilot.press("y")
        await console.until(lambda: engine.sent("drain_host") == [("tdx-a",)], "drain sent")
