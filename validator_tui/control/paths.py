"""Where an engine's files live: the lock, the control socket, the log file.

Everything hangs off the state directory, so `run` and `attach` find the same engine from the
same config. A Unix socket address holds at most 107 bytes of path: when
`<state_dir>/control.sock` is longer, the socket lives in the runtime directory
(`$XDG_RUNTIME_DIR/validator-tui/`, else `/tmp/validator-tui-<uid>/`) under a name derived
from the state directory, and `<state_dir>/control.sock` is a symbolic link to it.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
from pathlib import Path

SOCKET_NAME = "control.sock"
LOCK_NAME = "lock"
LOG_NAME = "validator.log"
#: `sun_path` is 108 bytes on Linux, the last one the terminating NUL.
MAX_SOCKET_PATH = 107
PRIVATE_MODE = 0o700
#: The server binds under a temporary name (`.control.sock.<pid>`) first: keep room for it.
TEMP_NAME_ROOM = 16


class ControlPathError(RuntimeError):
    """A directory the engine needs is not ours, or cannot be made private."""


def attach_command(state_dir: str | Path) -> str:
    """The command line that opens a console on the engine of `state_dir` (shell-quoted)."""
    return f"validator-tui attach --state-dir {shlex.quote(str(state_dir))}"


def state_dir_key(state_dir: Path) -> Path:
    """The state directory as both sides spell it: absolute, symbolic links resolved."""
    return state_dir.expanduser().resolve()


def lock_path(state_dir: Path) -> Path:
    return state_dir_key(state_dir) / LOCK_NAME


def log_path(state_dir: Path) -> Path:
    return state_dir_key(state_dir) / LOG_NAME


def link_path(state_dir: Path) -> Path:
    """`<state_dir>/control.sock`: the socket itself, or a link to it."""
    return state_dir_key(state_dir) / SOCKET_NAME


def fits(path: Path) -> bool:
    """True when `path`, and the temporary name it is bound under, fit in a socket address."""
    return len(os.fsencode(path)) + TEMP_NAME_ROOM <= MAX_SOCKET_PATH


def runtime_dirs() -> list[Path]:
    """Per-user directories for sockets whose state-dir path is too long, best first."""
    candidates = []
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        candidates.append(Path(xdg) / "validator-tui")
    candidates.append(Path("/tmp") / f"validator-tui-{os.getuid()}")
    return candidates


def socket_path(state_dir: Path) -> Path:
    """Where the engine of `state_dir` listens (see the module docstring)."""
    direct = link_path(state_dir)
    if fits(direct):
        return direct
    digest = hashlib.sha256(os.fsencode(state_dir_key(state_dir))).hexdigest()[:20]
    name = f"vt-{digest}.sock"
    for directory in runtime_dirs():
        if fits(directory / name):
            return directory / name
    return Path("/tmp") / f"validator-tui-{os.getuid()}" / name


def find_socket(state_dir: Path) -> Path:
    """The socket a console should connect to: the link's target if there is a link."""
    link = link_path(state_dir)
    if link.is_symlink():
        return Path(os.readlink(link))
    return socket_path(state_dir)


def ensure_private_dir(path: Path) -> bool:
    """Create `path` (mode 0700) or check that it is a directory of ours, and make it 0700.

    Returns True when an existing directory was tightened (group or others had access).
    Raises ControlPathError when `path` is a symbolic link, not a directory, or not ours.
    """
    path.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ControlPathError(f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise ControlPathError(
            f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.getuid()}): "
            "run the validator as the directory's owner, or use a state dir of your own"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        try:
            os.chmod(path, PRIVATE_MODE)
        except OSError as exc:
            raise ControlPathError(f"cannot make {path} private (mode 0700): {exc}") from exc
        return True
    return False
