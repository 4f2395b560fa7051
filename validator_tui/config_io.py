"""Write a `ValidatorConfig` back to TOML (for the demo, the crash tests and `config check`)."""

from __future__ import annotations

from pathlib import Path

import tomlkit

from validator_tui.config import SINGLE_HOST_KEYS, ValidatorConfig


def config_to_toml(config: ValidatorConfig, *, include_secrets: bool = False) -> str:
    """TOML that `load_config` reads back to an equal config (secrets only when asked): the
    single-host keys or `[[hosts]]`, whichever form `config` uses (a host's token is never
    written: `token_env` names the variable that holds it)."""
    data = config.model_dump(mode="json", exclude_none=True)
    if include_secrets and config.dstack_vmm_token is not None:
        data["dstack_vmm_token"] = config.dstack_vmm_token.get_secret_value()
    else:
        data.pop("dstack_vmm_token", None)
    if config.hosts:
        for key in SINGLE_HOST_KEYS:
            data.pop(key, None)
    else:
        data.pop("hosts", None)
    return tomlkit.dumps(data)


def write_config(config: ValidatorConfig, path: Path) -> Path:
    """Write `config` to `path` (mode 0600, as it may hold a token) and return the path."""
    path.write_text(config_to_toml(config, include_secrets=True), encoding="utf-8")
    path.chmod(0o600)
    return path
