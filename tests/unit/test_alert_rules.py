"""docs/alerts.yml: Prometheus rule groups whose every expression names only metrics the engine
exports (and Prometheus' own `up`)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from validator_tui.engine.health import ServerHealth
from validator_tui.engine.metrics import EngineMetrics
from validator_tui.engine.state import EngineState

RULES = Path(__file__).parents[2] / "docs" / "alerts.yml"
#: PromQL words used in the rules that are not metric names.
PROMQL = {
    "sum", "and", "or", "unless", "increase", "rate", "deriv", "absent",
    "min_over_time", "max_over_time",
}  # fmt: skip
PROMETHEUS_OWN = {"up"}


def exported_names() -> set[str]:
    """Every metric (and sample) name a fresh engine's /metrics serves (a family without
    samples yet, as the hosts' before the first publish, still names itself)."""
    state = EngineState("hotkey")
    metrics = EngineMetrics(state, ServerHealth(state, "platform", "platform", down_on_5xx=False))
    text = metrics.exposition().decode()
    families = list(text_string_to_metric_families(text))
    return {f.name for f in families} | {s.name for f in families for s in f.samples}


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression (label matchers, strings and ranges removed)."""
    bare = re.sub(r"\b(by|on|without|ignoring)\s*\([^)]*\)", " ", expr)
    bare = re.sub(r"\{[^}]*\}|\"[^\"]*\"|\[[^\]]*\]|\b\d+(\.\d+)?[smh]?\b", " ", bare)
    return set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)) - PROMQL


def test_the_rules_cover_each_alert_the_operators_need():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == {
        "ValidatorDown",
        "ValidatorNoClaims",
        "ValidatorDeadLetters",
        "ValidatorHostDown",
        "ValidatorOutboxGrowing",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_every_expression_names_metrics_the_engine_exports():
    exported = exported_names() | PROMETHEUS_OWN
    groups = yaml.safe_load(RULES.read_text())["groups"]
    named: set[str] = set()
    for rule in (rule for group in groups for rule in group["rules"]):
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, (rule["alert"], names - exported)
        named |= names
    assert "validator_claims_total" in named and "validator_host_up" in named
