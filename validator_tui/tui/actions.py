"""Every console action in one table: its key, title and help, where it applies, whether it
asks first and whether a read-only console may use it.

The table generates the bindings (of the main screen, the app and the tables), the command
palette's entries and the help screen, so the three can never disagree.
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
    CONSOLE = "Console"


@dataclass(frozen=True, slots=True)
class Action:
    """One operator action."""

    name: str  # the `action_<name>` method
    key: str  # Textual key name
    key_label: str  # how help, palette and README show the key
    title: str  # short: footer and palette
    help: str  # what it does, for help and palette
    section: Section
    owner: Owner
    confirm: bool = False  # asks first
    read_only_safe: bool = True  # allowed in a read-only console
    footer: bool = True  # shown in the footer
    palette: bool = True  # listed in the command palette


ACTIONS: tuple[Action, ...] = (
    Action(
        "claim_job",
        "c",
        "c",
        "Claim",
        "claim the selected pending job",
        Section.JOBS,
        Owner.MAIN,
        read_only_safe=False,
    ),
    Action(
        "cancel_job",
        "x",
        "x",
        "Cancel",
        "cancel the selected job: its VM is destroyed, the platform gets an error result",
        Section.JOBS,
        Owner.MAIN,
        confirm=True,
        read_only_safe=False,
    ),
    Action(
        "job_details",
        "enter",
        "enter",
        "Details",
        "details of the selected job: record, timeline, result, logs",
        Section.JOBS,
        Owner.MAIN,
    ),
    Action(
        "filter",
        "slash",
        "/",
        "Filter",
        "filter the job feed by text (esc clears)",
        Section.JOBS,
        Owner.MAIN,
    ),
    Action(
        "clear_filter",
        "escape",
        "esc",
        "Clear filter",
        "show every job again",
        Section.JOBS,
        Owner.MAIN,
        footer=False,
    ),
    Action(
        "sort_column(-1)",
        "less_than_sign",
        "<",
        "Sort by previous column",
        "sort the focused table by the previous column",
        Section.JOBS,
        Owner.TABLE,
        footer=False,
        palette=False,
    ),
    Action(
        "sort_column(1)",
        "greater_than_sign",
        ">",
        "Sort by next column",
        "sort the focused table by the next column",
        Section.JOBS,
        Owner.TABLE,
        footer=False,
        palette=False,
    ),
    Action(
        "reverse_sort",
        "exclamation_mark",
        "!",
        "Reverse sort",
        "reverse the focused table's sort order",
        Section.JOBS,
        Owner.TABLE,
        footer=False,
        palette=False,
    ),
    Action(
        "rebuild_challenge",
        "r",
        "r",
        "Rebuild",
        "rebuild the selected challenge's CVM",
        Section.CVMS,
        Owner.MAIN,
        confirm=True,
        read_only_safe=False,
    ),
    Action(
        "start_vm",
        "s",
        "s",
        "Start VM",
        "start the selected VM",
        Section.CVMS,
        Owner.MAIN,
        read_only_safe=False,
        footer=False,
    ),
    Action(
        "stop_vm",
        "S",
        "S",
        "Stop VM",
        "stop the selected VM",
        Section.CVMS,
        Owner.MAIN,
        confirm=True,
        read_only_safe=False,
        footer=False,
    ),
    Action(
        "remove_vm",
        "D",
        "D",
        "Remove VM",
        "remove the selected VM",
        Section.CVMS,
        Owner.MAIN,
        confirm=True,
        read_only_safe=False,
        footer=False,
    ),
    Action(
        "toggle_auto_claim",
        "a",
        "a",
        "Auto-claim",
        "turn auto-claim on or off",
        Section.CONSOLE,
        Owner.MAIN,
        read_only_safe=False,
    ),
    Action(
        "orm_query",
        "o",
        "o",
        "ORM",
        "read-only SQL on a challenge's database",
        Section.CONSOLE,
        Owner.MAIN,
        read_only_safe=False,
    ),
    Action(
        "toggle_follow",
        "f",
        "f",
        "Log pause",
        "VM console: follow or pause",
        Section.CONSOLE,
        Owner.MAIN,
    ),
    Action(
        "toggle_wrap",
        "w",
        "w",
        "Wrap",
        "VM console: wrap long lines",
        Section.CONSOLE,
        Owner.MAIN,
        footer=False,
    ),
    Action(
        "help", "question_mark", "?", "Help", "every key of the console", Section.CONSOLE, Owner.APP
    ),
    Action(
        "quit",
        "q",
        "q",
        "Quit",
        "quit (asks first if jobs are running)",
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
        Binding(action.key, action.name, action.title, show=action.footer)
        for action in actions_of(owner)
    ]


def by_name(name: str) -> Action:
    """The action called `name`."""
    for action in ACTIONS:
        if action.name == name:
            return action
    raise KeyError(name)
