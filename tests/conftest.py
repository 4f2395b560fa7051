"""Fixtures shared by every suite: the loopback simulators (see tests/support)."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.support.platform_fixtures", "tests.support.vmm_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    """Programs a test runs in a pty take their size from the pty. An xdist worker's environment
    has COLUMNS=80 and LINES=24, which Textual and Rich prefer over the pty's size."""
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
