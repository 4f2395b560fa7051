"""Shared pieces of the bench scripts: result tables, simulator subprocesses, engine configs,
process CPU and memory readings, and a cProfile summary grouped by package."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import cProfile
import fcntl
import os
import platform
import pstats
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyte

from validator_tui.config import (
    EngineSettings,
    HostPorts,
    ResourceLimits,
    ValidatorConfig,
    VmSpec,
)
from validator_tui.config_io import write_config
from validator_tui.demo import find_free_port_range

REPO = Path(__file__).resolve().parent.parent
# Bench scripts share the test suite's harnesses (tests/support): make the repository importable.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
HOTKEYS = (
    "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
    "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
    "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y",
    "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy",
    "5HGjWAeFDfFCWPsjFQdVV2Msvz2XtMktvgocEZcCj68kUMaw",
    "5CiPPseXPECbkjWCa6MnjNokrgYjMqmKndv2rSnekmSK2DjL",
    "5GNJqTPyNqANBkUVMN1LPPrxXnFouWXoe2wNSmmEoLctxiZY",
)
TABLE_HEADER = ("metric", "median", "p99", "baseline", "ratio", "target")


# -- statistics and tables ------------------------------------------------------------------


def percentile(samples: Sequence[float], pct: float) -> float:
    """The `pct` percentile (nearest rank) of `samples`; NaN when there are none."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(samples: Sequence[float]) -> float:
    """The median of `samples`; NaN when there are none."""
    return statistics.median(samples) if samples else float("nan")


@dataclass(frozen=True)
class Row:
    """One line of a result table (numbers already in the unit the metric names)."""

    metric: str
    median: float | None
    p99: float | None = None
    baseline: float | None = None
    target: str = ""

    def cells(self) -> tuple[str, ...]:
        ratio = (
            self.median / self.baseline
            if self.median is not None and self.baseline not in (None, 0)
            else None
        )
        return (
            self.metric,
            _fmt(self.median),
            _fmt(self.p99),
            _fmt(self.baseline),
            "" if ratio is None else f"{ratio:.2f}x",
            self.target,
        )


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != value:
        return "n/a"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def print_table(title: str, rows: Sequence[Row]) -> None:
    """Print `rows` as a Markdown table under `title` (the format BENCHMARKS.md uses)."""
    lines = [TABLE_HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE_HEADER))]
    print(f"\n### {title}\n")
    for index, line in enumerate(lines):
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(flush=True)


def print_machine() -> None:
    """One line naming the machine, the Python and the time of the run."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(
        f"machine: {os.cpu_count()} CPUs, {model}, Python {platform.python_version()}, {stamp}",
        flush=True,
    )


# -- process readings -----------------------------------------------------------------------


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process (default: this one) in MB, from /proc."""
    with open(f"/proc/{pid or 'self'}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS not found")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- simulators in their own processes ------------------------------------------------------


@dataclass
class SimProcesses:
    """The two simulators, each in its own `validator-tui sim …` process (`pids`: theirs, and
    those of any other simulator whose CPU `cpu_seconds` should count)."""

    platform_url: str
    vmm_url: str
    pids: tuple[int, ...]
    control: httpx.AsyncClient

    async def add_jobs(self, count: int) -> None:
        """Create `count` pending jobs (each announced with `new_job`)."""
        while count > 0:
            batch = min(count, 10_000)
            response = await self.control.post(
                f"{self.platform_url}/_sim/jobs", json={"count": batch}
            )
            response.raise_for_status()
            count -= batch

    async def add_unclaimable(self, count: int) -> None:
        """List `count` pending entries whose claims answer 404 (never announced)."""
        response = await self.control.post(
            f"{self.platform_url}/_sim/unclaimable", json={"count": count}
        )
        response.raise_for_status()

    async def set_rate(self, jobs_per_minute: float) -> None:
        """Let the platform simulator generate jobs at this rate (0 stops)."""
        response = await self.control.post(
            f"{self.platform_url}/_sim/rate", json={"jobs_per_minute": jobs_per_minute}
        )
        response.raise_for_status()

    async def jobs(self) -> list[dict[str, Any]]:
        """Every job in the simulator's history, with its `announced_ns`/`claim_received_ns`."""
        response = await self.control.get(f"{self.platform_url}/_sim/jobs")
        response.raise_for_status()
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        return jobs

    async def stats(self) -> dict[str, int]:
        """The platform simulator's counters."""
        response = await self.control.get(f"{self.platform_url}/_sim/stats")
        response.raise_for_status()
        stats: dict[str, int] = response.json()["stats"]
        return stats

    async def vmm_stats(self) -> dict[str, int]:
        """The VMM simulator's counters (RPCs by method, `logs`, `evaluator <path>`, …)."""
        response = await self.control.get(f"{self.vmm_url}/_sim/stats")
        response.raise_for_status()
        stats: dict[str, int] = response.json()
        return stats

    async def requests(self) -> dict[str, int]:
        """Requests served so far, by target: `platform GET /jobs/pending`, `vmm Status`,
        `vmm evaluator /health`, … (the simulators' own events are left out)."""
        counts = {
            f"platform {key}": value
            for key, value in (await self.stats()).items()
            if key.split(" ", 1)[0] in ("GET", "POST")
        }
        for key, value in (await self.vmm_stats()).items():
            if key not in ("vms_created", "vms_removed", "restarts"):
                counts[f"vmm {key}"] = value
        return counts

    def cpu_seconds(self) -> float:
        """CPU seconds the simulator processes (`pids`) have used so far."""
        return sum(cpu_seconds(pid) for pid in self.pids)

    async def wait_claimer_ready(self, hotkey: str, timeout: float = 60.0) -> None:
        """Announce three jobs and wait until the validator `hotkey` has claimed them all
        (so it is connected and its challenge CVMs are active)."""
        before = {job["id"] for job in await self.jobs()}
        await self.add_jobs(3)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            fresh = [job for job in await self.jobs() if job["id"] not in before]
            if fresh and all(job["claimed_by"] == hotkey for job in fresh):
                return
        raise RuntimeError(f"validator {hotkey[:8]} did not claim its warm-up jobs")

    async def results_accepted(self) -> int:
        """How many results the platform simulator has accepted so far."""
        return (await self.stats()).get("results_accepted", 0)

    async def feed(self, total: int, backlog: int) -> float:
        """Offer `total` jobs, keeping about `backlog` unfinished ones in front of the
        validator; return the seconds until all their results were accepted."""
        done_before = await self.results_accepted()
        started = time.monotonic()
        added = 0
        while True:
            done = await self.results_accepted() - done_before
            if done >= total:
                return time.monotonic() - started
            want = min(total, done + backlog) - added
            if want > 0:
                await self.add_jobs(want)
                added += want
            await asyncio.sleep(0.02)


async def spawn_sim(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start `validator-tui sim <args>` and return the process and the URL it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "validator_tui",
        "sim",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=REPO,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    url = line.decode().strip()
    if not url.startswith("http://127.0.0.1:"):
        process.kill()
        raise RuntimeError(f"simulator did not print its URL (got {url!r})")
    return process, url


@asynccontextmanager
async def sim_processes(
    *,
    seed: int = 0,
    boot_seconds: float = 0.0,
    evaluator_latency_s: float = 0.0,
    pending_limit: int = 100,
) -> AsyncIterator[SimProcesses]:
    """Start both simulators as subprocesses on ephemeral loopback ports (the platform lists
    at most `pending_limit` pending entries); stop them after."""
    platform_proc, platform_url = await spawn_sim(
        "platform", "--seed", str(seed), "--pending-limit", str(pending_limit)
    )
    vmm_proc, vmm_url = await spawn_sim("vmm", "--boot-seconds", str(boot_seconds))
    control = httpx.AsyncClient(timeout=30.0, trust_env=False)
    try:
        response = await control.post(
            f"{vmm_url}/_sim/evaluator", json={"latency_s": evaluator_latency_s}
        )
        response.raise_for_status()
        yield SimProcesses(platform_url, vmm_url, (platform_proc.pid, vmm_proc.pid), control)
    finally:
        await control.aclose()
        for process in (platform_proc, vmm_proc):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in (platform_proc, vmm_proc):
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


def bench_config(
    platform_url: str,
    vmm_url: str,
    state_dir: str | Path,
    *,
    hotkey: str = HOTKEYS[0],
    cpu_cores: int = 64,
    engine: dict[str, Any] | None = None,
) -> ValidatorConfig:
    """An engine config for the simulators: small VMs, a free host-port range, fast loops."""
    start, end = find_free_port_range(400)
    settings = {
        "auto_claim": True,
        "poll_interval_s": 2.0,
        "challenge_check_interval_s": 10.0,
        "boot_timeout_s": 30.0,
        "job_timeout_s": 60.0,
        "vm_poll_interval_s": 0.05,
        "request_timeout_s": 10.0,
        "ws_backoff_cap_s": 5.0,
    } | (engine or {})
    return ValidatorConfig(
        validator_hotkey=hotkey,
        platform_api_url=platform_url,
        dstack_vmm_url=vmm_url,
        state_dir=str(state_dir),
        resource_limits=ResourceLimits(
            cpu_cores=cpu_cores, memory_mb=cpu_cores * 1024, disk_mb=10_000_000, gpu_count=0
        ),
        engine=EngineSettings(**settings),
        job_vm=VmSpec(vcpu=2, memory_mb=2048, disk_gb=10),
        challenge_vm=VmSpec(vcpu=2, memory_mb=2048, disk_gb=20),
        host_ports=HostPorts(start=start, end=end),
    )


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` every 10 ms; RuntimeError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.01)


def cli_argv(*args: str, switch_interval: float | None = None) -> list[str]:
    """The command line of `validator-tui <args>` with this venv's Python; `switch_interval`:
    run it with `sys.setswitchinterval(switch_interval)` (the GIL hand-over period between
    the engine's thread and the console's, 5 ms by default)."""
    if switch_interval is None:
        return [sys.executable, "-m", "validator_tui", *args]
    code = (
        f"import sys; sys.setswitchinterval({switch_interval!r}); "
        "from validator_tui.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", code, *args]


def write_bench_config(config: ValidatorConfig, directory: Path) -> Path:
    """Write `config` as TOML in `directory` for `validator-tui run --config`."""
    return write_config(config, directory / "validator.toml")


# -- a program in a pseudo-terminal ---------------------------------------------------------


class PtyProgram:
    """A program running in its own pseudo-terminal (a real terminal as far as it knows).

    Everything it writes is read as it arrives (so it never blocks on output) and stamped
    with `time.monotonic()`; `wait_for` returns when a marker arrived. Only the bytes after
    the last `mark()` are kept, so long runs do not grow memory.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cols: int = 160,
        rows: int = 48,
        replies: dict[bytes, bytes] | None = None,
        emulate: bool = False,
    ) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = os.environ | {"TERM": "xterm-256color", "COLORTERM": "truecolor"}
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        os.set_blocking(master, False)
        self.pid = self.process.pid
        self._fd = master
        self._buffer = bytearray()
        self._base = 0
        self._chunks: list[tuple[int, float]] = []
        self._arrived = asyncio.Event()
        self._open = True
        #: Bytes received in all, and terminal queries answered like a real terminal would
        #: (e.g. DECRQM for synchronized output: Textual then frames each update with it).
        self.total_bytes = 0
        self._replies = dict(replies or {})
        self._tail = b""
        #: With `emulate`, a terminal emulator (pyte) shows what the program drew: the console
        #: sends only the cells that changed, so a text on screen need not be contiguous in
        #: the byte stream.
        self.screen: pyte.Screen | None = None
        self._stream: pyte.ByteStream | None = None
        if emulate:
            self.screen = pyte.Screen(cols, rows)
            self._stream = pyte.ByteStream(self.screen)
        self._looking_for: str | None = None
        self._seen_at: float | None = None
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 1 << 16)
        except OSError:
            data = b""
        if not data:
            self._close_reader()
            return
        self._buffer += data
        self.total_bytes += len(data)
        now = time.monotonic()
        self._chunks.append((self._base + len(self._buffer), now))
        if self._stream is not None:
            self._stream.feed(data)
            if (
                self._looking_for is not None
                and self._seen_at is None
                and self.shows(self._looking_for)
            ):
                self._seen_at = now
        if self._replies:
            self._answer(self._tail + data)
        self._arrived.set()

    def _answer(self, data: bytes) -> None:
        longest = max(len(query) for query in self._replies)
        for query, reply in list(self._replies.items()):
            if query in data:
                os.write(self._fd, reply)
                del self._replies[query]
        self._tail = data[-(longest - 1) :] if longest > 1 else b""

    def _close_reader(self) -> None:
        if self._open:
            self._open = False
            asyncio.get_running_loop().remove_reader(self._fd)
            self._arrived.set()

    def mark(self) -> int:
        """Forget the output so far; return the position of what comes next."""
        self._base += len(self._buffer)
        self._buffer.clear()
        self._chunks.clear()
        return self._base

    def take(self) -> bytes:
        """The output since the last `mark()`/`take()`, forgotten from here on."""
        data = bytes(self._buffer)
        self.mark()
        return data

    def send(self, data: bytes) -> float:
        """Type `data` into the terminal; return when it was written."""
        os.write(self._fd, data)
        return time.monotonic()

    async def wait_for(self, marker: bytes, since: int, timeout: float = 10.0) -> float:
        """The arrival time of the first `marker` written at or after position `since`."""
        deadline = time.monotonic() + timeout
        while True:
            start = max(0, since - self._base)
            found = self._buffer.find(marker, start)
            if found >= 0:
                end = self._base + found + len(marker)
                index = bisect.bisect_left(self._chunks, (end, 0.0))
                return self._chunks[index][1]
            if not self._open:
                raise RuntimeError(f"program ended before {marker!r} appeared")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{marker!r} did not appear within {timeout:g}s")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    def shows(self, text: str) -> bool:
        """Whether the emulated screen shows `text` on one line."""
        assert self.screen is not None, "PtyProgram(emulate=True) needed"
        return any(text in line for line in self.screen.display)

    async def wait_shown(self, text: str, timeout: float = 10.0) -> float:
        """The arrival time of the output after which the emulated screen shows `text`."""
        self._looking_for, self._seen_at = text, None
        try:
            if self.shows(text):
                return time.monotonic()
            deadline = time.monotonic() + timeout
            while self._seen_at is None:
                if not self._open:
                    raise RuntimeError(f"program ended before {text!r} was shown")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{text!r} was not shown within {timeout:g}s")
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), left)
            return self._seen_at
        finally:
            self._looking_for = None

    async def drain(self, seconds: float) -> None:
        """Keep reading (and forgetting) the output for `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            self.mark()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; close the terminal."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            for _ in range(100):
                if self.process.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                self.process.kill()
        await asyncio.to_thread(self.process.wait)
        self._close_reader()
        os.close(self._fd)


# -- profiles -------------------------------------------------------------------------------

_GROUPS = (
    ("textual", "textual"),
    ("rich", "rich"),
    ("validator_tui/engine", "engine"),
    ("validator_tui/clients", "clients"),
    ("validator_tui/tui", "tui"),
    ("validator_tui/sim", "simulators"),
    ("validator_tui/models", "models"),
    ("validator_tui", "validator_tui other"),
    ("httpx", "httpx"),
    ("httpcore", "httpcore"),
    ("h11", "h11"),
    ("websockets", "websockets"),
    ("uvicorn", "uvicorn"),
    ("starlette", "starlette"),
    ("pydantic", "pydantic"),
    ("anyio", "anyio"),
    ("asyncio", "asyncio"),
    ("sqlite3", "sqlite3"),
)


def _group(filename: str, function: str) -> str:
    if filename == "~":
        return "sqlite3 (C)" if "sqlite3" in function else "builtins (C)"
    for needle, name in _GROUPS:
        if f"/{needle}/" in filename or f"/{needle}." in filename:
            return name
    return "other stdlib"


def per_job(before: dict[str, int], after: dict[str, int], jobs: int) -> dict[str, float]:
    """Requests per job for each counter that moved between two `requests()` readings."""
    return {
        key: (after.get(key, 0) - before.get(key, 0)) / jobs
        for key in sorted(after)
        if after.get(key, 0) != before.get(key, 0)
    }


def print_requests(title: str, rates: dict[str, float]) -> None:
    """Requests per job by target, with the totals to the platform and to the VMM."""
    print(f"\n### {title}\n")
    for side in ("platform", "vmm"):
        rows = {key: value for key, value in rates.items() if key.startswith(side + " ")}
        for key, value in rows.items():
            print(f"  {key:<45} {value:7.3f}")
        print(f"  {side + ' total':<45} {sum(rows.values()):7.3f}")
    print(flush=True)


def print_profile(profile: cProfile.Profile | pstats.Stats, top: int = 15) -> None:
    """Own time per package, then the top functions by own time."""
    stats = profile if isinstance(profile, pstats.Stats) else pstats.Stats(profile)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1.0
    groups: dict[str, float] = defaultdict(float)
    for (filename, _line, function), entry in raw.items():
        groups[_group(filename, function)] += entry[2]
    print(f"\nprofile: own time by package (total {total:.2f} s under cProfile)")
    for name, seconds in sorted(groups.items(), key=lambda item: -item[1])[:12]:
        print(f"  {name:<22} {seconds:7.2f} s  {100 * seconds / total:5.1f}%")
    print(f"\nprofile: top {top} functions by own time")
    ranked = sorted(raw.items(), key=lambda item: -item[1][2])[:top]
    for (filename, line, function), entry in ranked:
        where = filename if filename == "~" else f"{_short(filename)}:{line}"
        print(f"  {entry[2]:7.3f} s  {entry[1]:8d} calls  {function}  ({where})")
    print(flush=True)


def _short(filename: str) -> str:
    marker = "site-packages/"
    if marker in filename:
        return filename.split(marker, 1)[1]
    return os.path.relpath(filename, REPO) if filename.startswith(str(REPO)) else filename
