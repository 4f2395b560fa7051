"""The job feed's bound and cheap updates: a JobFeed in a bare app fed JobRecords directly."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tests.support.tui import FIXED_NOW, select_row
from validator_tui.engine.records import JobRecord, JobState
from validator_tui.tui.widgets.job_feed import JobFeed


class FeedApp(App[None]):
    """Hosts one JobFeed bounded to `max_jobs`."""

    def __init__(self, max_jobs: int) -> None:
        super().__init__()
        self.max_jobs = max_jobs

    def compose(self) -> ComposeResult:
        yield JobFeed(max_jobs=self.max_jobs, id="jobs")


def job(index: int, state: JobState = JobState.COMPLETED, **fields: object) -> JobRecord:
    """Job `j00index`, created `index` seconds after the fixed epoch."""
    record = JobRecord(f"j{index:03d}", "c1", state=state, created_at=FIXED_NOW + index)
    for name, value in fields.items():
        setattr(record, name, value)
    return record


async def test_feed_keeps_latest_jobs_and_never_drops_unfinished() -> None:
    app = FeedApp(max_jobs=4)
    async with app.run_test() as pilot:
        feed = app.query_one(JobFeed)
        feed.apply([job(0, JobState.RUNNING, claimed_at=FIXED_NOW)], [], FIXED_NOW)
        feed.apply([job(i) for i in range(1, 7)], [], FIXED_NOW + 10)
        await pilot.pause()
        assert feed.row_keys() == ["j006", "j005", "j004", "j000"]
        assert set(feed.jobs) == {"j006", "j005", "j004", "j000"}
        assert str(feed.border_title) == "Jobs (4)"
        feed.apply([job(1)], [], FIXED_NOW + 11)
        assert "j001" not in feed.jobs
        assert feed.row_keys() == ["j006", "j005", "j004", "j000"]


async def test_feed_keeps_the_row_under_the_cursor() -> None:
    app = FeedApp(max_jobs=3)
    async with app.run_test() as pilot:
        feed = app.query_one(JobFeed)
        feed.apply([job(i) for i in range(3)], [], FIXED_NOW)
        select_row(feed, "j000")
        feed.apply([job(3)], [], FIXED_NOW)
        await pilot.pause()
        assert feed.row_keys() == ["j003", "j002", "j000"]
        assert feed.selected_key == "j000"
        feed.apply([job(4), job(5), job(6)], [], FIXED_NOW)
        assert feed.row_keys() == ["j006", "j005", "j000"]
        assert feed.selected_key == "j000"


async def test_tick_changes_only_elapsed_of_claimed_unfinished_jobs() -> None:
    app = FeedApp(max_jobs=10)
    async with app.run_test() as pilot:
        feed = app.query_one(JobFeed)
        running = job(0, JobState.RUNNING, claimed_at=FIXED_NOW)
        done = job(1, claimed_at=FIXED_NOW, finished_at=FIXED_NOW + 2)
        pending = job(2, JobState.PENDING)
        feed.apply([running, done, pending], [], FIXED_NOW + 3)
        rows = {key: [cell.plain for cell in feed.get_row(key)] for key in feed.row_keys()}
        feed.tick(FIXED_NOW + 65)
        await pilot.pause()
        assert feed.get_row("j000")[5].plain == "1m05s"
        assert [cell.plain for cell in feed.get_row("j001")] == rows["j001"]
        assert [cell.plain for cell in feed.get_row("j002")] == rows["j002"]
        assert rows["j001"][5] == "2s"
        assert rows["j002"][5] == "-"


async def test_cursor_on_top_row_follows_the_newest_job() -> None:
    app = FeedApp(max_jobs=50)
    async with app.run_test() as pilot:
        feed = app.query_one(JobFeed)
        feed.apply([job(i) for i in range(3)], [], FIXED_NOW)
        await pilot.pause()
        assert feed.selected_key == "j002"
        feed.apply([job(3)], [], FIXED_NOW)
        await pilot.pause()
        assert feed.cursor_row == 0 and feed.selected_key == "j003"
        select_row(feed, "j002")
        feed.apply([job(4)], [], FIXED_NOW)
        await pilot.pause()
        assert feed.selected_key == "j002"
