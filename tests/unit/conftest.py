"""Unit tests: pure code, no sockets. Any attempt to connect or bind fails the test."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest


def _no_network(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("unit tests use no sockets: move this test to tests/engine")


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse network use; an event loop's internal socketpair still works."""
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, _no_network)
    yield


HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this directory's tests (the hook sees every collected item)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.unit)
