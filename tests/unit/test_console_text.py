"""The console's text helpers: cells cut at word boundaries, ages at the precision shown, short
boot stages, event lines wrapped without splitting an id."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len

from validator_tui.control import Event
from validator_tui.tui.format import age, boot_stage, fit, sorted_label
from validator_tui.tui.widgets.event_log import INDENT, event_tokens, wrap_tokens
from validator_tui.tui.widgets.quota_panel import spark_rows


@pytest.mark.parametrize(
    ("text", "width", "shown"),
    [
        ("job timed out after 60s", 30, "job timed out after 60s       "),
        ("job timed out after 60s", 12, "job timed…  "),
        ("job timed out after 60s", 13, "job timed ou…"),
        ("job timed out after 60s", 19, "job timed out afte…"),
        ("job timed out after 60s", 20, "job timed out after…"),
        ("evaluator answered 500", 19, "evaluator answered…"),
        ("init-script", 8, "init-sc…"),
        ("代码-arena", 6, "代码… "),
        ("abc", 1, "…"),
    ],
)
def test_fit_pads_or_cuts_at_a_word_boundary(text: str, width: int, shown: str) -> None:
    assert fit(text, width) == shown
    assert cell_len(fit(text, width)) == width


@pytest.mark.parametrize(
    ("label", "width", "shown"),
    [
        ("Score", 9, "Score ▲  "),
        ("Score", 5, "Scor▲"),
        ("Elapsed", 7, "Elapse▲"),
        ("Reason", 6, "Reaso▲"),
    ],
)
def test_a_sort_marker_is_never_cut(label: str, width: int, shown: str) -> None:
    assert fit(sorted_label(label, width, "▲"), width) == shown


@given(st.text(min_size=0, max_size=60), st.integers(1, 40))
def test_fit_is_always_exactly_the_width(text: str, width: int) -> None:
    text = "".join(ch for ch in text if ch.isprintable())
    assert cell_len(fit(text, width)) == width


def test_age_ticks_at_the_precision_it_shows() -> None:
    assert [age(s) for s in (0, 59.9, 60, 61, 3599, 3600, 3660, 86400 + 3600)] == [
        "0s",
        "59s",
        "1m",
        "1m",
        "59m",
        "1h00m",
        "1h01m",
        "1d01h",
    ]


def test_boot_stages_have_short_forms() -> None:
    assert boot_stage("init-script") == "init"
    assert boot_stage("setting up dstack-gateway") == "gateway"
    assert boot_stage("Attesting GPU") == "gpu"
    assert boot_stage("some new stage") == "some"
    assert boot_stage("") == "-"
    assert boot_stage("\x1b[31mdone\x07") == "done"


def test_event_lines_wrap_at_words_and_never_split_an_id() -> None:
    vm_id = "0de7845d-1234-4abc-8def-0123456789ab"
    event = Event(1, 0.0, "error", "job", f"VM {vm_id} did not boot in time", job_id="2454fc9e77")
    lines = wrap_tokens(event_tokens(event, 0.0), 44)
    texts = ["".join(text for text, _ in line) for line in lines]
    assert all(cell_len(text) <= 44 for text in texts)
    assert any("job 2454fc9e" in text for text in texts)
    assert any(vm_id in text for text in texts)
    assert all(text.startswith(" " * INDENT) for text in texts[1:])
    narrow = ["".join(t for t, _ in line) for line in wrap_tokens(event_tokens(event, 0.0), 20)]
    cut = [text for text in narrow if "0de7845d" in text]
    assert len(cut) == 1 and cut[0].rstrip().endswith("…")


def test_sparkline_groups_buckets_and_scales_to_the_highest() -> None:
    rows = spark_rows([0, 1, 2, 4], 4, 2)
    assert rows == ["   █", " ▄██"]
    grouped = spark_rows([1, 5, 2, 2, 0, 0], 3, 1)
    assert grouped == ["█▃ "]
    assert spark_rows([], 3, 1) == ["   "]
