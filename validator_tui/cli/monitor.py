"""`validator-tui status` (the engine's health, with monitoring exit codes) and `validator-tui
serve` (the read-only console in a browser): the commands that watch a running engine."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from validator_tui.cli.common import state_dir_of, stop_on_signals

if TYPE_CHECKING:
    from validator_tui.control.status import Verdict


def status_command(args: argparse.Namespace) -> int:
    """`status`: the engine's health over its control socket, with the monitoring-plugins
    exit code (no engine on the state dir is CRITICAL; an unreadable config is UNKNOWN)."""
    from validator_tui.control.status import Level, Verdict

    state_dir = state_dir_of(args, "status")
    if state_dir is None:
        verdict = Verdict()
        verdict.add(Level.UNKNOWN, "cannot tell which state dir to ask (see above)")
    else:
        verdict = asyncio.run(_askstatus_command(state_dir))
    print(json.dumps(verdict.as_json()) if args.json else verdict.line())
    return int(verdict.level)


async def _askstatus_command(state_dir: Path) -> Verdict:
    """The verdict on the engine serving `state_dir` (CRITICAL when none answers)."""
    from validator_tui.control.client import EngineUnavailable, SocketEngine
    from validator_tui.control.paths import ControlPathError
    from validator_tui.control.status import Level, Verdict, assess

    client = SocketEngine(state_dir, read_only=True, client="status")
    try:
        await client.connect()
        if client.replica.snapshots == 0:
            raise EngineUnavailable("the engine sent no snapshot")
        return assess(await client.changes_since(0, 0))
    except (EngineUnavailable, ControlPathError, OSError) as exc:
        verdict = Verdict()
        verdict.add(Level.CRITICAL, f"no engine answers on {state_dir}: {exc}")
        return verdict
    finally:
        await client.close()


def serve_command(args: argparse.Namespace) -> int:
    """`validator-tui serve`: the read-only console of the engine on the state dir, in
    browsers holding this start's token, until SIGINT/SIGTERM."""
    state_dir = state_dir_of(args, "serve")
    if state_dir is None:
        return 1
    try:
        from validator_tui.web.server import ReadOnlyConsoleServer
    except ImportError as exc:
        print(
            f"serve: the web extra is not installed ({exc.name}): pip install -e '.[web]'",
            file=sys.stderr,
        )
        return 1
    from validator_tui.config import is_loopback
    from validator_tui.logs import setup_logging

    if not is_loopback(args.host):
        if not args.allow_remote:
            print(
                f"serve: {args.host} is not a loopback address: refused without "
                "--allow-remote (the console shows your validator's state; an SSH "
                "port-forward reaches a loopback one: ssh -L 8765:127.0.0.1:8765 HOST)",
                file=sys.stderr,
            )
            return 2
        print(
            f"warning: serving on {args.host}: anyone who can reach it and holds the token "
            "sees the console; traffic is plain HTTP, put TLS in a reverse proxy in front",
            file=sys.stderr,
        )
    if args.max_viewers < 1:
        print("serve: --max-viewers must be at least 1", file=sys.stderr)
        return 2
    setup_logging("text")
    server = ReadOnlyConsoleServer(
        state_dir,
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        max_viewers=args.max_viewers,
    )

    async def serve() -> int:
        await server.serve_until(stop_on_signals())
        return 0

    return asyncio.run(serve())
