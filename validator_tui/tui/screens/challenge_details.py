"""Challenge CVM details: state and its history, the last error, compose and commit, the VM
(id, status, boot progress, port), the jobs it ran, and the CVM's log, kept current."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from validator_tui.control import ChallengeRecord, ChallengeStats, VmRecord
from validator_tui.sanitize import clean_line
from validator_tui.tui.format import challenge_state_text, duration, when
from validator_tui.tui.widgets.vm_console import LogSource, VmConsole

REFRESH_S = 0.5
#: Where the challenge's record and its CVM's record come from (the main screen's copies).
ChallengeLookup = Callable[[str], tuple[ChallengeRecord | None, VmRecord | None]]


def _field(value: object) -> Text:
    return Text(clean_line(str(value), 500) if value not in (None, "") else "-")


def stats_text(stats: ChallengeStats) -> Text:
    """`12 done · 3 failed · 80% success · mean score 0.612 · p50 1.5s · p95 4.2s`."""
    rate = stats.success_rate
    if rate is None:
        return Text("no job finished in the last hour", style="dim")
    text = Text()
    text.append(f"{stats.completed} done", style="green")
    text.append(" · ")
    text.append(f"{stats.failed} failed", style="bold red" if stats.failed else "")
    text.append(f" · {rate:.0%} success")
    if stats.mean_score is not None:
        text.append(f" · mean score {stats.mean_score:.3f}")
    for label, ms in (("p50", stats.p50_ms), ("p95", stats.p95_ms)):
        if ms is not None:
            text.append(f" · {label} {_exec_time(ms)}")
    return text


def _exec_time(ms: int) -> str:
    """`850ms`, `4.2s`, `2m05s`: an execution time at a precision worth reading."""
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    return duration(ms / 1000)


def challenge_details(
    challenge: ChallengeRecord, vm: VmRecord | None, now: float
) -> RenderableType:
    """Everything known about one challenge CVM, as Text (nothing parsed as markup)."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", justify="right")
    fields.add_column()
    state = challenge_state_text(challenge.state)
    if challenge.reason:
        state.append(f"  {clean_line(challenge.reason, 300)}", style="dim")
    uptime = None if challenge.active_since is None else max(0.0, now - challenge.active_since)
    host_port = challenge.host_port
    if host_port is None and vm is not None:
        host_port = vm.host_port
    rows: list[tuple[str, Text]] = [
        ("challenge", _field(f"{challenge.name or challenge.id} ({challenge.id})")),
        ("state", state),
        (
            "last error",
            Text(clean_line(challenge.last_error, 1000), style="bold red")
            if challenge.last_error
            else Text("none", style="dim"),
        ),
        ("repository", _field(challenge.github_repo)),
        ("commit", _field(challenge.github_commit)),
        ("compose hash", _field(challenge.compose_hash)),
        ("mechanism", _field(f"{challenge.mechanism_id} · emission {challenge.emission_share:g}")),
        ("VM", _field(challenge.vm_id)),
        ("VM status", _field(challenge.vm_status or (vm.status if vm else ""))),
        ("boot progress", _field(challenge.boot_progress or (vm.boot_progress if vm else ""))),
        ("boot error", _field(vm.boot_error if vm else "")),
        ("host port", _field(host_port)),
        ("active since", Text(when(challenge.active_since, now))),
        ("uptime", Text("-" if uptime is None else duration(uptime))),
        ("jobs running", Text(str(challenge.jobs_running))),
        ("jobs run", Text(f"{challenge.jobs_run} (since the engine started)")),
        ("last hour", stats_text(challenge.stats)),
    ]
    for label, value in rows:
        fields.add_row(label, value)
    parts: list[RenderableType] = [fields, Text("\nState history", style="bold underline")]
    if challenge.history:
        for entry in reversed(challenge.history):
            line = Text(f"  {when(entry.at, now)}  ", style="dim")
            line.append(clean_line(entry.text, 500))
            parts.append(line)
    else:
        parts.append(Text("  nothing recorded yet", style="dim"))
    return Group(*parts)


class ChallengeDetailsScreen(ModalScreen[None]):
    """One challenge CVM, refreshed while open, with its log below; `esc` closes."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
    ]

    def __init__(
        self,
        challenge_id: str,
        lookup: ChallengeLookup,
        log_source: LogSource,
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self.challenge_id = challenge_id
        self._lookup = lookup
        self._log_source = log_source
        self._clock = clock
        self._shown: tuple[ChallengeRecord | None, VmRecord | None, int] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="cvm-details-dialog") as dialog:
            dialog.border_title = Text(f"Challenge CVM {clean_line(self.challenge_id, 80)}")
            dialog.border_subtitle = "esc close"
            with VerticalScroll(id="cvm-details-scroll"):
                yield Static(id="cvm-details-body")
            yield VmConsole(self._log_source, id="cvm-log")

    def on_mount(self) -> None:
        self.query_one("#cvm-log", VmConsole).add_class("panel")
        self._refresh_challenge()
        self.set_interval(REFRESH_S, self._refresh_challenge)

    @property
    def body(self) -> Static:
        return self.query_one("#cvm-details-body", Static)

    def _refresh_challenge(self) -> None:
        challenge, vm = self._lookup(self.challenge_id)
        now = self._clock()
        shown = (challenge, vm, int(now))
        if self._shown == shown:
            return
        self._shown = shown
        if challenge is None:
            self.body.update(Text("This challenge has left the active list."))
            return
        self.body.update(challenge_details(challenge, vm, now))
        label = f"{challenge.name or challenge.id} · {challenge.vm_id}"
        self.query_one("#cvm-log", VmConsole).follow(challenge.vm_id, label)

    def action_close(self) -> None:
        self.dismiss(None)
