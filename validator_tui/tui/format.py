"""Pure text helpers for the console: short forms, durations, state markers and styles.

Every function returns plain `str` or `rich.text.Text` built without markup, so untrusted
input (already passed through `clean_line`) can never inject Rich markup.
"""

from __future__ import annotations

import time

from rich.cells import cell_len, set_cell_size
from rich.text import Text

from validator_tui.control import ChallengeState, ConnectionView, JobRecord, JobState
from validator_tui.sanitize import clean_line

JOB_MARKERS: dict[JobState, tuple[str, str]] = {
    JobState.PENDING: ("○", "bold"),
    JobState.CLAIMED: ("◔", "yellow"),
    JobState.PROVISIONING: ("◑", "yellow"),
    JobState.RUNNING: ("●", "bold cyan"),
    JobState.SUBMITTING: ("↑", "blue"),
    JobState.COMPLETED: ("✓", "green"),
    JobState.FAILED: ("✗", "bold red"),
    JobState.CANCELLED: ("⊘", "magenta"),
    JobState.LOST: ("↷", "dim"),
}

CHALLENGE_MARKERS: dict[ChallengeState, tuple[str, str]] = {
    ChallengeState.PENDING: ("○", "dim"),
    ChallengeState.FETCHING: ("◌", "yellow"),
    ChallengeState.PROVISIONING: ("◑", "yellow"),
    ChallengeState.BOOTING: ("◐", "yellow"),
    ChallengeState.ACTIVE: ("●", "green"),
    ChallengeState.UPDATING: ("↻", "cyan"),
    ChallengeState.FAILED: ("✗", "bold red"),
    ChallengeState.DESTROYING: ("⊘", "magenta"),
    ChallengeState.STOPPED: ("■", "yellow"),
}

JOB_STATE_ORDER: dict[JobState, int] = {state: index for index, state in enumerate(JobState)}


def short_hotkey(hotkey: str) -> str:
    """`5GrwvaEF…CNoHGKutQY` → `5Grw…utQY` (keeps short values whole), sanitised."""
    text = clean_line(hotkey, 200)
    return text if len(text) <= 9 else f"{text[:4]}…{text[-4:]}"


def short_id(value: str | None, width: int = 8) -> str:
    """The first `width` characters of an id, sanitised; `-` when there is none."""
    if not value:
        return "-"
    return clean_line(value, 200)[:width]


def duration(seconds: float) -> str:
    """A compact duration: `42s`, `3m05s`, `2h07m`, `4d03h` (negative counts as zero)."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def age(seconds: float) -> str:
    """A duration at the precision a ticking display shows: seconds below a minute, then
    minutes (`42s`, `3m`, `2h07m`, `4d03h`), so it changes at most once a minute after the
    first minute."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes = total // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def ago(at: float | None, now: float) -> str:
    """`12s ago` for a past instant, `never` when there is none."""
    if at is None:
        return "never"
    return f"{duration(now - at)} ago"


def wall_time(at: float, now: float) -> str:
    """Local `HH:MM:SS` of `at`, never later than the app's clock `now`."""
    return time.strftime("%H:%M:%S", time.localtime(min(at, now)))


def job_state_text(state: JobState) -> Text:
    """`● running` in the state's colour: the marker keeps it readable without colour."""
    marker, style = JOB_MARKERS[state]
    return Text(f"{marker} {state.value}", style=style)


def challenge_state_text(state: ChallengeState) -> Text:
    """`● active` in the state's colour, with a marker that reads without colour."""
    marker, style = CHALLENGE_MARKERS[state]
    return Text(f"{marker} {state.value}", style=style)


def score_text(score: float | None) -> str:
    """A score with three decimals, `-` when there is none."""
    return "-" if score is None else f"{score:.3f}"


def connection_text(view: ConnectionView, now: float) -> Text:
    """`● connected`, `◌ reconnecting in 3s`, `◐ polling only`: marker + words + colour."""
    status = clean_line(view.status, 60)
    if status == "connected":
        return Text(f"● {status}", style="green")
    if view.retry_in is not None and status == "reconnecting":
        left = max(0.0, view.since + view.retry_in - now)
        return Text(f"◌ reconnecting in {duration(left)}", style="yellow")
    if status in {"disconnected", "error", "down"}:
        return Text(f"✗ {status}", style="bold red")
    return Text(f"◐ {status}", style="yellow")


def bar(used: int, total: int, width: int) -> Text:
    """A `█████░░░` gauge of `used/total`, green/yellow/red by fill; full when total is 0."""
    fraction = 0.0 if total <= 0 else min(1.0, max(0.0, used / total))
    filled = round(fraction * width)
    style = "green" if fraction < 0.7 else "yellow" if fraction < 0.9 else "bold red"
    text = Text("█" * filled, style=style)
    text.append("░" * (width - filled), style="dim")
    return text


#: A cut inside a word backs up to the word's start when that wastes at most this many cells.
WORD_BACKUP = 2


def fit(text: str, width: int, align: str = "left") -> str:
    """`text` in exactly `width` cells: padded, or cut with `…` (at a word boundary when one
    is within WORD_BACKUP cells of the end, so a column shows no half word, nor blank cells)."""
    length = cell_len(text)
    if length <= width:
        pad = " " * (width - length)
        return pad + text if align == "right" else text + pad
    if width <= 1:
        return "…"[:width]
    cut = set_cell_size(text, width - 1)
    if not text[len(cut) :].startswith(" "):  # the cut is inside a word: back to its start
        space = cut.rfind(" ")
        if space >= len(cut) - WORD_BACKUP:
            cut = cut[:space]
    return set_cell_size(cut.rstrip(" ,;:·-") + "…", width)


def sorted_label(label: str, width: int, marker: str) -> str:
    """A column header `label` with its sort `marker` in `width` cells: the label is cut,
    never the marker."""
    full = f"{label} {marker}"
    if cell_len(full) <= width:
        return full
    return set_cell_size(label, max(0, width - cell_len(marker))) + marker


#: dstack's boot stages (`boot_progress`) in a word or two.
BOOT_STAGES: dict[str, str] = {
    "booting": "booting",
    "init-script": "init",
    "attesting gpu": "gpu",
    "initializing data disk": "disk init",
    "mounting data disk": "disk",
    "requesting app keys": "keys",
    "data disk ready": "disk ok",
    "setting up dstack-gateway": "gateway",
    "setting up docker": "docker",
    "pre-launch": "prelaunch",
    "starting containers": "starting",
    "done": "done",
    "n/a": "n/a",
}


def boot_stage(progress: str) -> str:
    """A short form of a VM's boot progress (`init-script` → `init`), sanitised; unknown
    stages keep their first word."""
    text = clean_line(progress, 60).strip()
    if not text:
        return "-"
    known = BOOT_STAGES.get(text.casefold())
    if known is not None:
        return known
    return text.split()[0]


def job_reason(job: JobRecord) -> str:
    """Why a job is where it is, in one sanitised line: why a pending job waits, what went
    wrong with a finished one (empty when there is nothing to say)."""
    waiting = job.waiting_reason if job.state is JobState.PENDING else ""
    return clean_line(job.error or waiting, 300)


def when(at: float | None, now: float) -> str:
    """`2023-11-14 22:13:20 (12s ago)`: local date and time with the age; `never` if none."""
    if at is None:
        return "never"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))} ({ago(at, now)})"
