"""examples/alerts/reconciler.rules.yaml: Prometheus rule groups whose expressions name only metrics that a
real daemon exports (checked against a scrape of its /metrics over the listener)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.app.daemon.conftest import DaemonWorld, server
from tests.app.daemon.test_metrics import running, scrape

RULES = Path(__file__).resolve().parents[3] / "examples" / "alerts" / "reconciler.rules.yaml"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
            "group_right", "inf", "nan"}  # fmt: skip
WANTED = {"ReconcilerToolboxUnobserved", "ReconcilerStepsFailing", "ReconcilerServersStalled",
          "ReconcilerNoSuccessfulCycle"}  # fmt: skip


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    assert isinstance(doc, dict) and set(doc) == {"groups"} and isinstance(doc["groups"], list)
    names = [g["name"] for g in doc["groups"]]
    assert len(names) == len(set(names)), "group names must be unique"
    out: list[dict[str, Any]] = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "limit", "rules"} and group["rules"]
        out.extend(group["rules"])
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: what is left after strings, label matchers, ranges,
    grouping clauses, function calls and keywords are taken out."""
    assert expr.count("(") == expr.count(")"), f"unbalanced parentheses: {expr}"
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        if word.lower() in KEYWORDS or re.match(r"\s*\(", text[m.end() :]):
            continue
        names.add(word)
    return names


def test_the_rule_file_is_prometheus_rule_groups_for_the_issue_s_alerts() -> None:
    found = rules()
    alerts = [r["alert"] for r in found if "alert" in r]
    assert set(alerts) >= WANTED and len(alerts) == len(set(alerts))
    unobserved = next(r for r in found if r.get("alert") == "ReconcilerToolboxUnobserved")
    assert unobserved["for"] == "10m"
    for rule in found:
        assert ("alert" in rule) != ("record" in rule)
        allowed = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"} if "alert" in rule else \
            {"record", "expr", "labels"}  # fmt: skip
        assert set(rule) <= allowed, rule
        assert NAME.match(rule.get("alert") or rule["record"])
        assert isinstance(rule["expr"], str) and metric_names(rule["expr"])
        if "for" in rule:
            assert DURATION.match(rule["for"])
        for key in ("labels", "annotations"):
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in rule.get(key, {}).items())


def test_every_expression_names_only_metrics_a_real_daemon_exports(world_of: Callable[..., DaemonWorld]) -> None:
    w = world_of(1)
    w.write({"tb0": [server("sa")]})
    d = w.daemon(interval=3600, listen="127.0.0.1:0")
    with running(d):
        body, samples = scrape(d)
    # What the scrape declares: every sample's name, and every family's (a labelled series with no value yet,
    # such as the suspended gauge when nothing is suspended, is still declared with its HELP and TYPE).
    exported = {name for name, _ in samples}
    for family in text_string_to_metric_families(body):
        suffixes = {"counter": ("_total",), "histogram": ("_count", "_sum", "_bucket")}.get(family.type, ("",))
        exported |= {family.name + suffix for suffix in suffixes}
    for rule in rules():
        missing = metric_names(rule["expr"]) - exported
        assert not missing, f"{rule.get('alert')}: {sorted(missing)} not exported"


def test_the_name_extraction_sees_through_promql() -> None:
    expr = ('sum by (environment) (rate(a_total{route=~"/tools/{name}"}[5m])) / on (job) group_left () b > 3 '
            "and time() - c")  # fmt: skip
    assert metric_names(expr) == {"a_total", "b", "c"}
