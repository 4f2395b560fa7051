"""Fixtures shared by every suite: the loopback simulators (see tests/support)."""

pytest_plugins = ["tests.support.platform_fixtures", "tests.support.vmm_fixtures"]
