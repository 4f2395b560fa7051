"""Console tests: Pilot flows and snapshots (frozen clock, no cursor blink, fixed size)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this directory's tests (the hook sees every collected item)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.tui)
