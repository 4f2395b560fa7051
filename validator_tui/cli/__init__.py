"""Command-line entry: `validator-tui run | attach | status | demo | sim platform | sim vmm |
config check | outbox list|retry|discard`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from validator_tui import __version__
from validator_tui.cli.common import (
    lock_state_dir,
    state_dir_arguments,
    state_dir_of,
    stop_on_signals,
)
from validator_tui.cli.monitor import serve_command, status_command
from validator_tui.cli.outbox import outbox_command

#: The demo's job timeout: short, so a stuck job shows as failed while one watches.
DEMO_JOB_TIMEOUT_S = 60.0
#: From this many demo hosts on, the last one is reached over a unix socket.
UNIX_HOST_FROM = 3

if TYPE_CHECKING:
    from validator_tui.config import ValidatorConfig
    from validator_tui.control.interface import EngineMode
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

    run.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics here (overrides [metrics] listen)",
    )

    status = sub.add_parser(
        "status",
        help="the running engine's health in one line; exit 0 OK, 1 WARNING, 2 CRITICAL, "
        "3 UNKNOWN (monitoring plugins)",
    )
    status.add_argument("--config", metavar="PATH", help="config file (default: lookup order)")
    status.add_argument(
        "--state-dir", metavar="PATH", help="the engine's state dir (default: from the config)"
    )
    status.add_argument("--json", action="store_true", help="one JSON object instead of a line")

    attach = sub.add_parser(
        "attach", help="open the console of a running engine (quitting leaves it running)"
    )
    state_dir_arguments(attach)
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
        "--eval-seconds",
        type=float,
        default=1.5,
        metavar="S",
        help="evaluation time per job (e.g. 120 for jobs of minutes, as real ones take)",
    )
    demo.add_argument(
        "--job-timeout",
        type=float,
        default=None,
        metavar="S",
        help=f"a job not done after S seconds fails (default: {DEMO_JOB_TIMEOUT_S:g} s more "
        "than boot and evaluation take)",
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
    state_dir_arguments(outbox)
    actions = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="dead letters, unsent and the latest answered results"
    )
    listing.add_argument("--dead", action="store_true", help="dead letters only")
    retry = actions.add_parser("retry", help="send a dead letter again")
    retry.add_argument("job_id", metavar="ID", help="the job whose refused result to send again")
    discard = actions.add_parser("discard", help="give up on a dead letter for good")
    discard.add_argument("job_id", metavar="ID", help="the job whose refused result to give up")
    discard.add_argument("--yes", action="store_true", help="confirm: the result is never sent")

    serve = sub.add_parser(
        "serve",
        help="the console of a running engine in a browser, read-only, behind a token "
        "(needs the web extra: pip install -e '.[web]')",
    )
    state_dir_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0: any)")
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="the URL browsers use, when not http://HOST:PORT (a reverse proxy)",
    )
    serve.add_argument(
        "--max-viewers", type=int, default=4, metavar="N", help="browser sessions at once"
    )
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="listen on a non-loopback address (put TLS in a reverse proxy in front)",
    )

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
    if args.command == "status":
        return status_command(args)
    if args.command == "outbox":
        return outbox_command(args)
    if args.command == "serve":
        return serve_command(args)
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


def _run(args: argparse.Namespace) -> int:
    from validator_tui.config import ConfigError, load_config
    from validator_tui.control.interface import EngineMode
    from validator_tui.engine.validator import Validator
    from validator_tui.logs import setup_logging

    try:
        config = _with_metrics_listen(load_config(args.config), args.metrics_listen)
    except ConfigError as exc:
        print(f"config error:\n{exc}", file=sys.stderr)
        return 1
    mode = EngineMode.HEADLESS if args.headless else EngineMode.CONSOLE
    lock = lock_state_dir(config.state_path, mode, config.validator_hotkey)
    if lock is None:
        return 1
    validator = Validator(config, read_only=args.read_only)
    _warn_at_start(config, validator)
    if args.headless:
        setup_logging(args.log_format)
        return asyncio.run(_headless(validator, mode, args.log_format))
    return asyncio.run(_embedded(validator, mode, args.log_format))


def _with_metrics_listen(config: ValidatorConfig, listen: str | None) -> ValidatorConfig:
    """`config` with `run --metrics-listen` in force (ConfigError when it is not valid)."""
    from pydantic import ValidationError

    from validator_tui.config import ConfigError, MetricsSettings

    if listen is None:
        return config
    try:
        metrics = MetricsSettings(listen=listen, allow_remote=config.metrics.allow_remote)
    except ValidationError as exc:
        errors = "; ".join(str(error["msg"]) for error in exc.errors())
        raise ConfigError(f"--metrics-listen: {errors}") from exc
    return config.model_copy(update={"metrics": metrics})


def _attach(args: argparse.Namespace) -> int:
    state_dir = state_dir_of(args, "attach")
    if state_dir is None:
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
        lock = lock_state_dir(Path(args.state_dir), EngineMode.DEMO, DEMO_HOTKEY)
        if lock is None:
            return 1
    env = DemoEnvironment(
        seed=args.seed,
        jobs_per_minute=args.jobs_per_minute,
        boot_seconds=args.boot_seconds,
        evaluator_latency_s=args.eval_seconds,
        state_dir=args.state_dir,
        engine={"job_timeout_s": _demo_job_timeout(args)},
        hosts=args.hosts,
        unix_hosts=1 if args.hosts >= UNIX_HOST_FROM else 0,
    )
    async with env:
        config: ValidatorConfig = env.config  # type: ignore[assignment]
        lock = lock or lock_state_dir(config.state_path, EngineMode.DEMO, DEMO_HOTKEY)
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


def _demo_job_timeout(args: argparse.Namespace) -> float:
    """`--job-timeout`, else room for the demo's boot and evaluation plus DEMO_JOB_TIMEOUT_S."""
    if args.job_timeout is not None:
        return float(args.job_timeout)
    return DEMO_JOB_TIMEOUT_S + float(args.boot_seconds) + float(args.eval_seconds)


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
    await stop_on_signals().wait()
    await stop()
    return 0
