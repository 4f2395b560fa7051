"""Quota gauges (cpu, memory, disk, gpu, ports: used/total) and the throughput sparkline."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical

from validator_tui.control import THROUGHPUT_BUCKET_S, QuotaUsage, Resources
from validator_tui.tui.format import bar
from validator_tui.tui.widgets.lines import Lines
from validator_tui.tui.widgets.titles import QuietTitles

_EMPTY = QuotaUsage(Resources(), Resources(), 0, 0, 0)


def megabytes(value: int) -> str:
    """`512M`, `4G`, `1.5T`: a size given in MB, compact."""
    if value < 1024:
        return f"{value}M"
    if value < 1024 * 1024:
        gb = value / 1024
        return f"{gb:.0f}G" if gb >= 10 or gb.is_integer() else f"{gb:.1f}G"
    return f"{value / (1024 * 1024):.1f}T"


def gauge_rows(usage: QuotaUsage) -> list[tuple[str, int, int, str]]:
    """(label, used, total, `used/total` text) for each accounted resource."""
    used, total = usage.used, usage.total
    return [
        ("cpu", used.vcpu, total.vcpu, f"{used.vcpu}/{total.vcpu}"),
        (
            "mem",
            used.memory_mb,
            total.memory_mb,
            f"{megabytes(used.memory_mb)}/{megabytes(total.memory_mb)}",
        ),
        (
            "disk",
            used.disk_mb,
            total.disk_mb,
            f"{megabytes(used.disk_mb)}/{megabytes(total.disk_mb)}",
        ),
        ("gpu", used.gpu, total.gpu, f"{used.gpu}/{total.gpu}"),
        ("ports", usage.ports_used, usage.ports_total, f"{usage.ports_used}/{usage.ports_total}"),
    ]


class QuotaGauges(Lines):
    """One bar per resource; with the `compact` class a single `cpu 8/16 · mem …` line.

    A new `usage` repaints only the characters that changed.
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.usage = _EMPTY
        self.as_of = ""

    def on_mount(self) -> None:
        self.show(self.usage)

    def show(self, usage: QuotaUsage, *, as_of: str = "") -> None:
        """Show `usage`; `as_of` (`as of 12:34:56`) leads the compact line of a usage that is
        no longer live."""
        self.usage, self.as_of = usage, as_of
        self.show_lines(self._render_usage())

    def on_resize(self, event: events.Resize) -> None:
        super().on_resize(event)
        self.show_lines(self._render_usage())

    def _render_usage(self) -> list[Text]:
        rows = gauge_rows(self.usage)
        if self.has_class("compact"):
            line = Text(no_wrap=True, overflow="ellipsis")
            if self.as_of:
                line.append(f"{self.as_of} · ", style="bold")
            for index, (label, used, total, amount) in enumerate(rows):
                if index:
                    line.append(" · ", style="dim")
                line.append(f"{label} ")
                full = total > 0 and used >= total
                line.append(amount, style="bold red" if full else "bold")
            return [line]
        label_width = 6
        amount_width = max(len(amount) for *_, amount in rows)
        bar_width = max(4, self.size.width - label_width - amount_width - 1)
        lines = []
        for label, used, total, amount in rows:
            line = Text(f"{label:<{label_width}}", no_wrap=True)
            line.append_text(bar(used, total, bar_width))
            line.append(f" {amount:>{amount_width}}")
            lines.append(line)
        return lines


#: Eighths of a cell, for the sparkline's bars.
_BARS = " ▁▂▃▄▅▆▇█"


def spark_rows(values: Sequence[float], width: int, height: int) -> list[str]:
    """A bar chart of `values` (newest on the right) in `height` rows of `width` cells: more
    values than cells are grouped (the highest of each group shown)."""
    if width <= 0:
        return [""] * height
    if len(values) > width:
        step = len(values) / width
        values = [
            max(values[int(i * step) : max(int(i * step) + 1, int((i + 1) * step))])
            for i in range(width)
        ]
    columns = [0.0] * (width - len(values)) + [float(v) for v in values]
    top = max(columns) if columns else 0.0
    rows = []
    for row in range(height):
        floor = (height - 1 - row) * 8
        chars = []
        for value in columns:
            eighths = 0 if top <= 0 else round(value / top * height * 8)
            chars.append(_BARS[max(0, min(8, eighths - floor))])
        rows.append("".join(chars))
    return rows


class Throughput(Lines):
    """`last 60 s  ✓ N done  ✗ M failed` above a sparkline of completions per bucket and its
    window; redrawn when a bucket changes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._buckets: tuple[int, ...] = ()
        self._failures: tuple[int, ...] = ()

    def on_mount(self) -> None:
        self.show(self._buckets, self._failures)

    def show(self, buckets: tuple[int, ...], failures: tuple[int, ...] = ()) -> None:
        """Show the completions and failures per `THROUGHPUT_BUCKET_S` bucket, oldest first."""
        self._buckets, self._failures = buckets, failures
        self.show_lines(self._render_buckets())

    def on_resize(self, event: events.Resize) -> None:
        super().on_resize(event)
        self.show_lines(self._render_buckets())

    def _render_buckets(self) -> list[Text]:
        buckets, minute = self._buckets, int(60 / THROUGHPUT_BUCKET_S)
        completed, failed = sum(buckets[-minute:]), sum(self._failures[-minute:])
        label = Text("last 60 s  ", style="dim", no_wrap=True)
        label.append(f"✓ {completed} done", style="bold green")
        label.append("  ")
        label.append(f"✗ {failed} failed", style="bold red" if failed else "dim")
        rows = spark_rows([float(v) for v in buckets], self.size.width, 2)
        minutes = len(buckets) * THROUGHPUT_BUCKET_S / 60
        window = Text(
            f"✓ per {THROUGHPUT_BUCKET_S:g} s, last {minutes:.0f} min",
            style="dim",
            no_wrap=True,
        )
        sparkline = [Text(row, style="green", no_wrap=True) for row in rows]
        return [label, *sparkline, window] if buckets else [label]


class QuotaPanel(Vertical, QuietTitles):
    """Gauges above a jobs-per-minute sparkline of the recent throughput history."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)

    def on_mount(self) -> None:
        self.set_title("Quota")

    def compose(self) -> ComposeResult:
        yield QuotaGauges()
        yield Throughput(id="throughput")

    def show(
        self, usage: QuotaUsage, throughput: tuple[int, ...], failures: tuple[int, ...] = ()
    ) -> None:
        """Update the gauges and the sparkline (each repaints only what changed)."""
        self.query_one(QuotaGauges).show(usage)
        self.query_one(Throughput).show(throughput, failures)
