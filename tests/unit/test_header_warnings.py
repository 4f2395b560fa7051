"""The console header shows the engine's warnings (claims paused, capacity, slow requests)."""

from validator_tui.control import Header
from validator_tui.tui.widgets.status_bar import render_header


def test_warnings_are_rendered_on_the_second_line():
    header = Header(hotkey="5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")
    assert "⚠" not in render_header(header, 0.0).plain
    header.claims_paused = "claims paused: the platform is unreachable"
    header.capacity_warning = "capacity shortfall: 47 of 50 challenges have no CVM"
    second = render_header(header, 0.0).plain.splitlines()[1]
    assert "⚠ claims paused: the platform is unreachable" in second
    assert "⚠ capacity shortfall: 47 of 50 challenges have no CVM" in second
