"""Fixtures shared by every suite: the loopback simulators (see tests/support).

The suite runs in parallel (pytest-xdist, several worker processes). A test therefore owns
nothing global: files under `tmp_path`, ports bound to 0 (or `free_port()`, or a demo's
random port range), no fixed paths, no changes to `os.environ` outside `monkeypatch`, and no
reliance on another test having run. It waits on conditions with a bounded poll, never on
a fixed sleep, and never expects a deadline tighter than a loaded machine can keep.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.support.platform_fixtures", "tests.support.vmm_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    """Programs a test runs in a pty take their size from the pty. An xdist worker's environment
    has COLUMNS=80 and LINES=24, which Textual and Rich prefer over the pty's size."""
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
    # Each xdist worker's demos (and the demo processes its tests start) take their VMs' host
    # ports from a band of their own: two workers' random ranges could overlap, and a VM then
    # fails "Address already in use".
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        low = 20000 + (int(worker[2:]) % 4) * 3000
        os.environ["VALIDATOR_TUI_DEMO_PORTS"] = f"{low}-{low + 3000}"
