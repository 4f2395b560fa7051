"""Layout at the three terminal sizes of issue 12, and the header of an attached console. On a
FakeEngine (deterministic), reading what the screen shows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.support.console import fake_console
from tests.support.fake_engine import FakeEngine, demo_state
from validator_tui.control import ChallengeState, JobState, Link, LinkStatus
from validator_tui.tui.format import WORD_BACKUP
from validator_tui.tui.widgets.line_table import GAP, Column, place_columns
from validator_tui.tui.widgets.status_bar import StatusBar


def scene() -> FakeEngine:
    """The demo scene with a booting CVM at `init-script` and a job that failed at length."""
    engine = demo_state(FakeEngine())
    booting = next(c for c in engine.state.challenges.values() if c.state is ChallengeState.BOOTING)
    engine.update_challenge(booting.id, boot_progress="init-script")
    engine.now += 1
    engine.add_job(
        JobState.FAILED,
        age=0.0,
        error="evaluator answered 500: internal error while scoring the submission",
    )
    return engine


def row_of(text: str, needle: str, *, after: str = "") -> str:
    """The first line with `needle` (below the first line with `after`, if given)."""
    lines = text.splitlines()
    if after:
        lines = lines[next(i for i, line in enumerate(lines) if after in line) :]
    return next(line for line in lines if needle in line)


async def test_80x24_keeps_the_console_mode_and_the_cvm_essentials() -> None:
    engine = scene()
    async with fake_console(engine, size=(80, 24)) as console:
        text = console.text()
        assert "VM console · following · nowrap" in text
        await console.pilot.press("w")
        assert "VM console · following · wrap" in console.text()
        for challenge in engine.state.challenges.values():
            row = row_of(text, challenge.name, after="Challenge ▲")
            marker = "●" if challenge.state is ChallengeState.ACTIVE else "◐"
            assert f"{marker} {challenge.state.value}" in row
            status = challenge.vm_status or "-"
            assert f" {status} " in row
        header = row_of(text, "Challenge ▲")
        assert "VM status" in header and "Commit" not in header


async def test_120x36_cuts_at_words_without_wasting_cells() -> None:
    engine = scene()
    async with fake_console(engine, size=(120, 36)) as console:
        text = console.text()
        booting = row_of(text, "code-arena", after="Challenge ▲")
        assert " init " in booting and "init-scri" not in booting
        header = row_of(text, "Challenge ▲")
        assert "Commit " in header or "Commit" not in header
        for challenge in engine.state.challenges.values():
            if "Commit" in header:
                row = row_of(text, challenge.name, after="Challenge ▲")
                assert challenge.github_commit[:8] in row
        error = "evaluator answered 500: internal error while scoring the submission"
        for job in engine.state.jobs.values():
            if not job.error:
                continue
            row = row_of(text, job.id[:8])
            first = job.error.split()[0]
            cell = first + row.rsplit(first, 1)[1].split("│", 1)[0]
            shown = cell.rstrip()
            if shown.endswith("…"):
                # Cut at a word's start when that wastes at most WORD_BACKUP cells, else at
                # the column's edge: never half a word beside blank cells.
                kept = shown.removesuffix("…")
                assert job.error.startswith(kept), shown
                # What follows the text: its blank cells, the gap, the scrollbar's column.
                edge = GAP + 1
                blanks = len(cell) - len(shown)
                assert job.error[len(kept)] == " " or blanks <= edge, shown
                assert blanks <= WORD_BACKUP + edge, shown
            else:
                assert shown == job.error
        assert error in {job.error for job in engine.state.jobs.values()}


async def test_200x50_gives_spare_width_to_the_miner_and_the_reason() -> None:
    engine = scene()
    async with fake_console(engine, size=(200, 50)) as console:
        text = console.text()
        failed = next(j for j in engine.state.jobs.values() if j.error and "evaluator" in j.error)
        row = row_of(text, failed.id[:8])
        assert failed.miner_hotkey in row
        assert "evaluator answered 500" in row


def test_columns_drop_by_priority_and_share_spare_width() -> None:
    columns = [
        Column("id", "Id", 8),
        Column("name", "Name", 10, grow=1, max_width=14, drop=2),
        Column("key", "Key", 9, ideal=48, drop=3),
        Column("why", "Why", 12, grow=4),
    ]
    narrow = place_columns(columns, 35)
    assert [p.column.key for p in narrow] == ["id", "name", "why"]
    wide = place_columns(columns, 120)
    widths = {p.column.key: p.width for p in wide}
    assert widths["key"] == 48 and widths["name"] == 14
    assert sum(widths.values()) + 1 + len(widths) == 120
    middle = {p.column.key: p.width for p in place_columns(columns, 60)}
    assert middle["key"] == 9  # no room for the whole hotkey: the short form, not a cut one


@pytest.mark.parametrize(
    ("link", "shown"),
    [
        (Link(LinkStatus.CONNECTED), "● linked"),
        (Link(LinkStatus.RECONNECTING, since=0.0, retry_in=None), "◌ reconnecting"),
        (Link(LinkStatus.GONE, detail="connection refused"), "✗ engine gone: connection refused"),
    ],
)
async def test_attached_console_header_names_its_engine_and_the_link(
    link: Link, shown: str
) -> None:
    engine = demo_state(FakeEngine())
    engine.embedded = False
    engine.link = replace(link, since=engine.now - 10)
    async with fake_console(engine) as console:
        lines = console.app.main.query_one(StatusBar).texts
        assert len(lines) == 3
        assert "attached to pid 4242 (console)" in lines[0]
        assert "up 1h00m" in lines[0] and "/var/lib/validator-tui" in lines[0]
        assert shown in lines[0]


async def test_reconnecting_countdown_ticks_and_embedded_header_has_two_lines() -> None:
    engine = demo_state(FakeEngine())
    engine.embedded = False
    engine.link = Link(LinkStatus.RECONNECTING, since=engine.now, retry_in=5.0)
    async with fake_console(engine) as console:
        bar = console.app.main.query_one(StatusBar)
        assert "reconnecting in 5s" in bar.texts[0]
        engine.now += 2
        await console.sync()
        assert "reconnecting in 3s" in bar.texts[0]
    embedded = demo_state(FakeEngine())
    async with fake_console(embedded) as console:
        assert len(console.app.main.query_one(StatusBar).texts) == 2


async def test_a_theme_change_redraws_blank_lines_in_the_new_background() -> None:
    """Tables keep their resolved style between style changes: a theme change must reach
    the lines below the last row too."""
    engine = scene()
    async with fake_console(engine, size=(120, 36)) as console:
        feed = console.app.screen.query_one("#jobs")
        width = feed.scrollable_content_region.width
        before = next(iter(feed.blank_line(width))).style
        console.app.theme = "textual-light" if console.app.theme != "textual-light" else "nord"
        await console.sync()
        after = next(iter(feed.blank_line(width))).style
        assert after is not None and before is not None
        assert after.bgcolor != before.bgcolor
        assert after == feed.rich_style
