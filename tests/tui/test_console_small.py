"""The console explains itself at any size (FakeEngine): one banner when claims are blocked
as a whole, a single host's drain state in the header (and `h`/`H` acting on it), and at
80x24 every panel reachable with `tab`, `z` zooming the focused one, the event log
searchable and counting what arrived while scrolled up."""

from __future__ import annotations

from tests.support.console import fake_console, job_in, open_dialog, select
from tests.support.fake_engine import FakeEngine, demo_state, with_hosts
from validator_tui.control import Header, HostRecord, HostState, JobState
from validator_tui.tui.widgets.status_bar import claims_banner, render_header

SMALL = (80, 24)


def _host(name: str, state: HostState) -> HostRecord:
    draining = state in (HostState.DRAINING, HostState.DRAINED)
    return HostRecord(id=name, url="http://h", state=state, draining=draining)


def test_banner_says_why_claims_are_blocked_as_a_whole() -> None:
    up = [_host("tdx-a", HostState.UP)]
    assert claims_banner(Header(), up, []) == ""
    assert claims_banner(Header(auto_claim=False), up, ["auto-claim off"]) == (
        "claims blocked: auto-claim off (1 pending job waits)"
    )
    drained = [_host("tdx-a", HostState.DRAINED), _host("tdx-b", HostState.DRAINING)]
    assert claims_banner(Header(), drained, []) == "claims blocked: all hosts drained"
    mixed = [_host("tdx-a", HostState.DRAINED), _host("tdx-b", HostState.DOWN)]
    assert claims_banner(Header(), mixed, []) == (
        "claims blocked: no host takes VMs (tdx-a drained, tdx-b down)"
    )
    short = "waiting for capacity (needs 4 vCPU, 0 free)"
    assert claims_banner(Header(), up, [short, short]) == (
        "claims blocked: no capacity for a job VM: needs 4 vCPU, 0 free"
    )
    # Jobs waiting for different things, or nothing: no banner (each row says why).
    assert claims_banner(Header(), up, [short, "challenge CVM not active"]) == ""
    assert claims_banner(Header(), up, [short, ""]) == ""
    # A reason that holds only some challenges' jobs is not a block of claims as a whole.
    assert claims_banner(Header(), up, ["challenge CVM not active"] * 3) == ""
    # The engine's own pause is the banner, once (not again among the warnings).
    paused = Header(claims_paused="claims paused: the platform is unreachable", auto_claim=False)
    assert claims_banner(paused, up, ["auto-claim off"]) == paused.claims_paused
    _, bottom = render_header(paused, 0.0, banner=claims_banner(paused, up, []))
    assert bottom.plain.count("platform is unreachable") == 1
    assert bottom.plain.startswith("⚠ claims paused: the platform is unreachable")


async def test_header_banner_when_auto_claim_is_off_and_gone_when_on() -> None:
    engine = demo_state(FakeEngine())
    engine.set_header(auto_claim=True)
    async with fake_console(engine, size=SMALL) as console:
        assert "claims blocked" not in console.text()
        engine.set_header(auto_claim=False)
        for job in engine.state.jobs.values():
            if job.state is JobState.PENDING:
                engine.update_job(job.id, waiting_reason="auto-claim off")
        await console.sync()
        second = console.text().splitlines()[1]
        assert second.startswith(" ⚠ claims blocked: auto-claim off (2 pending jobs wait)")


async def test_a_single_host_shows_its_drain_state_and_h_acts_on_it() -> None:
    engine = demo_state(FakeEngine())
    engine.add_host("tdx-a", HostState.UP)
    engine.set_header(auto_claim=True)
    async with fake_console(engine, size=SMALL) as console:
        main = console.app.main
        assert not main.host_table.display
        console.app.main.challenge_table.focus()
        await console.pilot.pause()
        text, _ = await open_dialog(console, "h")
        assert "Drain host tdx-a?" in text
        await console.pilot.press("y")
        await console.until(lambda: engine.sent("drain_host") == [("tdx-a",)], "drain sent")
        engine.add_host("tdx-a", HostState.DRAINED)
        await console.sync()
        top = console.text().splitlines()[0]
        assert "vmm ● connected · ○ drained │" in top
        assert "claims blocked: host tdx-a drained" in console.text()
        text, _ = await open_dialog(console, "H")
        assert "Return host tdx-a to the pool?" in text
        await console.pilot.press("y")
        await console.until(lambda: engine.sent("undrain_host") == [("tdx-a",)], "sent")
        engine.add_host("tdx-a", HostState.DOWN, since_ago=70)
        await console.sync()
        assert "vmm ● connected · ✗ down 1m" in console.text()


async def test_tab_reaches_every_panel_at_80x24() -> None:
    engine = with_hosts(demo_state(FakeEngine()))
    async with fake_console(engine, size=SMALL) as console:
        main = console.app.main
        seen = []
        for _ in range(6):
            seen.append(main.focused_panel().id)
            assert main.focused_panel().region.height > 0
            await console.pilot.press("tab")
        assert seen == ["jobs", "challenges", "hosts", "events", "console", "jobs"]
        await console.pilot.press("tab", "tab")
        assert main.focused_panel().id == "events"
        assert "job timed out after 60s" in console.text()
        assert "tdx-b" in console.text()  # the Hosts panel shares the region
        await console.pilot.press("shift+tab")
        assert main.focused_panel().id == "hosts"
        assert "✗ down 1m" in console.text()


async def test_events_arriving_while_the_log_is_hidden_are_followed_not_counted() -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine, size=SMALL) as console:
        main = console.app.main
        for index in range(12):  # one by one, while the jobs have the log's place
            engine.add_event("info", "job", f"while hidden {index}", ago=0.0)
            await console.sync()
        await console.pilot.press("tab", "tab")
        assert main.focused_panel() is main.event_log
        assert "while hidden 11" in console.text()
        assert "new" not in str(main.event_log.border_title)


async def test_z_zooms_the_focused_panel_and_back() -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine, size=SMALL) as console:
        main = console.app.main
        await console.pilot.press("z")
        assert main.maximized is main.feed
        assert main.feed.region.height >= 20
        assert "Challenge CVMs" not in console.text()
        await console.pilot.press("z")
        assert main.maximized is None
        assert "Challenge CVMs" in console.text()
        await console.pilot.press("tab", "tab", "tab", "z")  # the VM console, 6 rows at most
        assert main.maximized is main.vm_console
        assert main.vm_console.region.height >= 20


async def test_the_zoomed_event_log_is_searchable_and_counts_news_while_scrolled_up() -> None:
    engine = demo_state(FakeEngine())
    for index in range(40):
        engine.add_event("info", "job", f"filler event {index}", ago=10.0)
    async with fake_console(engine, size=SMALL) as console:
        main = console.app.main
        log = main.event_log
        await console.pilot.press("tab", "tab", "z")  # jobs → CVMs → events
        assert main.maximized is log
        await console.pilot.press("home")
        engine.add_event("warn", "platform", "poll took 9.9s", ago=0.0)
        engine.add_event("info", "job", "another one", ago=0.0)
        await console.sync()
        assert "2 new" in str(log.border_title)
        await console.pilot.press("end")
        await console.pilot.pause()
        assert "new" not in str(log.border_title)
        await console.pilot.press("slash", *"timed", "enter")
        assert log.lines and all("timed out" in line for line in log.lines)
        assert "/timed" in str(log.border_title)
        await console.pilot.press("escape")
        assert len(log.lines) > 40


async def test_an_empty_vm_console_gives_its_rows_to_the_feed_at_80x24() -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine, size=SMALL) as console:
        main = console.app.main
        assert main.vm_console.vm_id is None  # the newest job is pending: no VM
        assert main.vm_console.region.height == 1
        assert "VM console" in console.text()
        feed_rows = main.feed.region.height
        await select(console, "jobs", job_in(engine, JobState.RUNNING))
        assert main.vm_console.vm_id is not None
        assert main.vm_console.region.height == 6
        assert main.feed.region.height == feed_rows - 5
