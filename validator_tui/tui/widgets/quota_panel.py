"""Quota gauges (cpu, memory, disk, gpu, ports: used/total) and the throughput sparkline."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Sparkline, Static

from validator_tui.control import THROUGHPUT_BUCKET_S, QuotaUsage, Resources
from validator_tui.tui.format import bar

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


class QuotaGauges(Widget):
    """One bar per resource; with the `compact` class a single `cpu 8/16 · mem …` line.

    A new `usage` only repaints: the number of lines never changes with it.
    """

    usage: reactive[QuotaUsage] = reactive(_EMPTY)

    def render(self) -> Text:
        rows = gauge_rows(self.usage)
        if self.has_class("compact"):
            line = Text(no_wrap=True, overflow="ellipsis")
            for index, (label, used, total, amount) in enumerate(rows):
                if index:
                    line.append(" · ", style="dim")
                line.append(f"{label} ")
                full = total > 0 and used >= total
                line.append(amount, style="bold red" if full else "bold")
            return line
        label_width = 6
        amount_width = max(len(amount) for *_, amount in rows)
        bar_width = max(4, self.size.width - label_width - amount_width - 2)
        lines = []
        for label, used, total, amount in rows:
            line = Text(f"{label:<{label_width}}", no_wrap=True)
            line.append_text(bar(used, total, bar_width))
            line.append(f" {amount:>{amount_width}}")
            lines.append(line)
        return Text("\n").join(lines)


class QuotaPanel(Vertical):
    """Gauges above a jobs-per-minute sparkline of the recent throughput history."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Quota"
        self._throughput: tuple[int, ...] = ()

    def compose(self) -> ComposeResult:
        yield QuotaGauges()
        yield Static(id="throughput-label")
        yield Sparkline([0.0], summary_function=max, id="throughput")

    def show(self, usage: QuotaUsage, throughput: tuple[int, ...]) -> None:
        """Update the gauges and the sparkline (only when their values changed)."""
        gauges = self.query_one(QuotaGauges)
        if gauges.usage != usage:
            gauges.usage = usage
        if throughput != self._throughput:
            self._throughput = throughput
            per_minute = sum(throughput[-int(60 / THROUGHPUT_BUCKET_S) :])
            label = Text(f"jobs/min {per_minute}", style="bold")
            label.append(
                f"  (last {len(throughput) * THROUGHPUT_BUCKET_S / 60:.0f} min)", style="dim"
            )
            self.query_one("#throughput-label", Static).update(label)
            self.query_one("#throughput", Sparkline).data = [float(v) for v in throughput] or [0.0]
