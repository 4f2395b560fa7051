"""systemd's notify protocol (sd_notify(3)): one datagram per message to `$NOTIFY_SOCKET`.

`READY=1` once recovery is done and claims may start, `STATUS=` with the counts every
STATUS_EVERY_S, `WATCHDOG=1` at half of `$WATCHDOG_USEC`, `STOPPING=1` at a graceful stop.
The pings are sent from the engine's event loop, so a loop that hangs stops pinging and
systemd restarts the service. Without `$NOTIFY_SOCKET` every send is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

logger = logging.getLogger("validator_tui.engine.notify")

STATUS_EVERY_S = 10.0


class SystemdNotifier:
    """Sends notify messages to the socket `$NOTIFY_SOCKET` names (absent: sends nothing)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        #: An abstract socket's name starts with "@" (a NUL byte on the wire).
        self.address = "\0" + path[1:] if path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or (pid.isdigit() and int(pid) == os.getpid())
        #: Seconds between watchdog pings (half the watchdog's timeout); None: no watchdog.
        self.watchdog_every: float | None = (
            int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else None
        )
        self._socket: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *lines: str) -> None:
        """Send one message of `lines` (a lost message is logged once and never raised)."""
        if not self.address:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning("cannot notify systemd at %s: %s", self.address, exc)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def run(self, status: Callable[[], str]) -> None:
        """Until cancelled: `WATCHDOG=1` every `watchdog_every` and `STATUS=` with `status()`
        every STATUS_EVERY_S. Only a responsive loop runs this, so only it pings."""
        if not self.address:
            return
        step = min(self.watchdog_every or STATUS_EVERY_S, STATUS_EVERY_S)
        loop = asyncio.get_running_loop()
        status_due = loop.time()
        while True:
            lines = ["WATCHDOG=1"] if self.watchdog_every is not None else []
            if loop.time() >= status_due:
                lines.append(f"STATUS={status()}")
                status_due = loop.time() + STATUS_EVERY_S
            if lines:
                self.send(*lines)
            await asyncio.sleep(step)
