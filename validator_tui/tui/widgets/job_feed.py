"""The job feed: the latest jobs, newest first, with why each failed; filterable by text and by
state; the cursor stays on the job the operator chose unless following the newest is on.

The feed holds at most `MAX_FEED_JOBS` jobs: when more arrive, the oldest finished ones leave
the feed (never an unfinished job, and the one under the cursor only when nothing else can
go); the title then says how many the engine holds. They stay in the engine's history, where
the details screen still finds them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from enum import StrEnum

from rich.text import Text

from validator_tui.control import JobRecord, JobState
from validator_tui.sanitize import clean_line
from validator_tui.tui.format import (
    JOB_MARKERS,
    JOB_STATE_ORDER,
    age,
    job_reason,
    score_text,
    short_hotkey,
    short_id,
    wall_time,
)
from validator_tui.tui.widgets.line_table import Cell, Column, LineTable

#: The feed shows the latest this many jobs; older ones stay in the engine's history.
MAX_FEED_JOBS = 500

COLUMNS = (
    Column("arrival", "Arrival", 9, drop=5),
    Column("job", "Job", 8),
    Column("challenge", "Challenge", 10, grow=1, max_width=20, drop=4),
    Column("miner", "Miner", 9, ideal=48, drop=8),
    Column("state", "State", 14),
    Column("score", "Score", 5, drop=6),
    Column("elapsed", "Elapsed", 7, drop=3),
    Column("vm", "VM", 8, drop=9),
    #: Hidden while the engine has one host (see `LineTable.set_hidden`).
    Column("host", "Host", 6, max_width=12, drop=7),
    Column("reason", "Reason", 12, grow=4),
)
TICKING = frozenset({"elapsed"})


class StateFilter(StrEnum):
    """The quick filters by state, in the order `v` cycles through them."""

    ALL = "all"
    FAILED = "failed"
    RUNNING = "running"
    PENDING = "pending"
    DEAD_LETTER = "dead letter"

    def admits(self, job: JobRecord) -> bool:
        if self is StateFilter.FAILED:
            return job.state is JobState.FAILED
        if self is StateFilter.RUNNING:
            return job.state.active
        if self is StateFilter.PENDING:
            return job.state is JobState.PENDING
        if self is StateFilter.DEAD_LETTER:
            return job.result_status == "dead"
        return True

    def next(self) -> StateFilter:
        members = list(StateFilter)
        return members[(members.index(self) + 1) % len(members)]


class JobFeed(LineTable[JobRecord]):
    """The latest jobs the engine knows; `filter_text` and `state_filter` hide the others.

    Live until the operator picks a job: no row is selected and the newest stay in view. A
    job picked (arrows, click, `e`, home/end) keeps the cursor while others arrive."""

    CURSOR_FROM_THE_START = False

    def __init__(self, *, max_jobs: int = MAX_FEED_JOBS, id: str | None = None) -> None:
        super().__init__(COLUMNS, sort_key="arrival", sort_reverse=True, id=id)
        self.hidden = frozenset({"host"})
        self.max_jobs = max_jobs
        self.challenge_names: dict[str, str] = {}
        self.filter_text = ""
        self.state_filter = StateFilter.ALL
        self.follow = False
        self._evicted: set[str] = set()
        self._haystacks: dict[str, str] = {}

    def on_mount(self) -> None:
        self._update_title()

    @property
    def jobs(self) -> dict[str, JobRecord]:
        """The jobs the feed holds, by id."""
        return self.records

    @property
    def selected_job(self) -> JobRecord | None:
        """The job under the cursor, if any."""
        key = self.selected_key
        return None if key is None else self.records.get(key)

    @property
    def held_by_engine(self) -> int:
        """How many jobs the engine holds (the feed's plus those it let go)."""
        return len(self.records) + len(self._evicted)

    # -- updates ------------------------------------------------------------------------------

    def apply(
        self,
        changed: Iterable[JobRecord],
        removed: Iterable[str],
        now: float,
        *,
        full: bool = False,
    ) -> None:
        """Show changed jobs, drop removed ones and the oldest finished ones beyond `max_jobs`
        (`full`: `changed` is everything the engine holds). The cursor keeps its job unless
        following the newest is on."""
        self.now = now
        changed = list(changed)
        if full:
            self._evicted &= {job.id for job in changed}
        for job_id in removed:
            self._evicted.discard(job_id)
            self._haystacks.pop(job_id, None)
            self.discard(job_id)
        for job in changed:
            self._evicted.discard(job.id)
            self._haystacks.pop(job.id, None)
            self.put(job.id, job)
        self._evict()
        self.commit()
        if self.follow:
            self._follow_newest()
        self._update_title()

    def rename_challenges(self, names: dict[str, str], now: float) -> None:
        """Use new challenge display names in the rows that show them."""
        if names == self.challenge_names:
            return
        self.challenge_names = dict(names)
        self.now = now
        self._haystacks.clear()
        self.redraw_all()
        self.refilter()
        self.commit()

    def set_filter(self, text: str, now: float) -> None:
        """Show only jobs whose text (any column, the whole error, the full ids) contains
        `text`, case-insensitively."""
        self.filter_text = text.strip().casefold()
        self.now = now
        self.refilter()
        self.commit()
        self._update_title()

    def set_state_filter(self, state_filter: StateFilter) -> None:
        """Show only jobs in `state_filter`'s states."""
        self.state_filter = state_filter
        self.refilter()
        self.commit()
        self._update_title()

    def set_follow(self, follow: bool) -> None:
        """Follow the newest job (the cursor on the top row as jobs arrive), or stop."""
        self.follow = follow
        if follow:
            self._follow_newest()
        self._update_title()

    def next_failed(self) -> JobRecord | None:
        """Move the cursor to the next failed job below it (wrapping); None when no failed
        job is shown."""
        order = self.row_keys()
        if not order:
            return None
        start = self.cursor_row if self.selected_key is not None else -1  # none: from the top
        for step in range(1, len(order) + 1):
            key = order[(start + step) % len(order)]
            job = self.records[key]
            if job.state is JobState.FAILED:
                self.select_key(key)
                return job
        return None

    def operator_moved(self) -> None:
        if self.follow:
            self.follow = False
            self._update_title()

    def _follow_newest(self) -> None:
        order = self.row_keys()
        if order:
            self.set_cursor(order[0])
            self.scroll_to(y=0, animate=False)

    def _evict(self) -> None:
        """Drop the oldest finished jobs while the feed holds more than `max_jobs`."""
        excess = len(self.records) - self.max_jobs
        if excess <= 0:
            return
        keep = self.selected_key
        finished = (job for job in self.records.values() if job.state.finished)
        oldest = heapq.nsmallest(
            excess, finished, key=lambda job: (job.id == keep, job.created_at, job.id)
        )
        for job in oldest:
            self._haystacks.pop(job.id, None)
            self.discard(job.id)
            self._evicted.add(job.id)

    # -- what a row shows ---------------------------------------------------------------------

    def cells(self, record: JobRecord) -> Sequence[Cell]:
        job = record
        name = self.challenge_names.get(job.challenge_id, job.challenge_id)
        elapsed = job.elapsed(self.now) if job.claimed_at or job.finished_at else None
        marker, style = JOB_MARKERS[job.state]
        failed = job.state is JobState.FAILED
        return (
            Cell(wall_time(job.created_at, self.now), "dim"),
            Cell(short_id(job.id)),
            Cell(clean_line(name, 200)),
            Cell(clean_line(job.miner_hotkey, 200), short=short_hotkey(job.miner_hotkey)),
            Cell(f"{marker} {job.state.value}", style),
            Cell(score_text(job.score)),
            Cell("-" if elapsed is None else age(elapsed)),
            Cell(short_id(job.vm_id)),
            Cell(clean_line(job.host, 32) or "-"),
            Cell(job_reason(job), "red" if failed else "dim"),
        )

    def sort_value(self, record: JobRecord, column: str) -> object:
        job = record
        if column == "arrival":
            return job.created_at
        if column == "job":
            return job.id
        if column == "challenge":
            return self.challenge_names.get(job.challenge_id, job.challenge_id).casefold()
        if column == "miner":
            return job.miner_hotkey
        if column == "state":
            return JOB_STATE_ORDER[job.state]
        if column == "score":
            return -1.0 if job.score is None else job.score
        if column == "elapsed":
            return job.elapsed(self.now) if job.claimed_at or job.finished_at else -1.0
        if column == "vm":
            return job.vm_id or ""
        if column == "host":
            return job.host
        return job_reason(job).casefold()

    def matches(self, record: JobRecord) -> bool:
        if not self.state_filter.admits(record):
            return False
        return not self.filter_text or self.filter_text in self._haystack(record)

    def ticking(self, record: JobRecord) -> bool:
        return record.claimed_at is not None and not record.state.finished

    def ticking_columns(self) -> frozenset[str]:
        return TICKING

    def _haystack(self, job: JobRecord) -> str:
        """Everything the text filter looks in: every column, whole."""
        text = self._haystacks.get(job.id)
        if text is None:
            name = self.challenge_names.get(job.challenge_id, job.challenge_id)
            parts = (
                job.id,
                name,
                job.miner_hotkey,
                job.state.value,
                score_text(job.score),
                job.vm_id or "",
                job.host,
                job_reason(job),
                job.result_status,
            )
            text = self._haystacks[job.id] = "\n".join(clean_line(p, 300) for p in parts).casefold()
        return text

    # -- title --------------------------------------------------------------------------------

    def _update_title(self) -> None:
        held = len(self.records)
        total = self.held_by_engine
        parts = [
            f"Jobs {held} of {total} · latest {held} shown" if total > held else f"Jobs ({held})"
        ]
        if self.state_filter is not StateFilter.ALL or self.filter_text:
            parts[0] = f"Jobs {self.row_count}/{held}"
            if total > held:
                parts.append(f"latest {held} of {total}")
        if self.state_filter is not StateFilter.ALL:
            parts.append(self.state_filter.value)
        if self.filter_text:
            parts.append(f"matching “{clean_line(self.filter_text, 40)}”")
        if self.follow:
            parts.append("following newest")
        elif (above := round(self.scroll_y)) > 0:
            parts.append(f"↑ {above} more (home)")
        self.set_title(Text(" · ".join(parts)))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if round(old_value) != round(new_value):
            self._update_title()
