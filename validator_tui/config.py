"""ValidatorConfig and ResourceLimits: loaded from TOML, overridden by the environment.

Lookup order for the file: `--config`, `$VALIDATOR_TUI_CONFIG`, `./config.toml`,
`$XDG_CONFIG_HOME/validator-tui/config.toml`. Environment overrides: `VALIDATOR_HOTKEY`,
`PLATFORM_API_URL` (alias `PLATFORM_BASE_API`), `DSTACK_VMM_URL`, `DSTACK_VMM_TOKEN`,
`VALIDATOR_TUI_STATE_DIR`.

dstack hosts come in one of two forms: the single-host keys (`dstack_vmm_url`,
`dstack_vmm_token`, `[resource_limits]`, `[host_ports]`: one host named `default`), or
`[[hosts]]` entries, each with its own URL, limits and ports and the *name* of the environment
variable that holds its token (`token_env`). Mixing both forms is an error naming both keys.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tomlkit
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from tomlkit.exceptions import ParseError, TOMLKitError

from validator_tui.config_errors import toml_error_text, validation_error_text
from validator_tui.models.resources import Resources
from validator_tui.ss58 import Ss58Error, check_ss58

#: Challenge CVMs the capacity warning plans room for (the platform decides how many run).
PLANNED_CHALLENGE_CVMS = 3


def _check_hotkey(value: str) -> str:
    try:
        check_ss58(value)
    except Ss58Error as exc:
        raise ValueError(f"expected an SS58 address (e.g. 5Grw…): {exc}") from None
    return value


def _check_url(value: str) -> str:
    if not re.match(r"^(https?://[^\s/]+|unix:/\S+)", value):
        raise ValueError("expected an http(s):// URL")
    return value.rstrip("/")


def _check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError("expected an http(s):// URL")
    return value.rstrip("/")


def _check_host_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", value):
        raise ValueError("expected a host name: letters, digits, '_', '.', '-' (at most 32)")
    return value


def _check_env_name(value: str) -> str:
    if value and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
        raise ValueError("expected the NAME of an environment variable (e.g. VMM2_TOKEN)")
    return value


Hotkey = Annotated[str, AfterValidator(_check_hotkey)]
HostName = Annotated[str, AfterValidator(_check_host_name)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
VmmUrl = Annotated[str, AfterValidator(_check_url)]
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]
PositiveSeconds = Annotated[float, Field(gt=0)]


class Section(BaseModel):
    """A config table: unknown keys are errors, so typos are caught."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class ResourceLimits(Section):
    """What this host may give to CVMs: the sum over every challenge CVM and job VM."""

    cpu_cores: PositiveInt = 16
    memory_mb: PositiveInt = 32768
    disk_mb: PositiveInt = 512000
    gpu_count: NonNegativeInt = 0

    @property
    def total(self) -> Resources:
        """The limits as an amount of resources."""
        return Resources(self.cpu_cores, self.memory_mb, self.disk_mb, self.gpu_count)


class EngineSettings(Section):
    """Loop intervals and timeouts of the engine."""

    auto_claim: bool = True
    poll_interval_s: PositiveSeconds = 5.0
    challenge_check_interval_s: PositiveSeconds = 60.0
    ws_backoff_cap_s: PositiveSeconds = 30.0
    request_timeout_s: PositiveSeconds = 10.0
    job_timeout_s: PositiveSeconds = 1800.0
    boot_timeout_s: PositiveSeconds = 300.0
    vm_poll_interval_s: PositiveSeconds = 1.0
    max_job_history: PositiveInt = 10000
    shutdown_deadline_s: PositiveSeconds = 20.0
    reserve_job_vms: NonNegativeInt = 1
    max_evaluator_answer_bytes: PositiveInt = 1024 * 1024
    #: Where job VMs go when several hosts can take them: the host with the most free
    #: capacity (`spread`) or the fullest one that still fits (`pack`).
    placement: Literal["spread", "pack"] = "spread"
    #: A host whose VMM does not answer for this long is `down`: its challenge CVMs move.
    host_down_grace_s: PositiveSeconds = 30.0
    #: A job whose claim answered 404/409/410 but that the platform lists again is claimed
    #: again only after this long, doubled at each further loss (at most 32 times as long).
    lost_claim_backoff_s: PositiveSeconds = 30.0


class VmSpec(Section):
    """Resources and image of one VM (dstack units: memory in MB, disk in GB)."""

    image: str = "dstack-0.5.2"
    vcpu: PositiveInt = 2
    memory_mb: PositiveInt = 4096
    disk_gb: PositiveInt = 20
    gpu: NonNegativeInt = 0

    @property
    def disk_mb(self) -> int:
        return self.disk_gb * 1024

    @property
    def resources(self) -> Resources:
        """What one VM of this spec holds from the quota (disk in MB)."""
        return Resources(self.vcpu, self.memory_mb, self.disk_mb, self.gpu)


class HostPorts(Section):
    """The pool of host ports mapped to VMs' evaluator port."""

    start: Annotated[int, Field(ge=1, le=65535, strict=True)] = 20000
    end: Annotated[int, Field(ge=1, le=65535, strict=True)] = 20999
    host_address: str = "127.0.0.1"
    evaluator_port: Annotated[int, Field(ge=1, le=65535, strict=True)] = 8080

    @model_validator(mode="after")
    def _ordered(self) -> HostPorts:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) must be >= start ({self.start})")
        return self

    @property
    def size(self) -> int:
        return self.end - self.start + 1


class HostConfig(Section):
    """One dstack host of the pool: its VMM, the name of the variable holding its token, and
    what it may give to this validator's VMs."""

    name: HostName
    url: VmmUrl
    token_env: EnvName = ""
    resource_limits: ResourceLimits = Field(default_factory=ResourceLimits)
    host_ports: HostPorts = Field(default_factory=HostPorts)


@dataclass(frozen=True, slots=True)
class HostSettings:
    """One host as the engine uses it: the token resolved (never shown, never logged), and
    `key` naming where its limits come from in the config (for messages)."""

    name: str
    url: str
    token: str | None
    resource_limits: ResourceLimits
    host_ports: HostPorts
    key: str
    token_env: str = ""

    def __repr__(self) -> str:
        return f"HostSettings(name={self.name!r}, url={self.url!r})"


#: The name of the one host of the single-host form.
DEFAULT_HOST = "default"
#: The single-host keys that `[[hosts]]` replaces.
SINGLE_HOST_KEYS = ("dstack_vmm_url", "dstack_vmm_token", "resource_limits", "host_ports")


class OrmSettings(Section):
    """How the executor fetches a submission's code through the challenge ORM."""

    submission_query: str = "SELECT * FROM submissions WHERE id = ?"
    code_field: str = "code"


class MetricsSettings(Section):
    """Where the engine serves Prometheus metrics (`GET /metrics`); off while `listen` is
    empty. A non-loopback address needs `allow_remote` (the metrics carry no secrets, but
    hosts, quotas and counts are the operator's business)."""

    listen: str = ""
    allow_remote: bool = False

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value:
            split_listen(value)
        return value

    @model_validator(mode="after")
    def _remote_allowed(self) -> MetricsSettings:
        if self.listen and not self.allow_remote and not is_loopback(split_listen(self.listen)[0]):
            raise ValueError(
                f"listen {self.listen!r} is not a loopback address: set allow_remote = true "
                "to serve metrics beyond this machine"
            )
        return self


def split_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[IPv6]:PORT`) as (host, port); ValueError when it is not one."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT (for example 127.0.0.1:9464)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, `[::1]` too) names this machine's loopback only."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ValidatorConfig(Section):
    """The whole configuration of one validator."""

    validator_hotkey: Hotkey
    platform_api_url: HttpUrl = "http://127.0.0.1:3000"
    dstack_vmm_url: VmmUrl = "http://127.0.0.1:11530"
    dstack_vmm_token: SecretStr | None = None
    state_dir: str = ""
    resource_limits: ResourceLimits = Field(default_factory=ResourceLimits)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    job_vm: VmSpec = Field(default_factory=VmSpec)
    challenge_vm: VmSpec = Field(default_factory=VmSpec)
    host_ports: HostPorts = Field(default_factory=HostPorts)
    hosts: list[HostConfig] = Field(default_factory=list)
    orm: OrmSettings = Field(default_factory=OrmSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @model_validator(mode="after")
    def _one_host_form(self) -> ValidatorConfig:
        if not self.hosts:
            return self
        mixed = [key for key in SINGLE_HOST_KEYS if key in self.model_fields_set]
        if mixed:
            raise ValueError(
                f"[[hosts]] and {mixed[0]} are both set: use either the single-host keys "
                f"({', '.join(SINGLE_HOST_KEYS)}) or [[hosts]] entries, not both"
            )
        names = [host.name for host in self.hosts]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"hosts: the name {twice[0]!r} is used by more than one host")
        for index, host in enumerate(self.hosts):
            for other in self.hosts[:index]:
                a, b = other.host_ports, host.host_ports
                if a.host_address == b.host_address and a.start <= b.end and b.start <= a.end:
                    raise ValueError(
                        f"hosts {other.name} and {host.name} both map host ports "
                        f"{max(a.start, b.start)}-{min(a.end, b.end)} on {a.host_address}: "
                        "their evaluators' addresses would collide; give them separate ranges"
                    )
        return self

    def host_settings(self, env: Mapping[str, str] | None = None) -> list[HostSettings]:
        """Every host, in config order, with its token read from `env` (default: the process
        environment): one host named `default` for the single-host keys."""
        env = os.environ if env is None else env
        if not self.hosts:
            token = self.dstack_vmm_token.get_secret_value() if self.dstack_vmm_token else None
            return [
                HostSettings(
                    DEFAULT_HOST,
                    self.dstack_vmm_url,
                    token,
                    self.resource_limits,
                    self.host_ports,
                    key="",
                )
            ]
        return [
            HostSettings(
                host.name,
                host.url,
                (env.get(host.token_env) or None) if host.token_env else None,
                host.resource_limits,
                host.host_ports,
                key=f"hosts[{index}].",
                token_env=host.token_env,
            )
            for index, host in enumerate(self.hosts)
        ]

    @property
    def state_path(self) -> Path:
        """The state directory: `state_dir`, else `$XDG_STATE_HOME/validator-tui`."""
        if self.state_dir:
            return Path(self.state_dir).expanduser()
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base) / "validator-tui"

    def impossible_specs(self) -> list[str]:
        """Why a job VM or a challenge CVM, as configured, can never fit on any host (one line
        per resource of each host); empty when both fit on at least one host."""
        problems = []
        hosts = self.host_settings(env={})
        for name, spec in (("job_vm", self.job_vm), ("challenge_vm", self.challenge_vm)):
            per_host = [_spec_problems(name, spec, host) for host in hosts]
            if all(per_host):
                problems += [problem for host_problems in per_host for problem in host_problems]
        return problems

    def host_warnings(self) -> list[str]:
        """A warning for each host on which a job VM or a challenge CVM can never fit (when
        another host can take it), and for each `token_env` that is not set."""
        warnings = []
        hosts = self.host_settings()
        if len(hosts) > 1:
            for name, spec in (("job_vm", self.job_vm), ("challenge_vm", self.challenge_vm)):
                for host in hosts:
                    for problem in _spec_problems(name, spec, host):
                        warnings.append(f"host {host.name}: {problem} there")
        for host in hosts:
            remote = _remote_vmm(host.url)
            if remote and host.host_ports.host_address.startswith("127."):
                warnings.append(
                    f"host {host.name}: its VMM is at {remote} but {host.key}host_ports."
                    f"host_address is {host.host_ports.host_address}: the validator reaches "
                    "evaluators at that address, so it must be one of that host's"
                )
            if host.token_env and host.token is None:
                warnings.append(
                    f"host {host.name}: ${host.token_env} (its token_env) is not set in this "
                    "environment: requests to its VMM carry no token"
                )
        return warnings

    def job_vm_room(self, challenge_cvms: int = PLANNED_CHALLENGE_CVMS) -> tuple[int, str]:
        """How many job VMs fit next to `challenge_cvms` challenge CVMs (each placed on the
        host with the most room left), and what limits them, with its arithmetic."""
        hosts = self.host_settings(env={})
        if len(hosts) == 1:
            return _job_vm_room(hosts[0], self.challenge_vm, self.job_vm, challenge_cvms)
        cvms = {host.name: 0 for host in hosts}
        for _ in range(challenge_cvms):
            roomiest = max(
                hosts,
                key=lambda h: _job_vm_room(h, self.challenge_vm, self.job_vm, cvms[h.name] + 1)[0],
            )
            cvms[roomiest.name] += 1
        rooms = [
            (host, _job_vm_room(host, self.challenge_vm, self.job_vm, cvms[host.name]))
            for host in hosts
        ]
        total = sum(room for _, (room, _why) in rooms)
        why = "; ".join(f"host {host.name}: {why}" for host, (_room, why) in rooms)
        return total, why

    def capacity_warnings(self) -> list[str]:
        """A warning when the limits leave room for no job VM next to the planned challenge
        CVMs (the engine then runs CVMs but no job), and the per-host warnings."""
        fits, why = self.job_vm_room()
        warnings = self.host_warnings()
        if fits >= 1:
            return warnings
        return [
            f"resource_limits leave room for no job VM next to {PLANNED_CHALLENGE_CVMS} "
            f"challenge CVMs ({why}): jobs will wait; raise resource_limits or shrink "
            "job_vm / challenge_vm",
            *warnings,
        ]

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data with every secret masked: the single-host keys
        or `hosts` (whichever form is used), each host's token shown as whether it is set."""
        data = self.model_dump(mode="json")
        data["state_dir"] = str(self.state_path)
        if self.dstack_vmm_token is not None:
            data["dstack_vmm_token"] = "********"
        if self.hosts:
            for key in SINGLE_HOST_KEYS:
                data.pop(key, None)
            for entry, host in zip(data["hosts"], self.host_settings(), strict=True):
                if host.token_env:
                    entry["token"] = "******** (set)" if host.token else "(not set)"
        else:
            data.pop("hosts", None)
        return data

    def host_summary(self) -> list[str]:
        """One line per host: name, VMM, limits, ports and token (masked), for `config check`."""
        lines = []
        for host in self.host_settings():
            limits, ports = host.resource_limits, host.host_ports
            if host.token_env:
                token = f"${host.token_env} ({'set' if host.token else 'NOT SET'})"
            else:
                token = "set" if host.token else "none"
            lines.append(
                f"host {host.name}: {host.url}; {limits.total}; ports {ports.start}-{ports.end} "
                f"on {ports.host_address}; token {token}"
            )
        return lines


def _remote_vmm(url: str) -> str:
    """The VMM's host name when `url` points off this machine ("" for loopback and unix)."""
    match = re.match(r"^https?://(\[[^\]]+\]|[^:/]+)", url)
    if match is None:
        return ""
    name = match.group(1).strip("[]")
    return "" if name in ("localhost", "::1") or name.startswith("127.") else name


def _spec_problems(name: str, spec: VmSpec, host: HostSettings) -> list[str]:
    """Why one VM of `spec` can never fit on `host` (one line per resource)."""
    limits = host.resource_limits
    problems = []
    for key, need, limit_key, limit, unit in (
        ("vcpu", spec.vcpu, "cpu_cores", limits.cpu_cores, "vCPU"),
        ("memory_mb", spec.memory_mb, "memory_mb", limits.memory_mb, "MB"),
        ("disk_gb", spec.disk_mb, "disk_mb", limits.disk_mb, "MB of disk"),
        ("gpu", spec.gpu, "gpu_count", limits.gpu_count, "GPU"),
    ):
        if need > limit:
            problems.append(
                f"{name}.{key}: one VM needs {need} {unit}, more than "
                f"{host.key}resource_limits.{limit_key} = {limit} allows: it can never start"
            )
    return problems


def _job_vm_room(
    host: HostSettings, cvm: VmSpec, job: VmSpec, challenge_cvms: int
) -> tuple[int, str]:
    """How many job VMs fit on `host` next to `challenge_cvms` CVMs, and what limits them."""
    limits = host.resource_limits
    room: list[tuple[int, str]] = []
    for limit_key, total, per_cvm, per_job in (
        ("cpu_cores", limits.cpu_cores, cvm.vcpu, job.vcpu),
        ("memory_mb", limits.memory_mb, cvm.memory_mb, job.memory_mb),
        ("disk_mb", limits.disk_mb, cvm.disk_mb, job.disk_mb),
        ("gpu_count", limits.gpu_count, cvm.gpu, job.gpu),
    ):
        if per_job == 0:
            continue
        left = total - challenge_cvms * per_cvm
        fits = max(0, left) // per_job
        room.append(
            (
                fits,
                f"{limit_key} {total} - {challenge_cvms} challenge CVMs x {per_cvm} = "
                f"{left} left, {per_job} per job VM",
            )
        )
    return min(room) if room else (0, "a job VM needs no resource")


class ConfigError(Exception):
    """A config that cannot be used; the message names the file, key, value and expectation."""


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "validator_hotkey": ("VALIDATOR_HOTKEY",),
    "platform_api_url": ("PLATFORM_API_URL", "PLATFORM_BASE_API"),
    "dstack_vmm_url": ("DSTACK_VMM_URL",),
    "dstack_vmm_token": ("DSTACK_VMM_TOKEN",),
    "state_dir": ("VALIDATOR_TUI_STATE_DIR",),
}


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read, by the documented lookup order; None if there is none.

    An explicitly named file (argument or `$VALIDATOR_TUI_CONFIG`) must exist.
    """
    named = explicit or os.environ.get("VALIDATOR_TUI_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    local = Path("config.toml")
    if local.is_file():
        return local
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    candidate = Path(xdg) / "validator-tui" / "config.toml"
    return candidate if candidate.is_file() else None


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> ValidatorConfig:
    """Load, override from the environment and validate; raise `ConfigError` on any problem."""
    env = os.environ if env is None else env
    file = find_config_file(path)
    label = str(file) if file else "<no config file>"
    data: dict[str, Any] = {}
    if file is not None:
        try:
            source = file.read_text(encoding="utf-8")
            data = tomlkit.parse(source).unwrap()
        except ParseError as exc:
            raise ConfigError(toml_error_text(label, exc, source)) from None
        except (TOMLKitError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{label}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{label}: cannot read: {exc.strerror}") from None
    return config_from_mapping(data, label, env)


def config_from_mapping(
    data: Mapping[str, Any], label: str, env: Mapping[str, str] | None = None
) -> ValidatorConfig:
    """Validate plain data (as parsed from TOML) plus environment overrides. An error about a
    value taken from the environment names the variable, not the file; a VM spec that can
    never fit the resource limits is an error."""
    merged = dict(data)
    from_env: dict[str, str] = {}
    for key, names in ENV_OVERRIDES.items():
        for name in names:
            value = (env or {}).get(name)
            if value:
                merged[key] = value
                from_env[key] = name
                break
    mixed = [key for key in SINGLE_HOST_KEYS if key in merged]
    if merged.get("hosts") and mixed:
        key = mixed[0]
        where = f"${from_env[key]} (environment) sets {key}" if key in from_env else key
        raise ConfigError(
            f"{label}: [[hosts]] and {where}: use either the single-host keys "
            f"({', '.join(SINGLE_HOST_KEYS)}) or [[hosts]] entries, not both"
        )
    try:
        config = ValidatorConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(validation_error_text(label, exc, ValidatorConfig, from_env)) from None
    problems = config.impossible_specs()
    if problems:
        raise ConfigError("\n".join(f"{label}: {problem}" for problem in problems))
    return config
