"""CreateVm / GetComposeHash request checks, with dstack's error words (spec §4)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from typing import Any

from pydantic import ValidationError

from validator_tui.models.vmm import VmConfiguration

_NAME = re.compile(r"[A-Za-z0-9 _.@~!$^()-]+")
RUNNERS = ("docker-compose", "nerdctl-compose", "bash")
_REQUIRED_COMPOSE_FIELDS = ("manifest_version", "name", "runner")
_CONFIG_DEFAULTS: dict[str, Any] = {
    "name": "",
    "image": "",
    "compose_file": "",
    "vcpu": 0,
    "memory": 0,
    "disk_size": 0,
}


class SimVmmError(Exception):
    """A dstack error: answered as HTTP 400 `{"error": str(exc)}`."""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> None:
    """dstack's VM name rule (`Invalid name: …`)."""
    if not _NAME.fullmatch(name):
        raise SimVmmError(f"Invalid name: {name}")


def _compose_error(compose_file: str) -> str | None:
    """Why dstack would refuse this app-compose, or None when it parses."""
    try:
        compose = json.loads(compose_file)
    except ValueError as exc:
        return f"{exc}"
    if not isinstance(compose, dict):
        return "invalid type: expected struct AppCompose"
    for key in _REQUIRED_COMPOSE_FIELDS:
        if key not in compose:
            return f"missing field '{key}'"
    version = compose["manifest_version"]
    valid_version = (isinstance(version, int) and not isinstance(version, bool)) or (
        isinstance(version, str) and version.isdigit() and str(int(version)) == version
    )
    if not valid_version:
        return f"invalid manifest_version: {json.dumps(version)}"
    if compose["runner"] not in RUNNERS:
        expected = ", ".join(f"'{runner}'" for runner in RUNNERS)
        return f"unknown variant '{compose['runner']}', expected one of {expected}"
    return None


def check_compose(compose_file: str) -> None:
    """Parse app-compose strictly, as dstack's load_vm does."""
    error = _compose_error(compose_file)
    if error is not None:
        raise SimVmmError(f"Failed to load VM: Failed to read compose file: {error}")


def check_gpus(raw: Any, slots: list[str]) -> None:
    """dstack's checks of a request's `gpus` on a host with GPU `slots` (none: GPU
    passthrough is off; attaching all GPUs is not allowed)."""
    if raw is None:
        return
    mode = raw.get("attach_mode", "") if isinstance(raw, dict) else ""
    if mode not in ("listed", "all"):
        raise SimVmmError(f"Invalid GPU attach mode: {mode}")
    listed = raw.get("gpus") or []
    if not slots and (mode == "all" or listed):
        raise SimVmmError("GPU is not enabled")
    if mode == "all":
        raise SimVmmError("Attaching all GPUs is not allowed")


def parse_config(body: dict[str, Any], gpu_slots: list[str]) -> VmConfiguration:
    """The request as a VmConfiguration (absent fields take proto defaults), its `gpus`
    checked against the host's GPU slots."""
    check_gpus(body.get("gpus"), gpu_slots)
    try:
        return VmConfiguration.model_validate({**_CONFIG_DEFAULTS, **body})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise SimVmmError(f"Failed to decode request: {where}: {first['msg']}") from exc


def normalise_ports(config: VmConfiguration, port_mapping_enabled: bool) -> list[dict[str, Any]]:
    """The checked port mappings (empty `host_address` → 127.0.0.1) as stored and echoed."""
    if config.ports and not port_mapping_enabled:
        raise SimVmmError("Port mapping is disabled")
    ports: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    for port in config.ports:
        if port.protocol not in ("tcp", "udp"):
            raise SimVmmError(f"Invalid protocol: {port.protocol}")
        if not 1 <= port.host_port <= 65535:
            raise SimVmmError("Invalid host port")
        if not 1 <= port.vm_port <= 65535:
            raise SimVmmError("Invalid vm port")
        address = port.host_address or "127.0.0.1"
        try:
            ipaddress.ip_address(address)
        except ValueError as exc:
            raise SimVmmError("Invalid host address") from exc
        key = (port.protocol, port.host_port)
        if key in seen:
            raise SimVmmError(f"Duplicate host port: {port.protocol}:{port.host_port}")
        seen.add(key)
        ports.append(
            {
                "protocol": port.protocol,
                "host_port": port.host_port,
                "vm_port": port.vm_port,
                "host_address": address,
            }
        )
    return ports


def check_resources(config: VmConfiguration) -> None:
    """vcpu, memory and disk_size must be positive (dstack has no server-side defaults)."""
    for field, value in (
        ("vcpu", config.vcpu),
        ("memory", config.memory),
        ("disk_size", config.disk_size),
    ):
        if value <= 0:
            raise SimVmmError(f"Invalid {field}: must be greater than 0, got {value}")


def app_id_for(config: VmConfiguration) -> str:
    """A supplied app_id without `0x`, lower-cased; else sha256(compose_file)[:40]."""
    if config.app_id is not None:
        return config.app_id.removeprefix("0x").lower()
    return sha256_hex(config.compose_file)[:40]


def echo_configuration(
    config: VmConfiguration, ports: list[dict[str, Any]], app_id: str
) -> dict[str, Any]:
    """The configuration as GetInfo echoes it: app_id set, ports normalised, gpus defaulted."""
    echo = config.model_dump(mode="json")
    echo["ports"] = ports
    echo["app_id"] = app_id
    if echo["gpus"] is None:
        echo["gpus"] = {"gpus": [], "attach_mode": "listed"}
    if echo["simulated_tee"]:
        echo["no_tee"] = True
    return echo
