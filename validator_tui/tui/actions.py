"""Every console action in one table: its key, title and help, where it applies, whether it
asks first and whether a read-only console may use it.

The table generates the bindings (of the main screen, the app and the tables), the command
palette's entries and the help screen, so the three can never disagree; README's key list is
checked against it by a test. What a main-screen action does is its handler, by name, in
tui/handlers.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from textual.binding import Binding, BindingType


class Owner(StrEnum):
    """Where an action's binding lives (and so when its key works)."""

    APP = "app"  # everywhere, also over other screens: quit, help
    MAIN = "main"  # the main screen, not while a dialog or another screen is up
    TABLE = "table"  # the focused table (job feed or challenge CVMs)


class Section(StrEnum):
    """Help-screen sections: what an action works on."""

    JOBS = "Jobs"
    CVMS = "Challenge CVMs and VMs"
    HOSTS = "Hosts"
    CONSOLE = "Console"


@dataclass(frozen=True, slots=True)
class Action:
    """One operator action."""

    name: str  # main screen: its handler (tui/handlers.py); else the `action_<name>` method
    key: str  # Textual key name
    key_label: str  # how help, palette and README show the key
    title: str  # short: footer and palette
    help: str  # what it does, for help and palette
    section: Section
    owner: Owner
    confirm: bool = False  # asks first
    read_only_safe: bool = True  # allowed in a read-only console
    footer: bool = True  # shown in the footer

    @property
    def binding_action(self) -> str:
        """The Textual action string its key and palette entry run: every main-screen action
        goes through the screen's one `run` action, with its name."""
        return f"run({self.name!r})" if self.owner is Owner.MAIN else self.name


def _action(
    name: str,
    key: str,
    title: str,
    help: str,
    section: Section,
    owner: Owner = Owner.MAIN,
    *,
    label: str | None = None,
    confirm: bool = False,
    read_only_safe: bool = True,
    footer: bool = True,
) -> Action:
    return Action(
        name,
        key,
        label or key,
        title,
        help,
        section,
        owner,
        confirm=confirm,
        read_only_safe=read_only_safe,
        footer=footer,
    )


ACTIONS: tuple[Action, ...] = (
    _action(
        "claim_job",
        "c",
        "Claim",
        "claim the selected pending job now",
        Section.JOBS,
        read_only_safe=False,
    ),
    _action(
        "cancel_job",
        "x",
        "Cancel job",
        "cancel the selected claimed or running job: its VM is destroyed, the platform gets "
        "the error result “cancelled by operator”",
        Section.JOBS,
        confirm=True,
        read_only_safe=False,
    ),
    _action(
        "details",
        "enter",
        "Details",
        "details of the selected job (record, timeline, result, logs) or challenge CVM "
        "(state history, compose, VM, log)",
        Section.JOBS,
    ),
    _action(
        "copy_id",
        "y",
        "Copy id",
        "copy the selected job's or challenge's id to the clipboard (OSC 52)",
        Section.JOBS,
        footer=False,
    ),
    _action(
        "copy_vm_id",
        "Y",
        "Copy VM id",
        "copy the VM id of the selected job or challenge CVM to the clipboard (OSC 52)",
        Section.JOBS,
        footer=False,
    ),
    _action(
        "next_failed",
        "e",
        "Next failed",
        "job feed: move to the next failed job (its reason is in the Reason column)",
        Section.JOBS,
        footer=False,
    ),
    _action(
        "state_filter",
        "v",
        "State filter",
        "job feed: show all jobs, or only failed, running, pending or dead-letter ones (in turn)",
        Section.JOBS,
        footer=False,
    ),
    _action(
        "follow_jobs",
        "t",
        "Follow newest",
        "job feed: keep the cursor on the newest job as jobs arrive (off when you move it)",
        Section.JOBS,
        footer=False,
    ),
    _action("filter", "slash", "Filter", "filter the job feed by text", Section.JOBS, label="/"),
    _action(
        "clear_filter",
        "escape",
        "Clear filter",
        "show every job again",
        Section.JOBS,
        label="esc",
        footer=False,
    ),
    _action(
        "sort_column(-1)",
        "less_than_sign",
        "Sort by previous column",
        "sort the focused table by the previous column",
        Section.JOBS,
        Owner.TABLE,
        label="<",
        footer=False,
    ),
    _action(
        "sort_column(1)",
        "greater_than_sign",
        "Sort by next column",
        "sort the focused table by the next column",
        Section.JOBS,
        Owner.TABLE,
        label=">",
        footer=False,
    ),
    _action(
        "reverse_sort",
        "exclamation_mark",
        "Reverse sort",
        "reverse the focused table's sort order",
        Section.JOBS,
        Owner.TABLE,
        label="!",
        footer=False,
    ),
    _action(
        "rebuild_challenge",
        "r",
        "Rebuild CVM",
        "rebuild the selected challenge's CVM: a fresh one is provisioned, then the old one "
        "is removed",
        Section.CVMS,
        confirm=True,
        read_only_safe=False,
    ),
    _action(
        "start_vm",
        "s",
        "Start VM",
        "start the selected job's VM or challenge CVM",
        Section.CVMS,
        read_only_safe=False,
        footer=False,
    ),
    _action(
        "stop_vm",
        "S",
        "Stop VM",
        "stop the selected job's VM or challenge CVM",
        Section.CVMS,
        confirm=True,
        read_only_safe=False,
        footer=False,
    ),
    _action(
        "remove_vm",
        "D",
        "Remove VM",
        "remove the selected job's VM or challenge CVM",
        Section.CVMS,
        confirm=True,
        read_only_safe=False,
        footer=False,
    ),
    _action(
        "drain_host",
        "h",
        "Drain host",
        "drain the selected host (Hosts panel; else the host of the selected job or CVM): no "
        "new VMs there, its challenge CVMs move to other hosts, its running jobs finish",
        Section.HOSTS,
        confirm=True,
        read_only_safe=False,
        footer=False,
    ),
    _action(
        "undrain_host",
        "H",
        "Undrain host",
        "return the selected drained (or draining) host to the pool",
        Section.HOSTS,
        confirm=True,
        read_only_safe=False,
        footer=False,
    ),
    _action(
        "toggle_auto_claim",
        "a",
        "Auto-claim",
        "turn auto-claim on or off",
        Section.CONSOLE,
        read_only_safe=False,
    ),
    _action(
        "orm_query",
        "o",
        "ORM",
        "read-only SQL on a challenge's database",
        Section.CONSOLE,
        read_only_safe=False,
    ),
    _action(
        "outbox",
        "u",
        "Outbox",
        "results not yet accepted: unsent ones and dead letters (refused by the platform), "
        "with retry and discard",
        Section.CONSOLE,
        footer=False,
    ),
    _action(
        "toggle_follow",
        "f",
        "Log pause",
        "VM console: follow or pause",
        Section.CONSOLE,
        footer=False,
    ),
    _action(
        "toggle_wrap", "w", "Wrap", "VM console: wrap long lines", Section.CONSOLE, footer=False
    ),
    _action(
        "zoom",
        "z",
        "Zoom",
        "zoom the focused panel to the full screen, and back (the event log zoomed: / searches it)",
        Section.CONSOLE,
        footer=False,
    ),
    _action(
        "help",
        "question_mark",
        "Help",
        "every key of the console",
        Section.CONSOLE,
        Owner.APP,
        label="?",
    ),
    _action(
        "redraw",
        "ctrl+l",
        "Redraw",
        "draw the whole screen again (the console otherwise sends only what changed)",
        Section.CONSOLE,
        Owner.APP,
        label="ctrl+l",
        footer=False,
    ),
    _action(
        "stop_validator",
        "Q",
        "Stop validator",
        "stop the validator the graceful way: running jobs are stopped and get an error "
        "result, the outbox is flushed",
        Section.CONSOLE,
        confirm=True,
        read_only_safe=False,
        footer=False,
    ),
    _action(
        "quit",
        "q",
        "Quit",
        "close the console: stop the validator or detach from it (an attached console detaches)",
        Section.CONSOLE,
        Owner.APP,
    ),
)

#: Keys handled by Textual itself, listed in the help for completeness.
BUILTIN_KEYS: tuple[tuple[str, str], ...] = (
    ("tab", "next panel"),
    ("ctrl+p", "command palette (every action)"),
)


def actions_of(owner: Owner) -> tuple[Action, ...]:
    """The actions whose binding lives on `owner`."""
    return tuple(action for action in ACTIONS if action.owner is owner)


def bindings(owner: Owner) -> list[BindingType]:
    """The Textual bindings of `owner`'s actions."""
    return [
        Binding(action.key, action.binding_action, action.title, show=action.footer)
        for action in actions_of(owner)
    ]


def by_name(name: str) -> Action:
    """The action called `name`."""
    for action in ACTIONS:
        if action.name == name:
            return action
    raise KeyError(name)


_BY_BINDING = {action.binding_action: action for action in ACTIONS}


def by_binding(binding_action: str) -> Action | None:
    """The action whose binding runs `binding_action` (None: not one of the table's)."""
    return _BY_BINDING.get(binding_action)
