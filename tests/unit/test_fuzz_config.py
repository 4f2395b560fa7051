"""Fuzz config loading: arbitrary TOML documents, arbitrary bytes and arbitrary mappings give a
`ValidatorConfig` or a `ConfigError`, never any other exception."""

from __future__ import annotations

import datetime
import tempfile
from pathlib import Path

import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.identities import ALICE
from validator_tui.config import (
    ConfigError,
    EngineSettings,
    HostPorts,
    MetricsSettings,
    OrmSettings,
    ResourceLimits,
    ValidatorConfig,
    VmSpec,
    config_from_mapping,
    load_config,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECTIONS = {
    "resource_limits": ResourceLimits,
    "engine": EngineSettings,
    "job_vm": VmSpec,
    "challenge_vm": VmSpec,
    "host_ports": HostPorts,
    "orm": OrmSettings,
    "metrics": MetricsSettings,
}
TOP_KEYS = [k for k in ValidatorConfig.model_fields if k not in SECTIONS] + ["typo"]

toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from([ALICE, "http://127.0.0.1:1", "unix:/tmp/x.sock", "", "0", "-1"])
    | st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30))
    | st.dates()
)
toml_values = st.recursive(
    toml_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, object]:
    """Config-shaped data: real keys and sections with wild values, plus unknown keys."""
    doc: dict[str, object] = {}
    for key in draw(st.lists(st.sampled_from(TOP_KEYS), max_size=6, unique=True)):
        doc[key] = draw(toml_values)
    for name in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        fields = [*SECTIONS[name].model_fields, "typo"]
        keys = draw(st.lists(st.sampled_from(fields), max_size=6, unique=True))
        doc[name] = {key: draw(toml_values) for key in keys}
    if draw(st.booleans()):
        doc["validator_hotkey"] = ALICE
    return doc


def load_text(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_bytes(data)
        try:
            load_config(path, env={})
        except ConfigError as exc:
            assert str(exc)


@FUZZ
@given(doc=documents())
def test_arbitrary_toml_documents_load_or_raise_config_error(doc):
    try:
        text = tomlkit.dumps(doc)
    except Exception:  # some generated values have no TOML form: not this test's subject
        return
    load_text(text.encode())


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_load_or_raise_config_error(raw):
    load_text(raw)


@FUZZ
@given(
    doc=documents(),
    env=st.dictionaries(
        st.sampled_from(
            [
                "VALIDATOR_HOTKEY",
                "DSTACK_VMM_URL",
                "PLATFORM_API_URL",
                "DSTACK_VMM_TOKEN",
                "VALIDATOR_TUI_STATE_DIR",
            ]
        ),
        st.text(max_size=30),
    ),
)
def test_arbitrary_mappings_and_env_validate_or_raise_config_error(doc, env):
    try:
        config = config_from_mapping(doc, "fuzz.toml", env)
    except ConfigError as exc:
        # A value from the environment is blamed on its variable, anything else on the file.
        sources = ("fuzz.toml: ", *(f"${name} (environment): " for name in env))
        assert all(line.startswith(sources) for line in str(exc).splitlines())
        return
    assert isinstance(config, ValidatorConfig)


def test_deeply_nested_toml_is_a_config_error():
    for text in (
        "a = " + "[" * 5000 + "]" * 5000,
        "a = " + "{b = " * 3000 + "1" + "}" * 3000,
        "[" + "a." * 3000 + "b]",
    ):
        load_text(text.encode())
