"""The main screen: header, job feed, challenge CVMs, quota, events and the VM console, with
the actions on what the operator selected. Its bindings go quiet while a dialog is up.

Every key answers: an action that cannot act on the selection says why in a toast
(`why_not`), and the footer dims (or, in a read-only console, hides) what does not apply.
The screen keeps the layout and the wiring: the rules are pure functions over its `Selection`
(tui/refusals.py, tui/questions.py), commands go through its `CommandRunner`, the focus ring
is its `PanelRing` and the prompt its `FilterBar`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from textual import events, on
from textual.app import ComposeResult
from textual.binding import ActiveBinding
from textual.containers import Horizontal, Vertical
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input

from validator_tui.control import (
    Header,
    HostRecord,
    JobRecord,
    JobState,
    LinkStatus,
    StateDelta,
    VmRecord,
)
from validator_tui.tui import refusals
from validator_tui.tui.actions import Owner, bindings
from validator_tui.tui.command_runner import CommandRunner
from validator_tui.tui.format import wall_time
from validator_tui.tui.panel_ring import PanelRing
from validator_tui.tui.questions import ask
from validator_tui.tui.refusals import MAIN_ACTIONS, READ_ONLY
from validator_tui.tui.screens.challenge_details import ChallengeDetailsScreen
from validator_tui.tui.screens.job_details import JobDetailsScreen
from validator_tui.tui.screens.orm import OrmScreen
from validator_tui.tui.screens.outbox import OutboxScreen
from validator_tui.tui.selection import CHALLENGES, HOSTS, JOBS, Selection
from validator_tui.tui.widgets.challenge_table import ChallengeTable
from validator_tui.tui.widgets.event_log import EventLog
from validator_tui.tui.widgets.filter_bar import FilterBar
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

#: Screen lines from which the right column has room for hosts, gauges, sparkline and events.
ROOM_FOR_SPARKLINE = 44


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
        self.commands = CommandRunner(self, self.selection)
        self.panels = PanelRing(self)
        #: When the console last had the engine's state live (the app's clock).
        self._fresh_at: float | None = None
        self._as_of_shown = ""
        #: Why claims are blocked as a whole ("" when they are not), shown in the header.
        self._banner = ""
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
        # The feed's title shows the filter in force.
        yield FilterBar(id="filter-bar")

    @property
    def filter_bar(self) -> FilterBar:
        return self.query_one(FilterBar)

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
        return self.panels.focused()

    def focus_next(self, selector: str | type[Widget] = "*") -> Widget | None:
        """As `Screen.focus_next`; too narrow for the right column, the next panel of the ring
        (Hosts and Events then take the place of Jobs and Challenge CVMs)."""
        if self.panels.switching():
            return self.panels.cycle(1)
        return super().focus_next(selector)

    def focus_previous(self, selector: str | type[Widget] = "*") -> Widget | None:
        """As `focus_next`, backwards."""
        if self.panels.switching():
            return self.panels.cycle(-1)
        return super().focus_previous(selector)

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
        self.commands.recheck()

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
        self.commands.recheck()

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
        return self.selection().running_jobs()

    # -- selection ----------------------------------------------------------------------------

    def selection(self) -> Selection:
        """What the operator has selected now, with the records around it."""
        feed, table, hosts = self.feed, self.challenge_table, self.host_table
        return Selection(
            active_table=self.active_table,
            cursor_job=feed.selected_job,
            cursor_challenge=table.selected_challenge,
            cursor_host=hosts.selected_host,
            jobs=feed.jobs,
            challenges=table.challenges,
            hosts=hosts.hosts,
            vms=self.vms,
            feed_rows=feed.row_count,
            read_only=self.console_app.read_only,
            embedded=self.console_app.engine.embedded,
            filter_text=feed.filter_text,
            search=self.event_log.search,
            prompt_open=self.filter_bar.is_open,
            events_searched=self._events_searched(),
        )

    def only_host(self) -> HostRecord | None:
        """The pool's host when it has exactly one (no Hosts panel then)."""
        return self.selection().only_host

    def vm_status(self, vm_id: str) -> str:
        """The VM's last known status (from its challenge's record, else the VM list)."""
        return self.selection().vm_status(vm_id)

    def _sync_console(self) -> None:
        selected = self.selection().vm
        if selected is None:
            self.vm_console.follow(None)
        else:
            self.vm_console.follow(selected.vm_id, selected.label)

    def _sync_bindings(self) -> None:
        """Refresh the footer only when what the actions can do has changed."""
        sel = self.selection()
        signature = tuple(refusals.why_not(name, sel) for name in sorted(MAIN_ACTIONS))
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
            self.panels.show_aside(panel)
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
        return refusals.why_not(name, self.selection())

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        """As `Screen.active_bindings`, with this screen's actions dimmed when they do not
        apply now and hidden in a read-only console (their keys still answer)."""
        shown: dict[str, ActiveBinding] = {}
        sel = self.selection()
        for key, active in super().active_bindings.items():
            if active.node is self and active.binding.action in MAIN_ACTIONS:
                reason = refusals.why_not(active.binding.action, sel)
                if reason == READ_ONLY:
                    continue
                active = active._replace(enabled=reason is None)
            shown[key] = active
        return shown

    # -- job actions --------------------------------------------------------------------------

    def action_claim_job(self) -> None:
        job = self.selection().job
        if self.commands.refused("claim_job") or job is None:
            return
        self.commands.run("claim", lambda: self.console_app.engine.claim(job.id))

    def action_cancel_job(self) -> None:
        self.commands.ask("cancel_job", self.console_app.engine.cancel)

    def action_details(self) -> None:
        if self.commands.refused("details"):
            return
        sel = self.selection()
        job, challenge = sel.job, sel.challenge
        clock = self.console_app.clock
        if job is not None:
            self.app.push_screen(JobDetailsScreen(job.id, self._lookup_job, clock))
        elif challenge is not None:
            self.app.push_screen(
                ChallengeDetailsScreen(
                    challenge.id,
                    lambda challenge_id: self.selection().challenge_with_vm(challenge_id),
                    self.vm_log_lines,
                    clock,
                )
            )

    async def _lookup_job(self, job_id: str) -> tuple[JobRecord | None, str]:
        """The job as the feed shows it, else from the engine's history (the feed is bounded)."""
        job = self.feed.jobs.get(job_id) or await self.console_app.engine.job(job_id)
        if job is None:
            return None, ""
        return job, self.challenge_table.names().get(job.challenge_id, job.challenge_id)

    def action_copy_id(self) -> None:
        if self.commands.refused("copy_id"):
            return
        sel = self.selection()
        job, challenge = sel.job, sel.challenge
        if job is not None:
            self.commands.copy("job id", job.id)
        elif challenge is not None:
            self.commands.copy("challenge id", challenge.id)

    def action_copy_vm_id(self) -> None:
        target = self.selection().vm
        if self.commands.refused("copy_vm_id") or target is None:
            return
        self.commands.copy("VM id", target.vm_id)

    def action_next_failed(self) -> None:
        if self.commands.refused("next_failed"):
            return
        self.feed.focus()
        if self.feed.next_failed() is None:
            self.commands.toast(
                "no failed job shown: the filter hides them", title="Next failed: not done"
            )

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
        events = self.focused_panel() is self.event_log
        value = self.event_log.search if events else self.feed.filter_text
        self.filter_bar.open(events=events, value=value)

    def _events_searched(self) -> bool:
        """Whether the prompt and escape act on the event log's search (not the feed's filter)."""
        if self.filter_bar.is_open:
            return self.filter_bar.searching_events
        return self.focused_panel() is self.event_log

    def action_clear_filter(self) -> None:
        if self.commands.refused("clear_filter"):
            return
        self.filter_bar.clear()
        if self._events_searched():
            self.event_log.set_search("")
        else:
            self.feed.set_filter("", self.console_app.clock())
        self._close_filter_prompt()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self.filter_bar.searching_events:
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

    def _close_filter_prompt(self) -> None:
        """Give the footer its line back (the filter or search stays in force) and the focus
        to what it filters."""
        searched = self._events_searched()
        self.filter_bar.close()
        (self.event_log if searched else self.feed).focus()
        self._sync_bindings()

    def action_zoom(self) -> None:
        """Zoom the focused panel to the full screen, or back."""
        if self.maximized is not None:
            self.minimize()
            return
        panel = self.focused_panel()
        if panel is None:
            self.commands.toast(
                "nothing to zoom: focus a panel first (tab)", title="Zoom: not done"
            )
            return
        self.maximize(panel, container=False)

    # -- CVM and VM actions -------------------------------------------------------------------

    def action_rebuild_challenge(self) -> None:
        self.commands.ask("rebuild_challenge", self.console_app.engine.rebuild)

    def action_start_vm(self) -> None:
        target = self.selection().vm
        if self.commands.refused("start_vm") or target is None:
            return
        self.commands.run("start VM", lambda: self.console_app.engine.start_vm(target.vm_id))

    def action_stop_vm(self) -> None:
        self.commands.ask("stop_vm", self.console_app.engine.stop_vm)

    def action_remove_vm(self) -> None:
        self.commands.ask("remove_vm", self.console_app.engine.remove_vm)

    # -- host actions -------------------------------------------------------------------------

    def action_drain_host(self) -> None:
        self.commands.ask("drain_host", self.console_app.engine.drain_host)

    def action_undrain_host(self) -> None:
        self.commands.ask("undrain_host", self.console_app.engine.undrain_host)

    # -- console actions ----------------------------------------------------------------------

    def action_toggle_auto_claim(self) -> None:
        if self.commands.refused("toggle_auto_claim"):
            return
        enabled = not self.header.auto_claim
        self.commands.run("auto-claim", lambda: self.console_app.engine.set_auto_claim(enabled))

    def action_orm_query(self) -> None:
        if self.commands.refused("orm_query"):
            return
        challenges, selected = self.selection().orm_choices()
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
        if self.commands.refused("stop_validator"):
            return
        question = ask("stop_validator", self.selection())
        if question is not None:
            self.commands.confirm(question, self.console_app.stop_validator_and_exit)
