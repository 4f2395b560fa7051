"""The job feed: one keyed row per recent job, newest first, filterable, updated by diff.

The feed holds at most `MAX_FEED_JOBS` jobs: when more arrive, the oldest finished ones leave
the feed (never an unfinished job, and the one under the cursor only when nothing else can
go). They stay in the engine's history, where the details screen still finds them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from rich.text import Text

from validator_tui.control import JobRecord
from validator_tui.sanitize import clean_line
from validator_tui.tui.format import (
    JOB_STATE_ORDER,
    duration,
    job_state_text,
    score_text,
    short_hotkey,
    short_id,
)
from validator_tui.tui.widgets.keyed_table import Cell, ColumnSpec, KeyedTable

#: The feed shows the latest this many jobs; older ones stay in the engine's history.
MAX_FEED_JOBS = 500

COLUMNS = (
    ColumnSpec("job", "Job", 8),
    ColumnSpec("challenge", "Challenge", 14),
    ColumnSpec("miner", "Miner", 9),
    ColumnSpec("state", "State", 14),
    ColumnSpec("score", "Score", 5),
    ColumnSpec("elapsed", "Elapsed", 7),
    ColumnSpec("vm", "VM", 8),
)
ELAPSED = 5


class JobFeed(KeyedTable):
    """The latest jobs the engine knows, newest first; `filter_text` hides rows that don't match."""

    def __init__(self, *, max_jobs: int = MAX_FEED_JOBS, id: str | None = None) -> None:
        super().__init__(COLUMNS, sort_key="job", sort_reverse=True, id=id)
        self.border_title = "Jobs"
        self.max_jobs = max_jobs
        self.jobs: dict[str, JobRecord] = {}
        self.challenge_names: dict[str, str] = {}
        self.filter_text = ""

    @property
    def selected_job(self) -> JobRecord | None:
        """The job under the cursor, if any."""
        key = self.selected_key
        return None if key is None else self.jobs.get(key)

    def apply(self, changed: Iterable[JobRecord], removed: Iterable[str], now: float) -> None:
        """Update the rows of changed jobs, drop removed ones and the oldest finished ones
        beyond `max_jobs`. A cursor on the top row stays on the top row (it follows the newest
        job, like `tail -f`); anywhere else it keeps its job."""
        following = self.cursor_row == 0
        keep = None if following else self.selected_key
        for job_id in removed:
            self._drop(job_id)
        changed = list(changed)
        for job in changed:
            self.jobs[job.id] = job
        self._evict(keep)
        for job in changed:
            if self.jobs.get(job.id) is job:
                self._show(job, now)
        self.settle(keep)
        if following and self.row_count:
            self.move_cursor(row=0, scroll=True)
        self._update_title()

    def tick(self, now: float) -> None:
        """Refresh the elapsed time of unfinished jobs (only cells whose text changes)."""
        keep = self.selected_key
        for job in self.jobs.values():
            if job.state.finished or not job.claimed_at or not self.has_row(job.id):
                continue
            elapsed = job.elapsed(now)
            self.set_cell(job.id, ELAPSED, Cell(duration(elapsed), elapsed))
        self.settle(keep)

    def rename_challenges(self, names: dict[str, str], now: float) -> None:
        """Use new challenge display names in the rows that show them."""
        if names == self.challenge_names:
            return
        self.challenge_names = dict(names)
        keep = self.selected_key
        for job in self.jobs.values():
            self._show(job, now)
        self.settle(keep)

    def set_filter(self, text: str, now: float) -> None:
        """Show only jobs whose visible columns contain `text` (case-insensitive)."""
        self.filter_text = text.strip().casefold()
        keep = self.selected_key
        for job in self.jobs.values():
            self._show(job, now)
        self.settle(keep)
        self._update_title()

    def _drop(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)
        self.discard(job_id)

    def _evict(self, keep: str | None) -> None:
        """Drop the oldest finished jobs while the feed holds more than `max_jobs`."""
        excess = len(self.jobs) - self.max_jobs
        if excess <= 0:
            return
        finished = (job for job in self.jobs.values() if job.state.finished)
        oldest = heapq.nsmallest(
            excess, finished, key=lambda job: (job.id == keep, job.created_at, job.id)
        )
        for job in oldest:
            self._drop(job.id)

    def _show(self, job: JobRecord, now: float) -> None:
        cells = self.cells(job, now)
        if self.filter_text and not any(self.filter_text in c.plain.casefold() for c in cells):
            self.discard(job.id)
        else:
            self.upsert(job.id, cells)

    def cells(self, job: JobRecord, now: float) -> list[Cell]:
        """The row of one job, each cell with the value its column sorts by."""
        name = self.challenge_names.get(job.challenge_id, job.challenge_id)
        elapsed = job.elapsed(now) if job.claimed_at or job.finished_at else None
        return [
            Cell(short_id(job.id), (job.created_at, job.id)),
            Cell(clean_line(name, 200), name),
            Cell(short_hotkey(job.miner_hotkey), job.miner_hotkey),
            Cell(job_state_text(job.state), JOB_STATE_ORDER[job.state]),
            Cell(score_text(job.score), -1.0 if job.score is None else job.score),
            Cell("-" if elapsed is None else duration(elapsed), elapsed or 0.0),
            Cell(short_id(job.vm_id), job.vm_id or ""),
        ]

    def _update_title(self) -> None:
        shown = self.row_count
        total = len(self.jobs)
        if self.filter_text:
            self.border_title = Text(f"Jobs {shown}/{total} matching “{self.filter_text}”")
        else:
            self.border_title = f"Jobs ({total})"
