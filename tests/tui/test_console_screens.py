"""The palette and the help list every action with its key; copy to the clipboard; the job
and challenge CVM details screens (absolute and relative times, sanitised); the VM console
follows the selection; filter and sort. On a FakeEngine."""

from __future__ import annotations

from textual.command import CommandList, CommandPalette
from textual.widgets import Input, Static

from tests.support.console import Console, fake_console, job_in, plain, select, static_texts
from tests.support.fake_engine import FIXED_NOW, FakeEngine, demo_state
from tests.support.hostile import HOSTILE
from validator_tui.control import ChallengeState, JobState, TimelineEntry
from validator_tui.tui.actions import ACTIONS
from validator_tui.tui.commands import palette_title
from validator_tui.tui.handlers import lookup_job
from validator_tui.tui.screens.challenge_details import ChallengeDetailsScreen
from validator_tui.tui.screens.help import HelpScreen, help_table
from validator_tui.tui.screens.job_details import JobDetailsScreen


async def palette_prompts(console: Console) -> list[str]:
    await console.pilot.press("ctrl+p")
    await console.until(lambda: isinstance(console.app.screen, CommandPalette), "palette")
    hits = console.app.screen.query_one(CommandList)
    await console.until(lambda: hits.option_count >= len(ACTIONS), "every action listed")
    return [str(hits.get_option_at_index(i).prompt) for i in range(hits.option_count)]


async def test_palette_lists_every_action_of_the_help_with_its_key() -> None:
    async with fake_console(demo_state(FakeEngine())) as console:
        prompts = "\n".join(await palette_prompts(console))
        for action in ACTIONS:
            assert palette_title(action) in prompts, action.name
        assert "Claim (c)" in prompts and "Start VM (s)" in prompts
        assert len(prompts.splitlines()) == 2 * len(ACTIONS)  # title, then help
        for textual_own in ("Keys", "Maximize", "Theme", "Screenshot"):
            assert textual_own not in prompts


async def until_top_hit(console: Console, name: str) -> None:
    """Wait until the palette's first hit is `name` (its search answers as the keys arrive, so
    a hit of a shorter query can be on top for a while)."""
    hits = console.app.screen.query_one(CommandList)
    await console.until(
        lambda: hits.option_count > 0 and name in str(hits.get_option_at_index(0).prompt),
        f"{name} as the first hit",
    )


async def test_palette_runs_an_action_and_one_that_cannot_act_says_why() -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine) as console:
        await select(console, "jobs", job_in(engine, JobState.COMPLETED))
        await console.pilot.press("ctrl+p")
        await console.pilot.press(*"Claim (c)")
        await until_top_hit(console, "Claim (c)")
        await console.pilot.press("enter")
        await console.until(
            lambda: any("only a pending job can be claimed" in t for t in console.toasts()),
            "refusal toast",
        )
        await console.pilot.press("ctrl+p")
        await console.until(lambda: isinstance(console.app.screen, CommandPalette), "palette")
        await console.pilot.press(*"Auto-claim (a)")
        await until_top_hit(console, "Auto-claim (a)")
        await console.pilot.press("enter")
        await console.until(lambda: engine.sent("set_auto_claim") == [(True,)], "auto-claim on")
        await console.until(lambda: console.app.main.header.auto_claim, "header shows it")


async def test_help_lists_every_action_and_read_only_strikes_commands() -> None:
    text = plain(help_table(read_only=False))
    for action in ACTIONS:
        assert action.help in " ".join(text.split()), action.name
    async with fake_console(demo_state(FakeEngine(read_only=True))) as console:
        await console.pilot.press("question_mark")
        assert isinstance(console.app.screen, HelpScreen)
        assert "read-only mode: every command is refused" in static_texts(console.app.screen)
        await console.pilot.press("escape")
        assert console.app.screen is console.app.main


async def test_copy_job_id_and_vm_id_to_the_clipboard() -> None:
    engine = demo_state(FakeEngine())
    job_id = job_in(engine, JobState.RUNNING)
    async with fake_console(engine) as console:
        await select(console, "jobs", job_id)
        await console.pilot.press("y")
        assert console.app.clipboard == job_id
        assert any("copied job id" in t and job_id in t for t in console.toasts())
        await console.pilot.press("Y")
        assert console.app.clipboard == engine.state.jobs[job_id].vm_id
        await select(console, "challenges", "chal-2")
        await console.pilot.press("Y")
        assert console.app.clipboard == engine.state.challenges["chal-2"].vm_id
        await console.pilot.press("y")
        assert console.app.clipboard == "chal-2"


async def test_challenge_cvm_details_show_history_error_compose_vm_and_log() -> None:
    engine = demo_state(FakeEngine())
    engine.update_challenge(
        "chal-2",
        last_error="CVM did not become healthy within 300s",
        history=(
            TimelineEntry(FIXED_NOW - 7200, "fetching"),
            TimelineEntry(FIXED_NOW - 7100, "failed: CVM did not become healthy within 300s"),
            TimelineEntry(FIXED_NOW - 5400, "active"),
        ),
    )
    challenge = engine.state.challenges["chal-2"]
    assert challenge.vm_id is not None
    engine.logs[challenge.vm_id] = ["boot: kernel up", "evaluator listening on :8080"]
    async with fake_console(engine) as console:
        await select(console, "challenges", "chal-2")
        await console.pilot.press("enter")
        assert isinstance(console.app.screen, ChallengeDetailsScreen)
        await console.pilot.pause()
        body = plain(console.app.screen.query_one("#cvm-details-body", Static).content)
        for expected in (
            "swe-forge (chal-2)",
            "● active",
            "last error  CVM did not become healthy within 300s",
            challenge.compose_hash,
            challenge.github_commit,
            challenge.vm_id,
            "boot progress  done",
            f"host port  {challenge.host_port}",
            "jobs run  17",
            "2023-11-14 20:13:20 (2h00m ago)  fetching",
            "2023-11-14 20:43:20 (1h30m ago)  active",
            "active since  2023-11-14 20:43:20 (1h30m ago)",
        ):
            assert expected in body, expected
        log = console.app.screen.query_one("#cvm-log")
        await console.until(lambda: "evaluator listening on :8080" in log.lines, "CVM log")
        await console.pilot.press("escape")
        assert console.app.screen is console.app.main


async def test_job_details_have_absolute_times_and_inert_text() -> None:
    engine = demo_state(FakeEngine())
    job = engine.add_job(JobState.FAILED, miner_hotkey=HOSTILE, error=f"boom {HOSTILE}")
    async with fake_console(engine) as console:
        await select(console, "jobs", job.id)
        await console.pilot.press("enter")
        assert isinstance(console.app.screen, JobDetailsScreen)
        await console.until(
            lambda: job.id in plain(console.app.screen.query_one("#details-body", Static).content),
            "details shown",
        )
        body = plain(console.app.screen.query_one("#details-body", Static).content)
        assert "created  2023-11-14 21:56:56 (16m24s ago)" in body
        assert "failed: job timed out after 60s" in body
        assert "click[/link][/][bold]" in body
        for payload in ("\x1b", "\x07", "\x00"):
            assert payload not in body


async def test_details_of_a_job_that_left_the_feed_come_from_the_engine() -> None:
    engine = demo_state(FakeEngine())
    gone = engine.add_job(JobState.COMPLETED)
    engine.history[gone.id] = gone
    async with fake_console(engine) as console:
        engine.remove_job(gone.id)
        await console.sync()
        assert gone.id not in console.app.main.feed.jobs
        record, _ = await lookup_job(console.app.main, gone.id)
        assert record is gone


async def test_vm_console_follows_the_selection_and_pauses() -> None:
    engine = demo_state(FakeEngine())
    job_id = job_in(engine, JobState.RUNNING)
    vm_id = engine.state.jobs[job_id].vm_id
    async with fake_console(engine) as console:
        await select(console, "jobs", job_id)
        vm_console = console.app.main.vm_console
        await console.until(lambda: vm_console.vm_id == vm_id, "console on the job's VM")
        await console.until(lambda: any("kernel up" in line for line in vm_console.lines), "log")
        await console.pilot.press("f")
        assert vm_console.paused
        await console.pilot.press("f", "w")
        assert not vm_console.paused and vm_console.wrap
        await select(console, "challenges", "chal-1")
        cvm = engine.state.challenges["chal-1"].vm_id
        await console.until(lambda: vm_console.vm_id == cvm, "console on the CVM")


async def test_filter_and_sort_the_job_feed() -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine) as console:
        feed = console.app.main.feed
        expected = {j.id for j in engine.state.jobs.values() if j.challenge_id == "chal-2"}
        await console.pilot.press("slash")
        assert console.app.focused is console.app.main.query_one("#filter", Input)
        await console.pilot.press(*"swe-forge")
        assert set(feed.row_keys()) == expected
        await console.pilot.press("enter")
        assert console.app.focused is feed
        await console.pilot.press("escape")
        assert len(feed.row_keys()) == len(engine.state.jobs) and feed.filter_text == ""
        newest_first = sorted(
            engine.state.jobs.values(), key=lambda j: (j.created_at, j.id), reverse=True
        )
        assert feed.row_keys() == [job.id for job in newest_first]
        while feed.sort_key != "challenge":
            await console.pilot.press("greater_than_sign")
        names = [feed.cell(key, "challenge").plain for key in feed.row_keys()]
        assert names == sorted(names, reverse=True)
        await console.pilot.press("exclamation_mark")
        names = [feed.cell(key, "challenge").plain for key in feed.row_keys()]
        assert names == sorted(names)


async def test_hostile_text_is_inert_on_screen() -> None:
    engine = demo_state(FakeEngine())
    for _ in range(2):
        engine.add_job(JobState.PENDING, miner_hotkey=HOSTILE)
    engine.add_challenge(HOSTILE, ChallengeState.FAILED, reason=HOSTILE)
    engine.add_event("error", "job", HOSTILE, job_id=HOSTILE)
    async with fake_console(engine, size=(120, 36)) as console:
        await console.pilot.pause(0.3)
        screenshot = console.app.export_screenshot()
        for payload in ("pwned", "cm0gLXJmIH4", "c1-title", "\x1b", "\x07", "\x00"):
            assert payload not in screenshot
        assert 'href="https://evil.example' not in screenshot
