"""`ConsoleDriver`: Textual's Linux driver, for a terminal that may go away (an SSH drop).

When the terminal goes away, writes to it fail (EIO) and reads may too. Textual's writer
thread would die on the first failed write, after which the app blocks on its full queue; its
input thread would report a crash. Here a failed write or read is what it really is, a hangup:
the process gets SIGHUP (whose handler closes the console and lets the engine run on), and
output is dropped from then on instead of blocking the app.

A hangup also sends SIGCONT, and Textual's driver answers any SIGCONT by starting application
mode again (new input and output threads), suspended or not, and even after the app ended
(its handlers stay installed): in a process that lives on without a terminal, those threads
keep it from ever exiting. Here only a SIGCONT after our own SIGTSTP resumes, and the
handlers are reset when the driver closes.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import IO, Any, cast

from textual.drivers.linux_driver import LinuxDriver


class _Output:
    """The terminal as Textual's writer thread sees it: a failed write is a hangup."""

    def __init__(self, file: IO[str], on_lost: Callable[[], None]) -> None:
        self._file = file
        self._on_lost = on_lost
        self._lost = False

    def write(self, text: str) -> int:
        if not self._lost:
            try:
                self._file.write(text)
            except OSError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self._lost:
            try:
                self._file.flush()
            except OSError:
                self._gone()

    def _gone(self) -> None:
        self._lost = True
        self._on_lost()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class ConsoleDriver(LinuxDriver):
    """LinuxDriver whose terminal may vanish: see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hung_up = threading.Event()
        if self._file is not None:
            self._file = cast(Any, _Output(self._file, self.hang_up))

    def hang_up(self) -> None:
        """Tell this process its terminal is gone, the way the kernel does (once)."""
        if not self._hung_up.is_set():
            self._hung_up.set()
            os.kill(os.getpid(), signal.SIGHUP)

    def run_input_thread(self) -> None:
        try:
            super().run_input_thread()
        except OSError:
            self.hang_up()

    def _sigcont_application(self, *args: Any) -> None:
        if self._must_signal_resume:  # set when SIGTSTP suspended the console
            super()._sigcont_application(*args)

    def close(self) -> None:
        """Stop writing, and leave job control signals to their defaults again."""
        super().close()
        for sig in (signal.SIGTSTP, signal.SIGCONT):
            signal.signal(sig, signal.SIG_DFL)
