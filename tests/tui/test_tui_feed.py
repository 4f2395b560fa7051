"""The job feed (issue 12): actions act on what the operator selected while jobs stream in;
following the newest is a mode; failures explain themselves (reason column, `/` on the error
text, next failed, state filter); the title says when the feed is capped; the feed ticks only
visible rows. On a FakeEngine (deterministic); a bare feed where the widget alone is tested."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import Input

from tests.support.console import Console, fake_console
from tests.support.fake_engine import FIXED_NOW, FakeEngine, demo_state
from tests.support.tui import running_app, select_row, wait_until
from validator_tui.control import JobRecord, JobState, StateDelta
from validator_tui.tui.app import QUIET_POLLS, ValidatorApp
from validator_tui.tui.handlers import lookup_job
from validator_tui.tui.screens.job_details import JobDetailsScreen
from validator_tui.tui.widgets.job_feed import JobFeed, StateFilter
from validator_tui.tui.widgets.key_footer import KeyFooter
from validator_tui.tui.widgets.line_table import Cell


class CountingFeed(JobFeed):
    """A feed that counts, per job, how often it computed the job's cells."""

    def __init__(self, max_jobs: int) -> None:
        super().__init__(max_jobs=max_jobs, id="jobs")
        self.computed: Counter[str] = Counter()

    def cells(self, record: JobRecord) -> Sequence[Cell]:
        self.computed[record.id] += 1
        return super().cells(record)


class FeedApp(App[None]):
    """Hosts one feed bounded to `max_jobs`."""

    def __init__(self, max_jobs: int) -> None:
        super().__init__()
        self.max_jobs = max_jobs

    def compose(self) -> ComposeResult:
        yield CountingFeed(self.max_jobs)


def job(index: int, state: JobState = JobState.COMPLETED, **fields: object) -> JobRecord:
    """Job `j00index`, created `index` seconds after the fixed epoch."""
    record = JobRecord(f"j{index:03d}", "c1", state=state, created_at=FIXED_NOW + index)
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def title(feed: JobFeed) -> str:
    return str(feed.border_title)


# -- the bound and the title -------------------------------------------------------------------


async def test_feed_keeps_latest_jobs_never_drops_unfinished_and_says_it_is_capped() -> None:
    app = FeedApp(max_jobs=4)
    async with app.run_test() as pilot:
        feed = app.query_one(JobFeed)
        feed.apply([job(0, JobState.RUNNING, claimed_at=FIXED_NOW)], [], FIXED_NOW)
        assert title(feed) == "Jobs (1)"
        feed.apply([job(i) for i in range(1, 7)], [], FIXED_NOW + 10)
        await pilot.pause()
        assert feed.row_keys() == ["j006", "j005", "j004", "j000"]
        assert set(feed.jobs) == {"j006", "j005", "j004", "j000"}
        assert title(feed) == "Jobs 4 of 7 · latest 4 shown"
        feed.apply([], ["j001", "j002"], FIXED_NOW + 11)
        assert title(feed) == "Jobs 4 of 5 · latest 4 shown"
        feed.apply([job(i) for i in range(3, 7)], ["j000"], FIXED_NOW + 12, full=True)
        assert title(feed) == "Jobs (4)"


async def test_full_snapshot_forgets_jobs_the_engine_no_longer_holds() -> None:
    app = FeedApp(max_jobs=2)
    async with app.run_test():
        feed = app.query_one(JobFeed)
        feed.apply([job(i) for i in range(5)], [], FIXED_NOW)
        assert title(feed) == "Jobs 2 of 5 · latest 2 shown"
        feed.apply([job(3), job(4)], ["j000", "j001", "j002"], FIXED_NOW, full=True)
        assert title(feed) == "Jobs (2)"


# -- selection stability -----------------------------------------------------------------------


async def test_new_jobs_never_take_the_cursor_from_the_top_row() -> None:
    engine = demo_state(FakeEngine())
    engine.now += 1
    engine.add_job(JobState.PENDING, age=0.0)
    async with fake_console(engine) as console:
        feed = console.app.main.feed
        feed.focus()
        feed.move_cursor(row=0)
        await console.pilot.pause()
        seen = feed.selected_key
        assert seen is not None
        for _ in range(25):
            engine.now += 1
            engine.add_job(JobState.PENDING, age=0.0)
            await console.sync()
            assert feed.selected_key == seen, "a new job took the cursor"
        assert feed.row_keys()[0] != seen
        await console.pilot.press("c")
        await console.until(lambda: engine.sent("claim") != [], "the claim sent")
        assert engine.sent("claim") == [(seen,)]
        await console.pilot.press("enter")
        await console.until(lambda: isinstance(console.app.screen, JobDetailsScreen), "details")
        assert console.app.screen.job_id == seen  # type: ignore[attr-defined]


async def test_the_feed_is_live_until_the_operator_picks_a_job() -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine, size=(120, 36)) as console:
        feed = console.app.main.feed
        feed.focus()
        for _ in range(30):
            engine.now += 1
            engine.add_job(JobState.PENDING, age=0.0)
            await console.sync()
            assert feed.selected_key is None and round(feed.scroll_y) == 0
            newest = max(engine.state.jobs.values(), key=lambda j: (j.created_at, j.id))
            assert feed.row_keys()[0] == newest.id, "the newest job is the top row shown"
        assert "more" not in title(feed)
        assert console.app.main.vm_console.vm_id is None
        await console.pilot.press("down")
        picked = feed.selected_key
        assert picked == feed.row_keys()[0]
        for _ in range(3):
            engine.now += 1
            engine.add_job(JobState.PENDING, age=0.0)
            await console.sync()
        assert feed.selected_key == picked and feed.cursor_row == 3


async def test_claim_acts_on_the_pending_job_seen_while_jobs_stream_in() -> None:
    engine = FakeEngine()
    engine.add_challenge("term-bench")
    first = engine.add_job(JobState.PENDING, challenge_id="chal-1", age=5.0)
    async with fake_console(engine) as console:
        feed = console.app.main.feed
        feed.focus()
        await console.pilot.pause()
        assert feed.selected_key is None, "nothing is selected before the operator picks"
        assert "no job selected: ↑/↓ picks one" in await console.press_for_toast("c")
        await console.pilot.press("down")
        assert feed.selected_key == first.id and feed.cursor_row == 0
        engine.add_job(JobState.PENDING, challenge_id="chal-1", age=0.0)
        await console.sync()
        await console.pilot.press("c")
        await console.until(lambda: engine.sent("claim") != [], "the claim sent")
        assert engine.sent("claim") == [(first.id,)]
        assert feed.cursor_row == 1


async def test_follow_newest_is_a_mode_shown_in_the_title_and_off_when_the_operator_moves() -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine) as console:
        feed = console.app.main.feed
        feed.focus()
        feed.move_cursor(row=3)
        assert not feed.follow and "following" not in title(feed)
        await console.pilot.press("t")
        assert feed.follow and "following newest" in title(feed)
        assert feed.cursor_row == 0
        newest = engine.add_job(JobState.PENDING, age=0.0)
        await console.sync()
        assert feed.selected_key == newest.id
        assert console.app.main.vm_console.vm_id is None  # a pending job has no VM
        await console.pilot.press("down")
        assert not feed.follow and "following" not in title(feed)
        held = feed.selected_key
        engine.add_job(JobState.PENDING, age=0.0)
        await console.sync()
        assert feed.selected_key == held


# -- failures explain themselves ----------------------------------------------------------------


async def test_reason_column_shows_the_error_and_the_filter_matches_it() -> None:
    engine = demo_state(FakeEngine())
    engine.now += 1
    odd = engine.add_job(JobState.FAILED, age=0.0, error="VM boot failed: \x1b[31mdisk full\x07")
    async with fake_console(engine, size=(160, 40)) as console:
        feed = console.app.main.feed
        failed = [j.id for j in engine.state.jobs.values() if j.state is JobState.FAILED]
        timed_out = {j for j in failed if engine.state.jobs[j].error == "job timed out after 60s"}
        assert timed_out
        for job_id in timed_out:
            assert feed.cell(job_id, "reason").plain == "job timed out after 60s"
        assert feed.cell(odd.id, "reason").plain == "VM boot failed: disk full"
        assert "job timed out after 60s" in console.text()
        await console.pilot.press("slash", *"timed")
        assert set(feed.row_keys()) == timed_out
        assert "matching “timed”" in title(feed)
        await console.pilot.press("enter", "escape")
        assert len(feed.row_keys()) == len(engine.state.jobs)


async def test_the_filter_prompt_takes_the_footers_line_and_moves_nothing() -> None:
    engine = demo_state(FakeEngine())
    async with fake_console(engine, size=(120, 36)) as console:
        main = console.app.main
        feed, footer = main.feed, main.query_one(KeyFooter)
        prompt, bar = main.query_one("#filter", Input), main.query_one("#filter-bar")
        where = (feed.region, main.challenge_table.region, main.vm_console.region)
        footer_line = footer.region
        assert not bar.display
        await console.pilot.press("slash", *"swe")
        assert console.app.focused is prompt and bar.region == footer_line
        assert not footer.display and "Filter jobs: swe" in console.text()
        assert (feed.region, main.challenge_table.region, main.vm_console.region) == where
        await console.pilot.press("enter")
        assert console.app.focused is feed and footer.display and not bar.display
        assert footer.region == footer_line and feed.region == where[0]
        assert "matching “swe”" in title(feed)
        await console.pilot.press("slash")
        assert prompt.value == "swe", "the prompt opens on the filter in force"
        await console.pilot.press("escape")
        assert feed.filter_text == "" and footer.display and not bar.display


async def test_next_failed_moves_through_the_failed_jobs_and_wraps() -> None:
    engine = demo_state(FakeEngine())
    for _ in range(2):
        engine.now += 1
        engine.add_job(JobState.FAILED, age=0.0)
    async with fake_console(engine) as console:
        feed = console.app.main.feed
        failed = [k for k in feed.row_keys() if engine.state.jobs[k].state is JobState.FAILED]
        assert len(failed) == 3
        feed.focus()
        feed.move_cursor(row=0)
        visited = []
        for _ in range(4):
            await console.pilot.press("e")
            visited.append(feed.selected_key)
        assert visited == [*failed, failed[0]] or visited == [*failed[1:], failed[0], failed[1]]
        assert all(engine.state.jobs[k].state is JobState.FAILED for k in visited if k)


async def test_next_failed_with_nothing_picked_starts_at_the_top_row() -> None:
    engine = demo_state(FakeEngine())
    engine.now += 1
    newest = engine.add_job(JobState.FAILED, age=0.0)
    async with fake_console(engine) as console:
        feed = console.app.main.feed
        feed.focus()
        assert feed.selected_key is None and feed.row_keys()[0] == newest.id
        await console.pilot.press("e")
        assert feed.selected_key == newest.id


async def test_next_failed_without_failures_says_so() -> None:
    engine = FakeEngine()
    engine.add_challenge("term-bench")
    engine.add_jobs(JobState.PENDING, JobState.COMPLETED)
    async with fake_console(engine) as console:
        assert "no failed job in the feed" in await console.press_for_toast("e")


async def test_state_filter_cycles_failed_running_pending_dead_letter() -> None:
    engine = demo_state(FakeEngine())
    engine.now += 1
    dead = engine.add_job(JobState.FAILED, age=0.0, result_status="dead", error="400 bad result")
    async with fake_console(engine) as console:
        feed = console.app.main.feed
        jobs = engine.state.jobs.values()
        expected = {
            StateFilter.FAILED: {j.id for j in jobs if j.state is JobState.FAILED},
            StateFilter.RUNNING: {j.id for j in jobs if j.state.active},
            StateFilter.PENDING: {j.id for j in jobs if j.state is JobState.PENDING},
            StateFilter.DEAD_LETTER: {dead.id},
            StateFilter.ALL: {j.id for j in jobs},
        }
        for state_filter in (*list(StateFilter)[1:], StateFilter.ALL):
            await console.pilot.press("v")
            assert feed.state_filter is state_filter
            assert set(feed.row_keys()) == expected[state_filter], state_filter
            if state_filter is not StateFilter.ALL:
                assert state_filter.value in title(feed)
        assert all(expected.values())


# -- cheap updates -----------------------------------------------------------------------------


async def test_tick_redraws_only_visible_unfinished_rows_at_the_precision_shown() -> None:
    app = FeedApp(max_jobs=100)
    async with app.run_test(size=(120, 12)) as pilot:
        feed = app.query_one(CountingFeed)
        running = [job(i, JobState.RUNNING, claimed_at=FIXED_NOW) for i in range(40)]
        done = job(50, claimed_at=FIXED_NOW, finished_at=FIXED_NOW + 2)
        feed.apply([*running, done], [], FIXED_NOW + 3)
        await pilot.pause()
        visible = set(feed.visible_keys())
        assert 0 < len(visible) < 20 and "j050" in visible
        feed.computed.clear()
        feed.tick(FIXED_NOW + 65)
        await pilot.pause()
        assert set(feed.computed) == visible - {"j050"}
        assert feed.cell("j000", "elapsed").plain == "1m"
        assert feed.cell("j050", "elapsed").plain == "2s"
        feed.computed.clear()
        feed.tick(FIXED_NOW + 70)  # still "1m": computed, but nothing to repaint
        await pilot.pause()
        assert set(feed.computed) == visible - {"j050"}
        assert feed.cell("j000", "elapsed").plain == "1m"


async def test_details_of_a_job_that_left_the_feed(tmp_path: Path) -> None:
    async with running_app(tmp_path, pending=3) as r:
        app, pilot = r.app, r.pilot
        app.main.feed.max_jobs = 2
        await pilot.press("a")
        await wait_until(
            pilot,
            lambda: len(r.env.platform.results()) == 3 and len(app.main.feed.jobs) == 2,
            "three results, two jobs in the feed",
        )
        (gone,) = set(await r.state(lambda s: list(s.jobs))) - set(app.main.feed.jobs)
        assert await r.state(lambda s: s.jobs[gone].state) is JobState.COMPLETED
        record, _ = await lookup_job(app.main, gone)
        assert record is not None and record.id == gone
        select_row(app.main.feed, app.main.feed.row_keys()[0])
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailsScreen), "details")


async def test_keys_move_the_cursor_in_every_table_and_scroll_the_event_log() -> None:
    engine = demo_state(FakeEngine())
    for index in range(40):
        engine.now += 1
        engine.add_job(JobState.PENDING, age=0.0)
        engine.add_event("info", "job", f"event number {index} with a few words to wrap")
    for name in ("alpha", "bravo", "charlie", "delta", "echo"):
        engine.add_challenge(name)
    async with fake_console(engine, size=(120, 36)) as console:
        main = console.app.main
        for table in (main.feed, main.challenge_table):
            table.focus()
            await press(console, "end")
            assert table.cursor_row == table.row_count - 1, table.id
            await press(console, "home")
            assert table.cursor_row == 0, table.id
            await press(console, "pagedown")
            page = table.cursor_row
            assert page > 1 or table.row_count <= 2, table.id
            await press(console, "pagedown")
            assert table.cursor_row == min(table.row_count - 1, 2 * page), table.id
            await press(console, "pageup")
            assert table.cursor_row == page or table.row_count <= 2 * page, table.id
            await press(console, "down")
            await press(console, "up")
        log = main.query_one("#events")
        log.focus()
        await press(console, "home")
        assert log.scroll_y == 0
        await press(console, "pagedown")
        assert log.scroll_y > 0
        await press(console, "end")
        assert log.scroll_y == log.max_scroll_y > 0


async def press(console: Console, key: str) -> None:
    await console.pilot.press(key)
    await console.pilot.pause()


async def test_an_idle_console_polls_the_engine_once_a_second() -> None:
    engine = demo_state(FakeEngine())
    calls = []
    changes_since = engine.changes_since

    async def counted(version: int, event_seq: int) -> StateDelta:
        calls.append(version)
        return await changes_since(version, event_seq)

    engine.changes_since = counted  # type: ignore[method-assign]
    app = ValidatorApp(engine, clock=lambda: engine.now, refresh_hz=4.0, cursor_blink=False)
    async with app.run_test():
        app._polls = 0  # the timer's own ticks are counted from here
        calls.clear()
        for _ in range(QUIET_POLLS):
            await app.poll_engine()
        assert len(calls) == QUIET_POLLS  # every tick while it was not yet quiet
        calls.clear()
        for _ in range(16):
            await app.poll_engine()
        assert len(calls) == 4  # then once a second (every 4th tick at 4 Hz)
        engine.add_job(JobState.PENDING, age=0.0)
        for _ in range(4):
            await app.poll_engine()
        calls.clear()
        for _ in range(4):
            await app.poll_engine()
        assert len(calls) == 4  # a change: every tick again
