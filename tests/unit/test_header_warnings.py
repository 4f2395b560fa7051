"""The console header shows the engine's warnings (claims paused, capacity, slow requests)."""

from validator_tui.control import Header
from validator_tui.tui.widgets.status_bar import render_header


def test_warnings_are_rendered_on_the_second_line():
    header = Header(hotkey="5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")
    assert all("⚠" not in line.plain for line in render_header(header, 0.0))
    header.claims_paused = "claims paused: the platform is unreachable"
    header.capacity_warning = "capacity shortfall: 47 of 50 challenges have no CVM"
    _, second_line = render_header(header, 0.0)
    second = second_line.plain
    assert "⚠ claims paused: the platform is unreachable" in second
    assert "⚠ capacity shortfall: 47 of 50 challenges have no CVM" in second


def test_the_header_says_where_metrics_are_served_when_they_are_on():
    header = Header(hotkey="5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")
    top, _ = render_header(header, 0.0)
    assert "metrics" not in top.plain
    header.metrics_url = "http://127.0.0.1:9464/metrics"
    top, _ = render_header(header, 0.0)
    assert top.plain.endswith("│ metrics 127.0.0.1:9464")
