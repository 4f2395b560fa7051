"""The demos' host-port band: `$VALIDATOR_TUI_DEMO_PORTS` keeps demos side by side apart."""

from __future__ import annotations

import pytest

from validator_tui.demo import DEMO_PORTS, demo_port_band


@pytest.mark.parametrize(
    ("value", "band"),
    [
        ("23000-26000", (23000, 26000)),
        ("", DEMO_PORTS),
        ("26000-23000", DEMO_PORTS),
        ("80-9000", DEMO_PORTS),
        ("x-y", DEMO_PORTS),
    ],
)
def test_the_band_comes_from_the_environment_when_it_is_sane(monkeypatch, value, band) -> None:
    monkeypatch.setenv("VALIDATOR_TUI_DEMO_PORTS", value)
    assert demo_port_band() == band
