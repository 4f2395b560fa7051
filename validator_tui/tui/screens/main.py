"""The main screen: header, job feed, challenge CVMs, quota, events and the VM console, with
the actions on what the operator selected. Its bindings go quiet while a dialog is up.

Every key answers: an action that cannot act on the selection says why in a toast
(`why_not`), and the footer dims (or, in a read-only console, hides) what does not apply.
The screen keeps the layout and the wiring: every key of the action table goes through its one
`run` action to that action's handler (tui/handlers.py), the rules are pure functions over its
`Selection` (tui/refusals.py, tui/questions.py), commands go through its `CommandRunner`, the
focus ring is its `PanelRing` and the prompt its `FilterBar`.
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
    JobState,
    LinkStatus,
    StateDelta,
    VmRecord,
)
from validator_tui.tui import handlers, refusals
from validator_tui.tui.actions import Owner, bindings, by_binding
from validator_tui.tui.command_runner import CommandRunner
from validator_tui.tui.format import wall_time
from validator_tui.tui.panel_ring import PanelRing
from validator_tui.tui.refusals import MAIN_ACTIONS, READ_ONLY
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
        self.selection_changed()
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
        prompt = self.filter_bar
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
            prompt_open=prompt.is_open,
            # Whether the prompt and escape act on the event log's search (not the feed's
            # filter).
            events_searched=(
                prompt.searching_events
                if prompt.is_open
                else self.focused_panel() is self.event_log
            ),
        )

    def only_host(self) -> HostRecord | None:
        """The pool's host when it has exactly one (no Hosts panel then)."""
        return self.selection().only_host

    def vm_status(self, vm_id: str) -> str:
        """The VM's last known status (from its challenge's record, else the VM list)."""
        return self.selection().vm_status(vm_id)

    def selection_changed(self) -> None:
        """Follow the selected VM in the console and refresh the footer when what the actions
        can do has changed."""
        selected = self.selection().vm
        if selected is None:
            self.vm_console.follow(None)
        else:
            self.vm_console.follow(selected.vm_id, selected.label)
        self._sync_bindings()

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
        self.action_run("details")

    @on(LineTable.CursorMoved)
    def _row_highlighted(self, event: LineTable.CursorMoved) -> None:
        if event.table.has_focus:
            self._set_active(event.table.id)
        self.selection_changed()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        focused, panel = self.focused, self.focused_panel()
        if panel is not None:
            self.panels.show_aside(panel)
        if focused is not None:
            self._set_active(focused.id)
            self.selection_changed()

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
            action = by_binding(active.binding.action) if active.node is self else None
            if action is not None and action.name in MAIN_ACTIONS:
                reason = refusals.why_not(action.name, sel)
                if reason == READ_ONLY:
                    continue
                active = active._replace(enabled=reason is None)
            shown[key] = active
        return shown

    # -- actions ------------------------------------------------------------------------------

    def action_run(self, name: str) -> None:
        """Every key of the screen: the action table's action `name` (tui/handlers.py)."""
        handlers.run(self, name)

    # -- the filter prompt --------------------------------------------------------------------

    def close_filter_prompt(self) -> None:
        """Give the footer its line back (the filter or search stays in force) and the focus
        to what it filters."""
        searched = self.selection().events_searched
        self.filter_bar.close()
        (self.event_log if searched else self.feed).focus()
        self._sync_bindings()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self.filter_bar.searching_events:
            self.event_log.set_search(event.value)
            return
        self.feed.set_filter(event.value, self.console_app.clock())
        self.selection_changed()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.action_run("clear_filter")
        else:
            self.close_filter_prompt()
