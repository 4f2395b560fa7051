"""The process and its terminal: leaving it behind when it goes away (or when the console
detaches), so the engine never writes to, reads from or waits on a terminal."""

from __future__ import annotations

import os
import termios


def release_terminal() -> None:
    """Point stdin, stdout and stderr at /dev/null: nothing can block or fail on a terminal
    that is gone (a hung-up tty answers EIO), and nothing reaches one that is left."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0, 1, 2):
            os.dup2(null, fd)
    finally:
        os.close(null)


def terminal_alive(fd: int = 0) -> bool:
    """False once the terminal on `fd` has hung up (or `fd` is no terminal at all)."""
    try:
        termios.tcgetattr(fd)
    except (termios.error, OSError):
        return False
    return True
