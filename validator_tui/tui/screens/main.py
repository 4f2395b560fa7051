"""The main screen: header, job feed, challenge CVMs, quota, events and the VM console, with
the actions on what the operator selected. Its bindings go quiet while a dialog is up.

Every key answers: an action that cannot act on the selection says why in a toast
(`why_not`), and the footer dims (or, in a read-only console, hides) what does not apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import ActiveBinding
from textual.containers import Horizontal, Vertical
from textual.notifications import SeverityLevel
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, Label, Log

from validator_tui.control import (
    ChallengeRecord,
    Header,
    HostRecord,
    HostState,
    JobRecord,
    JobState,
    LinkStatus,
    Outcome,
    StateDelta,
    VmRecord,
)
from validator_tui.sanitize import clean_line
from validator_tui.tui.actions import Owner, actions_of, bindings, by_name
from validator_tui.tui.format import short_id, wall_time
from validator_tui.tui.screens.challenge_details import ChallengeDetailsScreen
from validator_tui.tui.screens.confirm import ConfirmScreen
from validator_tui.tui.screens.job_details import JobDetailsScreen
from validator_tui.tui.screens.orm import OrmScreen
from validator_tui.tui.screens.outbox import OutboxScreen
from validator_tui.tui.screens.quit import running_jobs_text, stop_consequences
from validator_tui.tui.widgets.challenge_table import ChallengeTable
from validator_tui.tui.widgets.event_log import EventLog
from validator_tui.tui.widgets.host_table import HostTable
from validator_tui.tui.widgets.job_feed import JobFeed
from validator_tui.tui.widgets.key_footer import KeyFooter
from validator_tui.tui.widgets.line_table import LineTable
from validator_tui.tui.widgets.quota_panel import QuotaGauges, QuotaPanel
from validator_tui.tui.widgets.status_bar import StatusBar, claims_banner
from validator_tui.tui.widgets.titles import QuietTitles
from validator_tui.tui.widgets.vm_console import VmConsole

if TYPE_CHECKING:
    from validator_tui.tui.app import ValidatorApp

STARTABLE_VM = frozenset({"stopped", "exited"})
STOPPABLE_VM = frozenset({"running", "stopping"})
#: The refusal of every command in a read-only console.
READ_ONLY = "read-only console: commands are refused"
#: The main screen's own actions (the footer dims those that do not apply).
MAIN_ACTIONS = frozenset(action.name for action in actions_of(Owner.MAIN))
JOBS, CHALLENGES, HOSTS = "jobs", "challenges", "hosts"
EVENTS, CONSOLE = "events", "console"
#: Panels that take the place of Jobs and Challenge CVMs on a screen too narrow for both.
ASIDE = frozenset({HOSTS, EVENTS})
#: Screen lines from which the right column has room for hosts, gauges, sparkline and events.
ROOM_FOR_SPARKLINE = 44


@dataclass(frozen=True, slots=True)
class VmTarget:
    """The VM an action would act on: a job's VM or a challenge's CVM."""

    vm_id: str
    job: JobRecord | None = None
    challenge: ChallengeRecord | None = None

    @property
    def label(self) -> str:
        """`job 1234abcd · <vm id>` or `term-bench · <vm id>` (sanitised)."""
        if self.job is not None:
            owner = f"job {short_id(self.job.id)}"
        elif self.challenge is not None:
            owner = clean_line(self.challenge.name or self.challenge.id, 60)
        else:
            owner = "VM"
        return f"{owner} · {clean_line(self.vm_id, 80)}"


@dataclass(frozen=True, slots=True)
class Question:
    """An open confirm dialog: its screen, its action's label and why it no longer applies
    (`stale`: None while it still does)."""

    screen: ConfirmScreen
    label: str
    stale: Callable[[], str | None]


def _job_now(job: JobRecord, meanwhile: bool) -> str:
    """`job 1234abcd is completed`, or as news: `job 1234abcd completed meanwhile`."""
    if meanwhile:
        return f"job {short_id(job.id)} {job.state.value} meanwhile"
    return f"job {short_id(job.id)} is {job.state.value}"


def _job_state_refusal(name: str, job: JobRecord, *, meanwhile: bool = False) -> str | None:
    """Why job action `name` cannot act on `job` in its state (`meanwhile`: worded as a change
    since the operator was asked)."""
    if name == "claim_job" and job.state is not JobState.PENDING:
        return f"{_job_now(job, meanwhile)}: only a pending job can be claimed"
    if name == "cancel_job":
        if job.state is JobState.PENDING:
            return f"{_job_now(job, meanwhile)}: it is not claimed, there is nothing to cancel"
        if job.state.finished:
            if meanwhile:
                return f"{_job_now(job, meanwhile)}: nothing to cancel"
            return (
                f"job {short_id(job.id)} is already {job.state.value}: there is nothing to cancel"
            )
    return None


def _host_state_refusal(name: str, host: HostRecord, *, meanwhile: bool = False) -> str | None:
    """Why host action `name` cannot act on `host` in its state (`meanwhile`: since asked)."""
    shown = f"host {clean_line(host.id, 40)} is {'now ' if meanwhile else ''}{host.state.value}"
    if name == "drain_host" and host.draining:
        return f"{shown}: it is already being drained"
    if name == "undrain_host" and not host.draining:
        return f"{shown}: only a drained or draining host can be undrained"
    return None


class MainScreen(Screen[None]):
    """Shows the engine's state (fed by the app) and acts on the selection."""

    BINDINGS = bindings(Owner.MAIN)
    #: A zoomed panel (`z`) keeps the footer and the search prompt below it.
    ALLOW_IN_MAXIMIZED_VIEW = "KeyFooter, #filter-bar"
    #: `z` zooms back; escape keeps clearing the filter or the search.
    ESCAPE_TO_MINIMIZE = False

    #: Textual's `Screen.focused` repaints the whole screen when the focus moves, though the
    #: widgets whose focus styles change repaint themselves: a full render of every panel
    #: on each focus change (opening the filter, closing a dialog), for nothing.
    focused: Reactive[Widget | None] = Reactive(None, repaint=False)

    def __init__(self) -> None:
        super().__init__()
        self.header = Header()
        self.vms: dict[str, VmRecord] = {}
        self.active_table: str = JOBS
        self._bindings_signature: tuple[str | None, ...] = ()
        self._question: Question | None = None
        #: When the console last had the engine's state live (the app's clock).
        self._fresh_at: float | None = None
        self._as_of_shown = ""
        #: Why claims are blocked as a whole ("" when they are not), shown in the header.
        self._banner = ""
        #: Whether the open prompt searches the event log (else it filters the job feed).
        self._search_events = False
        #: The waiting reasons of the pending jobs in the feed (kept from the last job change).
        self._waiting: list[str] = []

    @property
    def console_app(self) -> ValidatorApp:
        """The app, typed."""
        from validator_tui.tui.app import ValidatorApp

        assert isinstance(self.app, ValidatorApp)
        return self.app

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield JobFeed(id="jobs")
                yield ChallengeTable(id="challenges")
            with Vertical(id="right"):
                yield HostTable(id="hosts")
                yield QuotaPanel(id="quota")
                yield EventLog(id="events")
        yield QuotaGauges(id="quota-line", classes="compact")
        yield VmConsole(self.vm_log_lines, id="console")
        yield KeyFooter()
        # The filter prompt takes the footer's line while it is open (like htop's): opening it
        # moves nothing, the feed keeps its size. The feed's title shows the filter in force.
        with Horizontal(id="filter-bar"):
            yield Label("Filter jobs:", id="filter-label")
            yield Input(
                placeholder="any column, the whole error · enter keeps it · esc clears it",
                id="filter",
            )

    @property
    def feed(self) -> JobFeed:
        return self.query_one("#jobs", JobFeed)

    @property
    def challenge_table(self) -> ChallengeTable:
        return self.query_one("#challenges", ChallengeTable)

    @property
    def vm_console(self) -> VmConsole:
        return self.query_one("#console", VmConsole)

    @property
    def host_table(self) -> HostTable:
        return self.query_one("#hosts", HostTable)

    @property
    def event_log(self) -> EventLog:
        return self.query_one("#events", EventLog)

    def focused_panel(self) -> Widget | None:
        """The panel that holds the focus (None while the filter prompt has it)."""
        focused = self.focused
        if focused is None:
            return None
        panels = (n for n in focused.ancestors_with_self if n.has_class("panel"))
        return next((n for n in panels if isinstance(n, Widget)), None)

    def _panel_ring(self) -> list[Widget]:
        """The panels `tab` goes through, in order (Hosts only with several hosts)."""
        ring: list[Widget] = [self.feed, self.challenge_table]
        if len(self.host_table.hosts) > 1:
            ring.append(self.host_table)
        return [*ring, self.event_log, self.vm_console]

    def focus_next(self, selector: str | type[Widget] = "*") -> Widget | None:
        """As `Screen.focus_next`; too narrow for the right column, the next panel of the ring
        (Hosts and Events then take the place of Jobs and Challenge CVMs)."""
        if self._switching_panels():
            return self._cycle_panels(1)
        return super().focus_next(selector)

    def focus_previous(self, selector: str | type[Widget] = "*") -> Widget | None:
        """As `focus_next`, backwards."""
        if self._switching_panels():
            return self._cycle_panels(-1)
        return super().focus_previous(selector)

    def _switching_panels(self) -> bool:
        return self.has_class("-narrow") and self.maximized is None and bool(self.focused_panel())

    def _cycle_panels(self, step: int) -> Widget:
        """Focus the panel `step` places along the ring from the focused one."""
        ring = self._panel_ring()
        current = self.focused_panel()
        index = ring.index(current) if current in ring else 0
        panel = ring[(index + step) % len(ring)]
        self._show_aside(panel)
        target = panel.query_one(Log) if panel is self.vm_console else panel
        target.focus()
        return target

    def _show_aside(self, panel: Widget) -> None:
        """Hosts or Events focused: they take the left column's place on a narrow screen;
        Jobs or Challenge CVMs focused: they have it back (the VM console changes nothing)."""
        if panel.id in ASIDE:
            self.add_class("-aside")
        elif panel.id in (JOBS, CHALLENGES):
            self.remove_class("-aside")

    def on_mount(self) -> None:
        widgets = (self.feed, self.challenge_table, self.host_table, self.query_one("#quota"))
        for widget in (*widgets, self.vm_console):
            widget.add_class("panel")
        self.query_one("#events").add_class("panel")
        self.query_one("#filter", Input).cursor_blink = self.console_app.cursor_blink
        self.header = Header(hotkey=self.console_app.engine.info.hotkey)
        self.feed.focus()

    def on_resize(self, event: events.Resize) -> None:
        self.query_one(KeyFooter).set_mode(
            compact=event.size.width < 120, show_command_palette=event.size.width >= 100
        )
        self._fit_right_column()

    def _fit_right_column(self) -> None:
        """With the hosts panel shown on a screen under `ROOM_FOR_SPARKLINE` lines, the
        throughput sparkline gives its lines to the event log (which would have none)."""
        several = self.host_table.display
        room = self.size.height >= ROOM_FOR_SPARKLINE
        self.query_one("#throughput").display = room or not several

    def vm_log_lines(self, vm_id: str) -> AsyncIterator[str]:
        """The VM's log from the engine (the last 200 lines, then followed)."""
        return self.console_app.engine.vm_logs(vm_id, lines=200, follow=True)

    # -- engine state -------------------------------------------------------------------------

    def apply(self, delta: StateDelta, now: float) -> None:
        """Show what changed in the engine (`delta.full`: replace everything). While the
        engine is out of reach everything is shown as of the last time it was in reach."""
        shown = self._shown_time(now)
        feed, table = self.feed, self.challenge_table
        removed_jobs: list[str] = delta.removed_jobs
        removed_challenges: list[str] = delta.removed_challenges
        removed_vms: list[str] = delta.removed_vms
        if delta.full:
            removed_jobs = list(feed.jobs.keys() - {job.id for job in delta.jobs})
            removed_challenges = list(
                table.challenges.keys() - {challenge.id for challenge in delta.challenges}
            )
            removed_vms = list(self.vms.keys() - {vm.id for vm in delta.vms})
        for vm_id in removed_vms:
            self.vms.pop(vm_id, None)
        self.vms.update((vm.id, vm) for vm in delta.vms)
        if delta.hosts or delta.full:
            self._show_hosts(delta, shown)
        table.apply(delta.challenges, removed_challenges, shown)
        feed.rename_challenges(table.names(), shown)
        feed.apply(delta.jobs, removed_jobs, shown, full=delta.full)
        if delta.events:
            self.query_one(EventLog).add_events(delta.events, shown)
        self.header = delta.header
        if delta.jobs or removed_jobs:
            pending = JobState.PENDING
            self._waiting = [j.waiting_reason for j in feed.jobs.values() if j.state is pending]
        hosts = list(self.host_table.hosts.values())
        self._banner = claims_banner(self.header, hosts, self._waiting)
        self._show_header(now)
        self._sync_console()
        self._sync_bindings()
        self._recheck_question()

    def _show_hosts(self, delta: StateDelta, now: float) -> None:
        """Update the hosts panel; with several hosts it shows, and so do the host columns."""
        hosts = self.host_table
        hosts.apply(delta.hosts, now, full=delta.full)
        several = len(hosts.hosts) > 1
        if hosts.display != several:
            hosts.display = several
            self._fit_right_column()
        hidden = () if several else ("host",)
        self.feed.set_hidden(hidden)
        self.challenge_table.set_hidden(hidden)

    def tick(self, now: float) -> None:
        """Refresh what shows relative times (as of the last state, while the engine is out of
        reach)."""
        shown = self._shown_time(now)
        self.feed.tick(shown)
        self.challenge_table.tick(shown)
        self.host_table.tick(shown)
        self._show_header(now)
        self._recheck_question()

    def _shown_time(self, now: float) -> float:
        """The time the console shows the engine's state at: `now` while the state is live;
        while the engine is out of reach (an attached console whose link is down), the last
        time it was live, and every panel dims and says "as of" that time."""
        engine = self.console_app.engine
        live = engine.embedded or engine.link.status is LinkStatus.CONNECTED
        if live or self._fresh_at is None:
            self._fresh_at = now
        as_of = "" if live else f"as of {wall_time(self._fresh_at, now)}"
        if as_of != self._as_of_shown:
            self._as_of_shown = as_of
            self.set_class(bool(as_of), "-stale")
            for panel in self.query(".panel"):
                if isinstance(panel, QuietTitles):
                    panel.set_subtitle(as_of)
        return now if live else self._fresh_at

    def _show_header(self, now: float) -> None:
        engine = self.console_app.engine
        attached = None if engine.embedded else engine.info
        shown_at, as_of = self._shown_time(now), self._as_of_shown
        self.query_one(StatusBar).show(
            self.header,
            now,
            attached=attached,
            link=engine.link,
            as_of=(shown_at, as_of),
            banner=self._banner,
            host=self.only_host(),
        )
        self.query_one(QuotaPanel).show(
            self.header.quota, self.header.throughput, self.header.failures
        )
        self.query_one("#quota-line", QuotaGauges).show(self.header.quota, as_of=as_of)

    def running_jobs(self) -> int:
        """Jobs claimed by this validator and not finished (the feed never drops one)."""
        return sum(1 for job in self.feed.jobs.values() if job.state.active)

    # -- selection ----------------------------------------------------------------------------

    def selected_job(self) -> JobRecord | None:
        """The job under the feed's cursor, when the job feed is the active table."""
        return self.feed.selected_job if self.active_table == JOBS else None

    def selected_challenge(self) -> ChallengeRecord | None:
        """The challenge under the CVM table's cursor, when that table is the active one."""
        return self.challenge_table.selected_challenge if self.active_table == CHALLENGES else None

    def only_host(self) -> HostRecord | None:
        """The pool's host when it has exactly one (no Hosts panel then)."""
        hosts = self.host_table.hosts
        return next(iter(hosts.values())) if len(hosts) == 1 else None

    def selected_host(self) -> HostRecord | None:
        """The host under the Hosts panel's cursor when that table is the active one, else the
        host of the selected job or challenge CVM; with a single host, that host."""
        hosts = self.host_table.hosts
        if self.active_table == HOSTS:
            return self.host_table.selected_host
        job, challenge = self.selected_job(), self.selected_challenge()
        name = job.host if job is not None else challenge.host if challenge is not None else ""
        return hosts.get(name) or self.only_host()

    def selected_vm(self) -> VmTarget | None:
        """The VM of the selection: the selected job's VM or the selected challenge's CVM."""
        job = self.selected_job()
        if job is not None and job.vm_id:
            return VmTarget(job.vm_id, job=job)
        challenge = self.selected_challenge()
        if challenge is not None and challenge.vm_id:
            return VmTarget(challenge.vm_id, challenge=challenge)
        return None

    def vm_status(self, vm_id: str) -> str:
        """The VM's last known status (from its challenge's record, else the VM list)."""
        for challenge in self.challenge_table.challenges.values():
            if challenge.vm_id == vm_id and challenge.vm_status:
                return challenge.vm_status
        vm = self.vms.get(vm_id)
        return "" if vm is None else vm.status

    def _sync_console(self) -> None:
        selected = self.selected_vm()
        if selected is None:
            self.vm_console.follow(None)
        else:
            self.vm_console.follow(selected.vm_id, selected.label)

    def _sync_bindings(self) -> None:
        """Refresh the footer only when what the actions can do has changed."""
        signature = tuple(self.why_not(name) for name in sorted(MAIN_ACTIONS))
        if signature != self._bindings_signature:
            self._bindings_signature = signature
            self.refresh_bindings()

    @on(LineTable.RowSelected, "#jobs")
    @on(LineTable.RowSelected, "#challenges")
    def _row_selected(self, event: LineTable.RowSelected) -> None:
        """`enter` on a table opens the details of its row."""
        self._set_active(event.table.id)
        self.action_details()

    @on(LineTable.CursorMoved)
    def _row_highlighted(self, event: LineTable.CursorMoved) -> None:
        if event.table.has_focus:
            self._set_active(event.table.id)
        self._sync_console()
        self._sync_bindings()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        focused, panel = self.focused, self.focused_panel()
        if panel is not None:
            self._show_aside(panel)
        if focused is not None:
            self._set_active(focused.id)
            self._sync_console()
            self._sync_bindings()

    def _set_active(self, table_id: str | None) -> None:
        if table_id in (JOBS, CHALLENGES, HOSTS):
            self.active_table = table_id

    # -- what applies -------------------------------------------------------------------------

    def why_not(self, name: str) -> str | None:
        """Why the action `name` cannot act on the selection now; None when it can."""
        if name not in MAIN_ACTIONS:
            return None
        if self.console_app.read_only and not by_name(name).read_only_safe:
            return READ_ONLY
        if name in ("claim_job", "cancel_job"):
            return self._job_refusal(name)
        if name == "rebuild_challenge":
            if self.active_table != CHALLENGES:
                return "select a challenge CVM first (tab to the Challenge CVMs table)"
            return None if self.selected_challenge() is not None else "no challenge CVM yet"
        if name in ("start_vm", "stop_vm", "remove_vm", "copy_vm_id"):
            return self._vm_refusal(name)
        if name in ("details", "copy_id"):
            nothing = self.selected_job() is None and self.selected_challenge() is None
            return "nothing selected: select a job or a challenge CVM" if nothing else None
        if name == "next_failed" and not any(
            job.state is JobState.FAILED for job in self.feed.jobs.values()
        ):
            return "no failed job in the feed"
        if name == "clear_filter":
            field_open = self.has_class("-filtering")
            if self._events_searched():
                return None if self.event_log.search or field_open else "no search to clear"
            return None if self.feed.filter_text or field_open else "no filter to clear"
        if name == "orm_query" and not self.challenge_table.challenges:
            return "no challenge to query yet"
        if name in ("drain_host", "undrain_host"):
            return self._host_refusal(name)
        return None

    def _host_refusal(self, name: str) -> str | None:
        host = self.selected_host()
        if host is None:
            return "select a host in the Hosts panel (or a job or CVM on it)"
        return _host_state_refusal(name, host)

    def _job_refusal(self, name: str) -> str | None:
        if self.active_table != JOBS:
            return "select a job in the job feed first"
        job = self.feed.selected_job
        if job is None:
            if self.feed.row_count:
                return "no job selected: ↑/↓ picks one"
            return "no job selected" + (": none matches the filter" if self.feed.jobs else "")
        return _job_state_refusal(name, job)

    def _vm_refusal(self, name: str) -> str | None:
        target = self.selected_vm()
        if target is None:
            job, challenge = self.selected_job(), self.selected_challenge()
            if job is not None:
                return f"job {short_id(job.id)} has no VM"
            if challenge is not None:
                return f"{clean_line(challenge.name or challenge.id, 60)} has no CVM yet"
            return "select a job or a challenge CVM with a VM"
        return None if name == "copy_vm_id" else self._vm_state_refusal(name, target)

    def _vm_state_refusal(
        self, name: str, target: VmTarget, *, meanwhile: bool = False
    ) -> str | None:
        """Why VM action `name` cannot act on `target` as the console knows it now
        (`meanwhile`: worded as a change since the operator was asked)."""
        job = target.job
        if job is not None and job.state.finished and target.vm_id not in self.vms:
            return f"{_job_now(job, meanwhile)}: its VM was removed when the job finished"
        status = self.vm_status(target.vm_id)
        shown = f"VM {short_id(target.vm_id)} is {'now ' if meanwhile else ''}"
        shown += clean_line(status, 40) or "in an unknown state"
        if name == "start_vm" and status not in STARTABLE_VM:
            return f"{shown}: only a stopped VM can be started"
        if name == "stop_vm" and status not in STOPPABLE_VM:
            return f"{shown}: only a running VM can be stopped"
        return None

    def _refused(self, name: str) -> bool:
        """Toast why `name` cannot act now; True if it cannot."""
        reason = self.why_not(name)
        if reason is None:
            return False
        self.toast(reason, title=f"{by_name(name).title}: not done", severity="warning")
        return True

    # -- questions that go stale --------------------------------------------------------------

    def _job_question_stale(self, asked: JobRecord) -> str | None:
        """Why cancelling `asked` (as the question showed it) no longer applies."""
        job = self.feed.jobs.get(asked.id)
        if job is None:
            return f"job {short_id(asked.id)} left the feed meanwhile"
        return _job_state_refusal("cancel_job", job, meanwhile=True)

    def _vm_question_stale(self, name: str, asked: VmTarget) -> str | None:
        """Why VM action `name` on `asked` (as the question showed it) no longer applies: its
        job finished, its CVM was replaced or removed, or the VM's status changed."""
        if asked.job is not None:
            job = self.feed.jobs.get(asked.job.id)
            if job is None:
                return f"job {short_id(asked.job.id)} left the feed meanwhile"
            ended = job.state.finished and not asked.job.state.finished
            if ended and asked.vm_id in self.vms:
                return (
                    f"{_job_now(job, True)}: the engine removes its VM as the job ends "
                    "(ask again if the VM stays)"
                )
            return self._vm_state_refusal(name, VmTarget(asked.vm_id, job=job), meanwhile=True)
        challenge = self.challenge_table.challenges.get(
            asked.challenge.id if asked.challenge else ""
        )
        if challenge is None:
            return f"{asked.label} left the active list meanwhile"
        shown = clean_line(challenge.name or challenge.id, 60)
        if challenge.vm_id != asked.vm_id:
            if not challenge.vm_id:
                return f"the CVM of {shown} was removed meanwhile"
            return f"the CVM of {shown} was replaced meanwhile (VM {short_id(challenge.vm_id)})"
        current = VmTarget(asked.vm_id, challenge=challenge)
        return self._vm_state_refusal(name, current, meanwhile=True)

    def _challenge_question_stale(self, asked: ChallengeRecord) -> str | None:
        """Why rebuilding `asked` no longer applies: it left the active list."""
        if asked.id in self.challenge_table.challenges:
            return None
        return f"{clean_line(asked.name or asked.id, 60)} left the active list meanwhile"

    def _host_question_stale(self, name: str, asked: HostRecord) -> str | None:
        """Why host action `name` on `asked` no longer applies (it left, or its state did)."""
        host = self.host_table.hosts.get(asked.id)
        if host is None:
            return f"host {clean_line(asked.id, 40)} left the pool meanwhile"
        return _host_state_refusal(name, host, meanwhile=True)

    def _recheck_question(self) -> None:
        """Close the open question when what it asks about changed so that its action no
        longer applies, with a toast that says why. A question under another screen is checked
        once it is on top again (and its answer is checked in any case)."""
        question = self._question
        if question is None or self.app.screen is not question.screen:
            return
        reason = question.stale()
        if reason is not None:
            self._question = None
            question.screen.dismiss(False)
            self._toast_stale(question.label, reason)

    def _toast_stale(self, label: str, reason: str) -> None:
        self.toast(reason, title=f"{label}: not done", severity="warning")

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        """As `Screen.active_bindings`, with this screen's actions dimmed when they do not
        apply now and hidden in a read-only console (their keys still answer)."""
        shown: dict[str, ActiveBinding] = {}
        for key, active in super().active_bindings.items():
            if active.node is self and active.binding.action in MAIN_ACTIONS:
                reason = self.why_not(active.binding.action)
                if reason == READ_ONLY:
                    continue
                active = active._replace(enabled=reason is None)
            shown[key] = active
        return shown

    def toast(
        self, message: str, *, title: str = "", severity: SeverityLevel = "information"
    ) -> None:
        """A toast whose text is shown as is (never parsed as markup)."""
        self.app.notify(message, title=title, severity=severity, markup=False)

    # -- job actions --------------------------------------------------------------------------

    def action_claim_job(self) -> None:
        job = self.selected_job()
        if self._refused("claim_job") or job is None:
            return
        self._run_command("claim", lambda: self.console_app.engine.claim(job.id))

    def action_cancel_job(self) -> None:
        job = self.selected_job()
        if self._refused("cancel_job") or job is None:
            return
        vm = f"its VM {short_id(job.vm_id)} is removed" if job.vm_id else "its VM is removed"
        self._confirm(
            f"Cancel job {short_id(job.id)} ({job.state.value})?",
            f"The job stops: {vm} and the platform gets the error result "
            "“cancelled by operator” (score 0). It counts as cancelled, not failed.",
            "Cancel job",
            lambda: self.console_app.engine.cancel(job.id),
            lambda: self._job_question_stale(job),
            decline="Keep it",
        )

    def action_details(self) -> None:
        if self._refused("details"):
            return
        job, challenge = self.selected_job(), self.selected_challenge()
        clock = self.console_app.clock
        if job is not None:
            self.app.push_screen(JobDetailsScreen(job.id, self._lookup_job, clock))
        elif challenge is not None:
            self.app.push_screen(
                ChallengeDetailsScreen(
                    challenge.id, self._lookup_challenge, self.vm_log_lines, clock
                )
            )

    async def _lookup_job(self, job_id: str) -> tuple[JobRecord | None, str]:
        """The job as the feed shows it, else from the engine's history (the feed is bounded)."""
        job = self.feed.jobs.get(job_id) or await self.console_app.engine.job(job_id)
        if job is None:
            return None, ""
        return job, self.challenge_table.names().get(job.challenge_id, job.challenge_id)

    def _lookup_challenge(
        self, challenge_id: str
    ) -> tuple[ChallengeRecord | None, VmRecord | None]:
        challenge = self.challenge_table.challenges.get(challenge_id)
        vm = None if challenge is None or not challenge.vm_id else self.vms.get(challenge.vm_id)
        return challenge, vm

    def action_copy_id(self) -> None:
        if self._refused("copy_id"):
            return
        job, challenge = self.selected_job(), self.selected_challenge()
        if job is not None:
            self._copy("job id", job.id)
        elif challenge is not None:
            self._copy("challenge id", challenge.id)

    def action_copy_vm_id(self) -> None:
        target = self.selected_vm()
        if self._refused("copy_vm_id") or target is None:
            return
        self._copy("VM id", target.vm_id)

    def _copy(self, what: str, value: str) -> None:
        """Put `value` on the operator's clipboard (OSC 52, written by the app itself)."""
        text = clean_line(value, 200)
        self.app.copy_to_clipboard(text)
        self.toast(
            f"{text}\n(sent to your terminal's clipboard with OSC 52; some terminals need it "
            "allowed)",
            title=f"copied {what}",
        )

    def action_next_failed(self) -> None:
        if self._refused("next_failed"):
            return
        self.feed.focus()
        if self.feed.next_failed() is None:
            self.toast("no failed job shown: the filter hides them", title="Next failed: not done")

    def action_state_filter(self) -> None:
        self.feed.set_state_filter(self.feed.state_filter.next())
        self.feed.focus()
        self._sync_console()
        self._sync_bindings()

    def action_follow_jobs(self) -> None:
        self.feed.set_follow(not self.feed.follow)
        self.feed.focus()
        self._sync_console()
        self._sync_bindings()

    def action_filter(self) -> None:
        """Open the prompt: it searches the event log while that has the focus, else it
        filters the job feed."""
        self._search_events = self.focused_panel() is self.event_log
        prompt = self.query_one("#filter", Input)
        label = "Search events:" if self._search_events else "Filter jobs:"
        self.query_one("#filter-label", Label).update(label)
        prompt.value = self.event_log.search if self._search_events else self.feed.filter_text
        self.add_class("-filtering")
        prompt.focus()

    def _events_searched(self) -> bool:
        """Whether the prompt and escape act on the event log's search (not the feed's filter)."""
        if self.has_class("-filtering"):
            return self._search_events
        return self.focused_panel() is self.event_log

    def action_clear_filter(self) -> None:
        if self._refused("clear_filter"):
            return
        self.query_one("#filter", Input).value = ""
        if self._events_searched():
            self.event_log.set_search("")
        else:
            self.feed.set_filter("", self.console_app.clock())
        self._close_filter_prompt()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._search_events:
            self.event_log.set_search(event.value)
            return
        self.feed.set_filter(event.value, self.console_app.clock())
        self._sync_console()
        self._sync_bindings()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.action_clear_filter()
        else:
            self._close_filter_prompt()

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        if event.widget.id == "filter":
            self.remove_class("-filtering")

    def _close_filter_prompt(self) -> None:
        """Give the footer its line back (the filter or search stays in force) and the focus
        to what it filters."""
        searched = self._events_searched()
        self.remove_class("-filtering")
        self._search_events = False
        (self.event_log if searched else self.feed).focus()
        self._sync_bindings()

    def action_zoom(self) -> None:
        """Zoom the focused panel to the full screen, or back."""
        if self.maximized is not None:
            self.minimize()
            return
        panel = self.focused_panel()
        if panel is None:
            self.toast("nothing to zoom: focus a panel first (tab)", title="Zoom: not done")
            return
        self.maximize(panel, container=False)

    # -- CVM and VM actions -------------------------------------------------------------------

    def action_rebuild_challenge(self) -> None:
        challenge = self.selected_challenge()
        if self._refused("rebuild_challenge") or challenge is None:
            return
        name = clean_line(challenge.name or challenge.id, 60)
        running = challenge.jobs_running
        old = short_id(challenge.vm_id)
        self._confirm(
            f"Rebuild the CVM of {name}?",
            "A fresh CVM is provisioned from the challenge's verified compose; once it is "
            f"active the engine switches to it and removes the old one ({old}). Jobs of {name} "
            "are not claimed until the new CVM is active"
            + (f"; the {running} running in their own VMs go on." if running else "."),
            "Rebuild CVM",
            lambda: self.console_app.engine.rebuild(challenge.id),
            lambda: self._challenge_question_stale(challenge),
            decline="Keep it",
        )

    def action_start_vm(self) -> None:
        target = self.selected_vm()
        if self._refused("start_vm") or target is None:
            return
        self._run_command("start VM", lambda: self.console_app.engine.start_vm(target.vm_id))

    def action_stop_vm(self) -> None:
        target = self.selected_vm()
        if self._refused("stop_vm") or target is None:
            return
        if target.job is not None:
            what = (
                f"Job {short_id(target.job.id)} ({target.job.state.value}) runs in it: the job "
                "fails and the platform gets its error result (score 0). To end a job, cancel "
                "it (x) instead."
            )
            question = f"Stop the VM of job {short_id(target.job.id)}?"
        else:
            name = clean_line(target.challenge.name if target.challenge else "", 60)
            what = (
                f"The challenge CVM of {name} stops and stays stopped until you start it (s) or "
                f"rebuild it (r); no job of {name} is claimed meanwhile. Jobs already running "
                "in their own VMs go on."
            )
            question = f"Stop the CVM of {name}?"
        self._confirm(
            question,
            f"{target.label}\n{what}",
            "Stop VM",
            lambda: self.console_app.engine.stop_vm(target.vm_id),
            lambda: self._vm_question_stale("stop_vm", target),
            decline="Keep it",
        )

    def action_remove_vm(self) -> None:
        target = self.selected_vm()
        if self._refused("remove_vm") or target is None:
            return
        if target.job is not None:
            what = (
                f"The VM and its disk are deleted. Job {short_id(target.job.id)} "
                f"({target.job.state.value}) fails and the platform gets its error result "
                "(score 0)."
                if target.job.state.active
                else "The VM and its disk are deleted; its job is already finished."
            )
            question = f"Remove the VM of job {short_id(target.job.id)}?"
        else:
            name = clean_line(target.challenge.name if target.challenge else "", 60)
            what = (
                f"The challenge CVM of {name} and its disk are deleted. The engine provisions a "
                f"fresh CVM for {name} at its next challenge check (a boot takes minutes); jobs "
                f"of {name} wait until it is active."
            )
            question = f"Remove the CVM of {name}?"
        self._confirm(
            question,
            f"{target.label}\n{what}",
            "Remove VM",
            lambda: self.console_app.engine.remove_vm(target.vm_id),
            lambda: self._vm_question_stale("remove_vm", target),
            decline="Keep it",
        )

    # -- host actions -------------------------------------------------------------------------

    def action_drain_host(self) -> None:
        host = self.selected_host()
        if self._refused("drain_host") or host is None:
            return
        name = clean_line(host.id, 40)
        cvms = sum(1 for c in self.challenge_table.challenges.values() if c.host == host.id)
        running = sum(1 for j in self.feed.jobs.values() if j.state.active and j.host == host.id)
        others = [
            h for h in self.host_table.hosts.values() if h.id != host.id and h.state is HostState.UP
        ]
        where = (
            "to other hosts (a new CVM is active there before the old one is removed)"
            if others
            else "once another host takes VMs (none does now: they stay meanwhile)"
        )
        self._confirm(
            f"Drain host {name}?",
            f"No new VM is placed on {name}. Its {cvms} challenge CVM(s) move {where}; its "
            f"{running} running job(s) finish there. Then it shows drained, until you undrain "
            "it (H). The drain is kept across restarts.",
            "Drain host",
            lambda: self.console_app.engine.drain_host(host.id),
            lambda: self._host_question_stale("drain_host", host),
            decline="Keep it",
        )

    def action_undrain_host(self) -> None:
        host = self.selected_host()
        if self._refused("undrain_host") or host is None:
            return
        name = clean_line(host.id, 40)
        self._confirm(
            f"Return host {name} to the pool?",
            f"{name} is {host.state.value}: new job VMs and challenge CVMs may be placed on it "
            "again (CVMs that moved away stay where they are).",
            "Undrain host",
            lambda: self.console_app.engine.undrain_host(host.id),
            lambda: self._host_question_stale("undrain_host", host),
            decline="Keep it drained",
        )

    # -- console actions ----------------------------------------------------------------------

    def action_toggle_auto_claim(self) -> None:
        if self._refused("toggle_auto_claim"):
            return
        enabled = not self.header.auto_claim
        self._run_command("auto-claim", lambda: self.console_app.engine.set_auto_claim(enabled))

    def action_orm_query(self) -> None:
        if self._refused("orm_query"):
            return
        challenges = sorted(
            ((c.name or c.id, c.id) for c in self.challenge_table.challenges.values()),
            key=lambda pair: pair[0].casefold(),
        )
        job, challenge = self.selected_job(), self.selected_challenge()
        selected = job.challenge_id if job is not None else challenge.id if challenge else None
        self.app.push_screen(
            OrmScreen(
                challenges,
                self.console_app.engine.orm_query,
                selected=selected,
                cursor_blink=self.console_app.cursor_blink,
            )
        )

    def action_outbox(self) -> None:
        engine = self.console_app.engine
        self.app.push_screen(
            OutboxScreen(
                engine.list_outbox,
                engine.retry_dead_letter,
                engine.discard_dead_letter,
                self.console_app.clock,
                read_only=self.console_app.read_only,
            )
        )

    def action_toggle_follow(self) -> None:
        self.vm_console.toggle_pause()

    def action_toggle_wrap(self) -> None:
        self.vm_console.toggle_wrap()

    def action_stop_validator(self) -> None:
        if self._refused("stop_validator"):
            return
        running = self.running_jobs()
        closing = (
            "The console closes once the engine is stopping."
            if self.console_app.engine.embedded
            else "The engine stops; this console closes (there is nothing left to attach to)."
        )
        self.app.push_screen(
            ConfirmScreen(
                f"Stop the validator? {running_jobs_text(running).capitalize()}.",
                f"{stop_consequences(running)}\n{closing}",
                confirm_label="Stop validator",
                decline_label="Keep it running",
            ),
            self._stop_answered,
        )

    def _stop_answered(self, yes: bool | None) -> None:
        if yes:
            self.console_app.stop_validator_and_exit()

    # -- command plumbing ---------------------------------------------------------------------

    def _confirm(
        self,
        question: str,
        detail: str,
        label: str,
        command: Callable[[], Awaitable[Outcome]],
        stale: Callable[[], str | None],
        *,
        decline: str = "No",
    ) -> None:
        """Ask `question`; on yes, run `command`. While the dialog is open, `stale` says why
        the action no longer applies to what it asks about (None while it does): the dialog
        then closes itself with that reason, and a yes is checked against it once more."""
        screen = ConfirmScreen(question, detail, confirm_label=label, decline_label=decline)

        def answered(yes: bool | None) -> None:
            self._question = None
            if not yes:
                return
            reason = stale()
            if reason is not None:
                self._toast_stale(label, reason)
            else:
                self._run_command(label.lower(), command)

        self._question = Question(screen, label, stale)
        self.app.push_screen(screen, answered)

    @work(exit_on_error=False, group="command")
    async def _run_command(self, label: str, command: Callable[[], Awaitable[Outcome]]) -> None:
        outcome = await command()
        message = clean_line(outcome.message, 300)
        if outcome.ok:
            self.toast(message, title=label)
        else:
            self.toast(message, title=f"{label}: refused", severity="error")
        await self.console_app.refresh_from_engine()
