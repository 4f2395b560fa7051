"""Job details: the full record, its timeline, the result and the evaluator's logs."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from validator_tui.control import JobRecord, JobState
from validator_tui.sanitize import clean_line, clean_lines
from validator_tui.tui.format import duration, job_state_text, score_text, when

MAX_LOG_LINES = 500
REFRESH_S = 0.5


#: What a pending job's details say when nothing holds it.
NOT_WAITING = "nothing holds it: the next claim pass takes it"


def _field(value: object) -> Text:
    return Text(clean_line(str(value), 500) if value not in (None, "") else "-")


def job_details(job: JobRecord, challenge_name: str, now: float) -> RenderableType:
    """Everything known about `job` as Rich renderables built from Text (no markup parsed)."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", justify="right")
    fields.add_column()
    rows: list[tuple[str, Text]] = [
        ("job", _field(job.id)),
        ("state", job_state_text(job.state)),
        ("challenge", _field(f"{challenge_name} ({job.challenge_id})")),
        ("submission", _field(job.submission_id)),
        ("miner", _field(job.miner_hotkey)),
        ("created", Text(when(job.created_at, now))),
        ("claimed", Text(when(job.claimed_at, now))),
        ("finished", Text(when(job.finished_at, now))),
        ("elapsed", Text(duration(job.elapsed(now)))),
        ("vm", _field(job.vm_id)),
        ("host port", _field(job.host_port)),
        ("score", Text(score_text(job.score))),
        (
            "exec time",
            _field(None if job.execution_time_ms is None else f"{job.execution_time_ms} ms"),
        ),
        ("result", _field(job.result_status)),
        ("error", Text(clean_line(job.error, 1000), style="bold red") if job.error else Text("-")),
    ]
    if job.state is JobState.PENDING:
        waiting = clean_line(job.waiting_reason, 1000) or NOT_WAITING
        rows.insert(2, ("waiting", Text(waiting, "yellow")))
    for label, value in rows:
        fields.add_row(label, value)

    parts: list[RenderableType] = [fields]
    parts.append(_section("Metrics"))
    if job.metrics:
        for key, metric in sorted(job.metrics.items()):
            rendered = json.dumps(metric, default=str, ensure_ascii=False)
            parts.append(Text(f"  {clean_line(key, 100)} = {clean_line(rendered, 500)}"))
    else:
        parts.append(Text("  none", style="dim"))
    parts.append(_section("Timeline"))
    if job.timeline:
        for entry in job.timeline:
            line = Text(f"  {when(entry.at, now)}  ", style="dim")
            line.append(clean_line(entry.text, 500))
            parts.append(line)
    else:
        parts.append(Text("  nothing yet", style="dim"))
    parts.append(_section(f"Logs ({len(job.logs)} lines)"))
    if job.logs:
        for log_line in clean_lines(job.logs, MAX_LOG_LINES):
            parts.append(Text(f"  {log_line}"))
    else:
        parts.append(Text("  none", style="dim"))
    return Group(*parts)


def _section(title: str) -> Text:
    return Text(f"\n{title}", style="bold underline")


class JobDetailsScreen(ModalScreen[None]):
    """Shows one job and keeps it current while open; `esc` closes."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(
        self,
        job_id: str,
        lookup: Callable[[str], Awaitable[tuple[JobRecord | None, str]]],
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self._lookup = lookup
        self._clock = clock
        self._shown: JobRecord | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details-dialog") as scroll:
            scroll.border_title = Text(f"Job {clean_line(self.job_id, 80)}")
            scroll.border_subtitle = "esc close"
            yield Static(id="details-body")

    def on_mount(self) -> None:
        self.call_later(self._refresh_job)
        self.set_interval(REFRESH_S, self._refresh_job)

    async def _refresh_job(self) -> None:
        job, challenge_name = await self._lookup(self.job_id)
        if job is None:
            if self._shown is None:
                self.query_one("#details-body", Static).update(Text("This job is gone."))
            return
        if job is self._shown and job.state.finished:
            return
        self._shown = job
        self.query_one("#details-body", Static).update(
            job_details(job, challenge_name, self._clock())
        )

    def action_close(self) -> None:
        self.dismiss(None)
