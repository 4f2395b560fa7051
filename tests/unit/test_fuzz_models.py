"""Fuzz the wire edges with hypothesis: every wire model and the WebSocket frame parser take
arbitrary JSON (and arbitrary bytes), and only the typed decoding error may escape."""

from __future__ import annotations

import contextlib
import inspect
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from validator_tui.models import platform as platform_models
from validator_tui.models import vmm as vmm_models
from validator_tui.models.platform import MessageDecodeError, WsMessage, parse_ws_message

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def wire_models() -> list[type[BaseModel]]:
    """Every pydantic model defined in validator_tui.models.*."""
    found = []
    for module in (platform_models, vmm_models):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseModel) and obj.__module__ == module.__name__:
                found.append(obj)
    return found


MODELS = wire_models()
FIELD_NAMES = [
    *sorted({name for model in MODELS for name in model.model_fields}),
    "type",
    "raw",
    "error",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["", "new_job", "job_cancelled", "challenge_updated", "2025-01-01T00:00Z"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=25,
)
# Objects shaped like the models (known keys, wild values), so the validators actually run.
shaped = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=10)


def dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


@FUZZ
@given(model=st.sampled_from(MODELS), value=shaped | json_values)
def test_every_wire_model_raises_only_validation_errors(model, value):
    for attempt in (
        lambda: model.model_validate(value),
        lambda: model.model_validate_json(dumps(value)),
    ):
        with contextlib.suppress(ValidationError):
            attempt()


@FUZZ
@given(model=st.sampled_from(MODELS), raw=st.binary(max_size=200))
def test_every_wire_model_decodes_arbitrary_bytes_or_refuses(model, raw):
    with contextlib.suppress(ValidationError):
        model.model_validate_json(raw)


@FUZZ
@given(
    value=shaped.map(lambda d: d | {"type": d.get("type", "new_job")}) | shaped | json_values,
    as_bytes=st.booleans(),
)
def test_ws_parser_returns_a_message_or_raises_its_decode_error(value, as_bytes):
    frame = dumps(value)
    try:
        parsed = parse_ws_message(frame.encode() if as_bytes else frame)
    except MessageDecodeError:
        return
    assert isinstance(value, dict) and parsed.type == value["type"][:100]
    assert isinstance(parsed, WsMessage)


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300))
def test_ws_parser_survives_arbitrary_frames(raw):
    with contextlib.suppress(MessageDecodeError):
        parse_ws_message(raw)


def test_ws_parser_refuses_deeply_nested_frames():
    for frame in ("[" * 100_000, '{"type": "new_job", "x": ' + "[" * 50_000 + "]" * 50_000 + "}"):
        try:
            parse_ws_message(frame)
        except MessageDecodeError:
            continue
        raise AssertionError("a nested frame was accepted")
