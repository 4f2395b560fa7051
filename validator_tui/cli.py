"""Command-line entry: `validator-tui run | attach | demo | sim platform | sim vmm |
config check | outbox list|retry|discard`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from validator_tui import __version__

#: The demo's job timeout: short, so a stuck job shows as failed while one watches.
DEMO_JOB_TIMEOUT_S = 60.0
#: From this many demo hosts on, the last one is reached over a unix socket.
UNIX_HOST_FROM = 3

if TYPE_CHECKING:
    from pathlib import Path

    from validator_tui.config import ValidatorConfig
    from validator_tui.control.interface import EngineMode
    from validator_tui.control.lock import StateDirLock
    from validator_tui.engine.store import OutboxRow
    from validator_tui.engine.validator import Validator


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="validator-tui",
        description="Platform Network validator engine and its terminal console.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the validator (TUI, or --headless for systemd)")
    run.add_argument("--config", metavar="PATH", help="config file (default: lookup order)")
    run.add_argument("--headless", action="store_true", help="no UI: log lines only")
    run.add_argument("--read-only", action="store_true", help="view only: refuse every command")
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text or one JSON object each (--headless; default: text)",
    )

    attach = sub.add_parser(
        "attach", help="open the console of a running engine (quitting leaves it running)"
    )
    attach.add_argument("--config", metavar="PATH", help="config file (default: lookup order)")
    attach.add_argument(
        "--state-dir", metavar="PATH", help="the engine's state dir (default: from the config)"
    )
    attach.add_argument(
        "--read-only", action="store_true", help="view only: the engine refuses every command"
    )

    demo = sub.add_parser("demo", help="run against built-in simulators on loopback")
    demo.add_argument("--headless", action="store_true", help="no UI: log lines only")
    demo.add_argument(
        "--jobs-per-minute",
        type=float,
        default=60.0,
        metavar="N",
        help="jobs the platform simulator creates per minute (default: 60; 0: none)",
    )
    demo.add_argument(
        "--seed", type=int, default=0, metavar="N", help="simulator seed: same seed, same run"
    )
    demo.add_argument("--boot-seconds", type=float, default=2.0, metavar="S", help="VM boot time")
    demo.add_argument(
        "--eval-seconds", type=float, default=1.5, metavar="S", help="evaluation time per job"
    )
    demo.add_argument(
        "--job-timeout",
        type=float,
        default=DEMO_JOB_TIMEOUT_S,
        metavar="S",
        help=f"a job not done after S seconds fails (default: {DEMO_JOB_TIMEOUT_S:g})",
    )
    demo.add_argument(
        "--hosts",
        type=int,
        default=1,
        choices=range(1, 9),
        metavar="N",
        help="dstack hosts: N VMM simulators, one validator pool (default: 1; at most 8); "
        "from 3 on, the last is reached over a unix socket, as dstack's VMM listens by default",
    )
    demo.add_argument("--state-dir", metavar="PATH", help="keep state here (default: temporary)")
    demo.add_argument("--read-only", action="store_true", help="view only: refuse every command")
    demo.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text or one JSON object each (--headless; default: text)",
    )

    sim = sub.add_parser("sim", help="serve a simulator until SIGINT/SIGTERM")
    sims = sim.add_subparsers(dest="sim", required=True, metavar="SIMULATOR")
    platform = sims.add_parser("platform", help="the Platform API simulator")
    platform.add_argument("--host", default="127.0.0.1", help="address to listen on")
    platform.add_argument("--port", type=int, default=0, help="0 picks a free port")
    platform.add_argument(
        "--seed", type=int, default=0, help="seed of the generated challenges, jobs and miners"
    )
    platform.add_argument(
        "--jobs-per-minute",
        type=float,
        default=0.0,
        metavar="N",
        help="create N pending jobs per minute (default: 0, no jobs; POST /_sim/jobs adds some)",
    )
    platform.add_argument(
        "--pending-limit",
        type=int,
        default=100,
        metavar="N",
        help="list at most N entries in GET /jobs/pending (default: 100)",
    )
    vmm = sims.add_parser("vmm", help="the dstack VMM simulator")
    vmm.add_argument("--host", default="127.0.0.1", help="address to listen on")
    vmm.add_argument("--port", type=int, default=0, help="0 picks a free port")
    vmm.add_argument(
        "--unix",
        metavar="PATH",
        help="serve on this unix socket instead (owner-only, as dstack's VMM by default)",
    )
    vmm.add_argument(
        "--boot-seconds", type=float, default=2.0, metavar="S", help="how long a VM boots"
    )
    vmm.add_argument(
        "--gpus", type=int, default=0, metavar="N", help="fake GPUs it lists (default: 0)"
    )

    outbox = sub.add_parser("outbox", help="results outbox: list, retry or discard dead letters")
    outbox.add_argument("--config", metavar="PATH", help="config file (default: lookup order)")
    actions = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="dead letters, unsent and the latest answered results")
    retry = actions.add_parser("retry", help="send a dead letter again")
    retry.add_argument("job_id", metavar="ID", help="the job whose refused result to send again")
    discard = actions.add_parser("discard", help="give up on a dead letter for good")
    discard.add_argument("job_id", metavar="ID", help="the job whose refused result to give up")
    discard.add_argument("--yes", action="store_true", help="confirm: the result is never sent")

    config = sub.add_parser("config", help="configuration tools")
    configs = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = configs.add_parser("check", help="validate and print the effective config")
    check.add_argument("--config", metavar="PATH", help="config file (default: lookup order)")
    check.add_argument("path", nargs="?", help="config file (same as --config)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "config":
        return _config_check(args.config or args.path)
    if args.command == "sim":
        return asyncio.run(_serve_sim(args))
    if args.command == "run":
        return _run(args)
    if args.command == "attach":
        return _attach(args)
    if args.command == "outbox":
        return _outbox(args)
    return asyncio.run(_demo(args))


def _config_check(path: str | None) -> int:
    from validator_tui.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"config error:\n{exc}", file=sys.stderr)
        return 1
    print(json.dumps(config.masked(), indent=2))
    # stdout stays one JSON document (scripts parse it); the readable summary goes beside it.
    for line in config.host_summary():
        print(line, file=sys.stderr)
    for warning in config.capacity_warnings():
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _lock(state_dir: Path, mode: EngineMode, hotkey: str) -> StateDirLock | None:
    """The state dir's lock, or None after saying on stderr who holds it (or what is wrong)."""
    from validator_tui.control.lock import StateDirLock, StateDirLocked
    from validator_tui.control.paths import ControlPathError

    try:
        return StateDirLock.acquire(state_dir, mode=mode, hotkey=hotkey)
    except StateDirLocked as exc:
        print(f"validator-tui: {exc}", file=sys.stderr)
    except (ControlPathError, OSError) as exc:
        print(f"validator-tui: cannot use state dir {state_dir}: {exc}", file=sys.stderr)
    return None


def _outbox(args: argparse.Namespace) -> int:
    """`outbox list|retry|discard`: through the control socket when an engine runs on the state
    dir (a retried result is sent at once), else on its store, holding the state dir's lock
    meanwhile so no engine starts under it."""
    from validator_tui.config import ConfigError, load_config
    from validator_tui.control.lock import StateDirLock, StateDirLocked
    from validator_tui.control.paths import ControlPathError

    if args.outbox_command == "discard" and not args.yes:
        print(
            f"refusing to discard the result of job {args.job_id} without --yes: "
            "a discarded result is never sent",
            file=sys.stderr,
        )
        return 1
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"outbox: {exc}", file=sys.stderr)
        return 1
    state_dir = config.state_path
    if not state_dir.is_dir():
        return _outbox_stopped(args, state_dir)
    try:
        lock = StateDirLock.acquire(state_dir, mode="outbox (no engine)", hotkey="")
    except StateDirLocked:
        return asyncio.run(_outbox_running(args, state_dir))
    except (ControlPathError, OSError) as exc:
        print(f"outbox: cannot use state dir {state_dir}: {exc}", file=sys.stderr)
        return 1
    try:
        return _outbox_stopped(args, state_dir)
    finally:
        lock.release()


def _outbox_stopped(args: argparse.Namespace, state_dir: Path) -> int:
    """The outbox of a stopped engine, on its store."""
    from validator_tui.engine import outbox_admin
    from validator_tui.engine.store import StoreError

    try:
        store = outbox_admin.open_store(state_dir)
    except StoreError as exc:
        print(f"outbox: {exc}", file=sys.stderr)
        return 1
    try:
        if args.outbox_command == "list":
            print(_outbox_table(outbox_admin.list_outbox(store)))
            return 0
        act = (
            outbox_admin.retry_dead_letter
            if args.outbox_command == "retry"
            else outbox_admin.discard_dead_letter
        )
        outcome = act(store, args.job_id)
    except StoreError as exc:
        print(f"outbox: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(outcome.message, file=sys.stdout if outcome.ok else sys.stderr)
    return 0 if outcome.ok else 1


async def _outbox_running(args: argparse.Namespace, state_dir: Path) -> int:
    """The outbox of the engine running on `state_dir`, through its control socket (the
    engine logs a retry or a discard with this command as its origin)."""
    from validator_tui.control.client import EngineUnavailable, SocketEngine

    client = SocketEngine(state_dir, client="outbox")
    try:
        await client.connect()
    except EngineUnavailable as exc:
        print(f"outbox: {exc}", file=sys.stderr)
        return 1
    try:
        if args.outbox_command == "list":
            try:
                rows = await client.list_outbox()
            except EngineUnavailable as exc:
                print(f"outbox: {exc}", file=sys.stderr)
                return 1
            print(_outbox_table(rows))
            return 0
        act = (
            client.retry_dead_letter
            if args.outbox_command == "retry"
            else (client.discard_dead_letter)
        )
        outcome = await act(args.job_id)
    finally:
        await client.close()
    print(outcome.message, file=sys.stdout if outcome.ok else sys.stderr)
    return 0 if outcome.ok else 1


def _outbox_table(rows: Sequence[OutboxRow]) -> str:
    """A summary line, then one aligned line per entry: job id, status, attempts, last update
    (UTC) and the last error (for a dead letter, the platform's words), sanitised."""
    import time

    from validator_tui.sanitize import clean_line

    if not rows:
        return "the outbox is empty"
    dead = sum(row.status == "dead" for row in rows)
    unsent = sum(row.status == "pending" for row in rows)
    table = [("JOB", "STATUS", "ATTEMPTS", "UPDATED (UTC)", "LAST ERROR")]
    for row in rows:
        updated = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row.updated_at))
        error = clean_line(row.last_error, 300) or "-"
        table.append((clean_line(row.job_id, 100), row.status, str(row.attempts), updated, error))
    widths = [max(len(line[column]) for line in table) for column in range(4)]
    lines = [f"{dead} dead letters, {unsent} unsent, {len(rows)} entries"]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        lines.append("  ".join([*cells, line[4]]))
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from validator_tui.config import ConfigError, load_config
    from validator_tui.control.interface import EngineMode
    from validator_tui.engine.validator import Validator
    from validator_tui.logs import setup_logging

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error:\n{exc}", file=sys.stderr)
        return 1
    mode = EngineMode.HEADLESS if args.headless else EngineMode.CONSOLE
    lock = _lock(config.state_path, mode, config.validator_hotkey)
    if lock is None:
        return 1
    validator = Validator(config, read_only=args.read_only)
    _warn_at_start(config, validator)
    if args.headless:
        setup_logging(args.log_format)
        return asyncio.run(_headless(validator, mode, args.log_format))
    return asyncio.run(_embedded(validator, mode, args.log_format))


def _attach(args: argparse.Namespace) -> int:
    from pathlib import Path

    from validator_tui.config import ConfigError, load_config

    if args.state_dir:
        state_dir = Path(args.state_dir)
    else:
        try:
            state_dir = load_config(args.config).state_path
        except ConfigError as exc:
            print(
                f"config error:\n{exc}\n(or name the engine's state dir: --state-dir PATH)",
                file=sys.stderr,
            )
            return 1
    from validator_tui.console import run_attached

    return asyncio.run(run_attached(state_dir, read_only=args.read_only))


def _warn_at_start(config: ValidatorConfig, validator: Validator) -> None:
    """Config warnings on stderr (the journal, or the terminal before the console opens) and
    in the engine's event log (the console shows it)."""
    for warning in config.capacity_warnings():
        print(f"warning: {warning}", file=sys.stderr)
        validator.state.event("warn", "config", warning)


async def _headless(validator: Validator, mode: EngineMode, log_format: str) -> int:
    from validator_tui.headless import run_headless

    await run_headless(validator, mode=mode, log_format=log_format)
    return 0


async def _embedded(
    validator: Validator, mode: EngineMode, log_format: str, *, stop_on_hangup: bool = False
) -> int:
    """The engine in this process with its console (see validator_tui.embedded)."""
    from validator_tui.embedded import EmbeddedConsole

    return await EmbeddedConsole(validator, mode, log_format, stop_on_hangup=stop_on_hangup).run()


async def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from validator_tui.control.interface import EngineMode
    from validator_tui.demo import DEMO_HOTKEY, DemoEnvironment, build_validator
    from validator_tui.logs import setup_logging

    lock = None
    if args.state_dir:
        lock = _lock(Path(args.state_dir), EngineMode.DEMO, DEMO_HOTKEY)
        if lock is None:
            return 1
    env = DemoEnvironment(
        seed=args.seed,
        jobs_per_minute=args.jobs_per_minute,
        boot_seconds=args.boot_seconds,
        evaluator_latency_s=args.eval_seconds,
        state_dir=args.state_dir,
        engine={"job_timeout_s": args.job_timeout},
        hosts=args.hosts,
        unix_hosts=1 if args.hosts >= UNIX_HOST_FROM else 0,
    )
    async with env:
        config: ValidatorConfig = env.config  # type: ignore[assignment]
        lock = lock or _lock(config.state_path, EngineMode.DEMO, DEMO_HOTKEY)
        if lock is None:
            return 1
        validator = build_validator(config, read_only=args.read_only)
        for line in env.outage_hints():
            validator.state.event("info", "demo", line)
        if args.headless:
            setup_logging(args.log_format)
            print(f"platform simulator: {env.platform.url}", flush=True)
            several = len(env.vmms) > 1
            for name, vmm in zip(env.host_names(), env.vmms, strict=True):
                which = f" ({name})" if several else ""
                print(f"dstack VMM simulator{which}: {vmm.url}", flush=True)
            for line in env.outage_hints():
                print(line, flush=True)
            print(f"state dir: {config.state_path}", flush=True)
            return await _headless(validator, EngineMode.DEMO, args.log_format)
        # A demo in a temporary state dir stops with its terminal (left running, it would
        # burn CPU for nobody); with --state-dir it outlives the terminal like `run`.
        temporary = not args.state_dir
        return await _embedded(
            validator, EngineMode.DEMO, args.log_format, stop_on_hangup=temporary
        )


async def _serve_sim(args: argparse.Namespace) -> int:
    if args.sim == "platform":
        from validator_tui.sim.platform import PlatformSimulator

        platform = PlatformSimulator(seed=args.seed, pending_limit=args.pending_limit)
        url = await platform.start(args.host, args.port)
        platform.set_job_rate(args.jobs_per_minute)
        stop = platform.stop
        if args.jobs_per_minute <= 0:
            print(
                "generating no jobs (--jobs-per-minute 0): start with --jobs-per-minute N, or "
                f"add some: curl -X POST {url}/_sim/jobs -d '{{\"count\": 5}}'",
                file=sys.stderr,
                flush=True,
            )
    else:
        from validator_tui.sim.vmm import VmmSimulator

        vmm = VmmSimulator(
            boot_seconds=args.boot_seconds,
            token=os.environ.get("DSTACK_VMM_TOKEN"),
            gpus=args.gpus,
        )
        if args.unix:
            url = await vmm.start_unix(args.unix)
        else:
            url = await vmm.start(args.host, args.port)
        stop = vmm.stop
    print(url, flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await stop()
    return 0
