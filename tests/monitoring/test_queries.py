"""Every query of the dashboards and the rules is PromQL that promtool accepts, names only
metrics and labels really exported (the controller's, rendered from ``Metrics``; the
servers' exporters', recorded in ``exporters.py`` and checked live), and (for dashboard
queries on the controller's series) returns data when Prometheus' engine (``promtool
test rules``) evaluates it on those series. The queries on the servers' exporters are
executed against a real Prometheus by tests/embedded/test_dashboards_live.py."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from controller import metrics

from . import exporters, exposition, promql
from .conftest import DASHBOARDS, RULE_TESTS, RULES

SAMPLE = exposition.sample()
EXPORTED = exposition.labels_by_name(SAMPLE)
VALUES = exposition.values_by_label(SAMPLE)
PROMETHEUS_OWN = {"up": set(exposition.TARGET_LABELS) | {"region"}}
"""Series Prometheus itself adds for every target (the servers' targets carry their region)."""
ENUMERATED = ("result", "sync", "state", "reason", "concern", "status", "level")
"""Labels whose values are a fixed vocabulary of the controller."""


class Query(NamedTuple):
    where: str
    expr: str
    legend: str = ""


def grafana(expr: str) -> str:
    """A dashboard expression as Grafana sends it, with every variable set to "All"."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def dashboard_queries() -> list[Query]:
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        out += [Query(f"{path.stem} panel {p['id']} {p['title']!r} {t['refId']}", t["expr"], t.get("legendFormat", ""))
                for p in dash["panels"] for t in p.get("targets", ())]
    return out


RULES_DOC: dict[str, Any] = yaml.safe_load(RULES.read_text())
RULE_LIST = [r for g in RULES_DOC["groups"] for r in g["rules"]]
RECORDED = {r["record"]: r["expr"] for r in RULE_LIST if "record" in r}
QUERIES = dashboard_queries()


def labels_of() -> dict[str, set[str]]:
    """Label names of every series a query may name: exported (plus the target labels),
    Prometheus' own, and the rules' recorded series."""
    out = {name: labels | exposition.TARGET_LABELS for name, labels in EXPORTED.items()}
    for name, labels in exporters.labels().items():
        out.setdefault(name, labels)
    out |= PROMETHEUS_OWN
    for name, expr in RECORDED.items():
        out[name] = promql.output_labels(expr, out) or set()
    return out


def problems(expr: str, legend: str = "", known: dict[str, set[str]] | None = None) -> list[str]:
    """What in ``expr`` (and its legend) names a series or label that is not exported."""
    known = labels_of() if known is None else known
    names = promql.names(expr)
    out = [f"metric {m} is not exported" for m in sorted(names.metrics) if m not in known]
    for metric, labels in names.selectors:
        out += [f"{metric} has no label {label}" for label in labels if metric in known and label not in known[metric]]
    for agg in names.aggregations:
        have = [known.get(m, set()) for m in agg.metrics]
        for label in agg.labels:
            ok = any(label in h for h in have) if agg.matching else all(label in h for h in have)
            if not ok:
                out.append(f"{agg.op} {agg.modifier} ({label}): not a label of {sorted(agg.metrics)}")
    every = set().union(*(known.get(m, set()) for m in names.metrics))
    out += [f"on/ignoring/group ({label}): no metric of the query has it" for label in names.matching
            if label not in every]
    result = promql.output_labels(expr, known)
    for label in re.findall(r"\{\{\s*\$?(?:labels\.)?(\w+)\s*\}\}", legend):
        if result is not None and label not in result:
            out.append(f"legend {{{{{label}}}}}: the query's result has labels {sorted(result)}")
    return out


@pytest.mark.parametrize("query", [pytest.param(q, id=q.where) for q in QUERIES])
def test_dashboard_query_names_exported_metrics_and_labels(query: Query) -> None:
    assert not problems(grafana(query.expr), query.legend), query.expr


@pytest.mark.parametrize("rule", [pytest.param(r, id=r.get("alert") or r["record"]) for r in RULE_LIST])
def test_rule_names_exported_metrics_and_labels(rule: dict[str, Any]) -> None:
    templated = " ".join(rule.get("annotations", {}).values())
    legend = " ".join(f"{{{{{label}}}}}" for label in re.findall(r"\$labels\.(\w+)", templated))
    assert not problems(rule["expr"], legend), rule["expr"]


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in DASHBOARDS])
def test_templating_variables_use_exported_labels(path: Path) -> None:
    dash = json.loads(path.read_text())
    found = 0
    for var in dash["templating"]["list"]:
        m = re.fullmatch(r"label_values\((\w+)(\{[^}]*\})?,\s*(\w+)\)", str(var.get("query", "")))
        if m:
            found += 1
            assert m[3] in labels_of()[m[1]], var
            assert not problems(f"{m[1]}{m[2] or ''}"), var
    assert found


@pytest.mark.parametrize(
    ("expr", "legend", "expected"),
    [
        pytest.param("sum(tenantctl_nope)", "", "metric tenantctl_nope is not exported", id="unknown-metric"),
        pytest.param('sum(tenantctl_concern_status{sttus="failed"})', "", "tenantctl_concern_status has no label sttus",
                     id="unknown-matcher"),
        pytest.param("sum by (servr) (tenantctl_dns_zones)", "", "sum by (servr): not a label of",
                     id="unknown-grouping"),
        pytest.param("sum by (server) (tenantctl_dns_zones) / sum by (server) (tenantctl_workqueue_depth)", "",
                     "not a label of ['tenantctl_workqueue_depth']", id="grouping-on-the-wrong-metric"),
        pytest.param("sum by (concern) (tenantctl_concern_status)", "{{status}}", "legend {{status}}",
                     id="legend-label-aggregated-away"),
        pytest.param("tenantctl_server_reachable == 0", "{{srv}}", "legend {{srv}}", id="legend-unknown-label"),
        pytest.param("tenantctl_deferred * on (server) tenantctl_server_reachable", "", None, id="on-label-of-one-side"),
        pytest.param("tenantctl_deferred * on (servr) tenantctl_server_reachable", "", "on/ignoring/group (servr)",
                     id="on-unknown-label"),
        pytest.param("bottomk(3, tenantctl_certificate_expiry_timestamp_seconds - time())", "{{subscription}}", None,
                     id="bottomk-keeps-labels"),
        pytest.param('sum(rate(tenantctl_reconcile_total{result="error"}[5m])) by (result)', "{{result}}", None,
                     id="grouping-after-the-argument"),
    ],
)
def test_the_name_check_bites(expr: str, legend: str, expected: str | None) -> None:
    found = problems(expr, legend)
    if expected is None:
        assert found == []
    else:
        assert any(expected in p for p in found), found


# -- promtool ---------------------------------------------------------------------------


def check_rules(promtool: str, path: Path, exprs: dict[str, str]) -> subprocess.CompletedProcess[str]:
    doc = {"groups": [{"name": "dashboard", "rules": [{"record": n, "expr": e} for n, e in exprs.items()]}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def record_name(i: int) -> str:
    return f"dashboard:query_{i}"


def test_dashboard_queries_parse_with_promtool(promtool: str, tmp_path: Path) -> None:
    assert len(QUERIES) >= 25
    done = check_rules(promtool, tmp_path / "dashboard.rules.yml",
                       {record_name(i): grafana(q.expr) for i, q in enumerate(QUERIES)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(QUERIES)} rules found" in done.stdout


def test_promtool_refuses_a_query_that_does_not_parse(promtool: str, tmp_path: Path) -> None:
    done = check_rules(promtool, tmp_path / "broken.rules.yml", {"dashboard:broken": "sum by (x (tenantctl_deferred)"})
    assert done.returncode != 0


def evaluate(promtool: str, folder: Path, queries: dict[str, str], m: metrics.Metrics) -> subprocess.CompletedProcess[str]:
    """``promtool test rules``: each query as an alert ``absent(query)`` that must not fire
    at 10m, on the series of ``m`` as one controller target would expose them."""
    recording = [g for g in RULES_DOC["groups"] if all("record" in r for r in g["rules"])]
    rules = {"groups": [*recording, {"name": "dashboard", "rules": [{"alert": n, "expr": f"absent({e})"}
                                                                    for n, e in queries.items()]}]}
    inputs = []
    for s in exposition.series(m):
        growing = s.kind in ("counter", "histogram", "summary") and not s.name.endswith("_created")
        values = f"{s.value!r}+{s.value!r}x10" if growing else f"{s.value!r}x10"
        inputs.append({"series": s.selector(instance="ctl-a:9500", job="tenantctl"), "values": values})
    tests = {"rule_files": ["dashboard.rules.yml"], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": inputs,
                        "alert_rule_test": [{"eval_time": "10m", "alertname": n, "exp_alerts": []} for n in queries]}]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dashboard.rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    (folder / "dashboard.test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return subprocess.run([promtool, "test", "rules", "dashboard.test.yml"], cwd=folder, capture_output=True,
                          text=True, timeout=120)


def on_controller_series(query: Query) -> bool:
    """The query names only the controller's series (and the rules' recorded ones)."""
    return promql.names(grafana(query.expr)).metrics <= set(EXPORTED) | set(RECORDED)


def test_every_dashboard_query_returns_data(promtool: str, tmp_path: Path) -> None:
    """On the controller's series; those on the servers' exporters run live."""
    names = {f"Query{i}": q for i, q in enumerate(QUERIES) if on_controller_series(q)}
    assert len(names) >= 40
    done = evaluate(promtool, tmp_path, {n: grafana(q.expr) for n, q in names.items()}, SAMPLE)
    empty = [names[n].where for n in re.findall(r"alertname: (Query\d+)", done.stdout + done.stderr)]
    assert done.returncode == 0 and not empty, f"queries without data: {empty}\n{done.stdout}{done.stderr}"


def test_a_query_without_data_is_caught(promtool: str, tmp_path: Path) -> None:
    queries = {"Good": "sum(tenantctl_deferred)", "Bad": 'sum(tenantctl_concern_status{status="Failed"})'}
    done = evaluate(promtool, tmp_path, queries, SAMPLE)
    assert done.returncode != 0
    assert "alertname: Bad" in done.stdout + done.stderr
    assert "alertname: Good" not in done.stdout + done.stderr


# -- the rule tests' input series ---------------------------------------------------------


def rule_test_series() -> list[tuple[str, dict[str, str]]]:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    out = []
    for group in doc["tests"]:
        for item in group["input_series"]:
            m = re.fullmatch(r"(\w+)\{(.*)\}", item["series"].strip())
            assert m, item["series"]
            out.append((m[1], dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', m[2]))))
    return out


@pytest.mark.parametrize("name_labels", [pytest.param(s, id=f"{s[0]}{sorted(s[1].items())}")
                                         for s in rule_test_series()])
def test_rule_tests_feed_series_the_controller_exports(name_labels: tuple[str, dict[str, str]]) -> None:
    """The alerts' unit tests use exported names, labels and label values, so a test
    that passes on made-up series cannot hide an alert that never fires."""
    name, labels = name_labels
    known = labels_of()
    assert name in known, f"{name} is not exported"
    assert set(labels) <= known[name], f"{name}: labels {sorted(set(labels) - known[name])} are not exported"
    for label in ENUMERATED:
        if label in labels and (name, label) in VALUES:
            assert labels[label] in VALUES[(name, label)], f"{name}{{{label}={labels[label]!r}}} is never exported"


def test_sample_feeds_every_setter() -> None:
    called: set[str] = set()

    class Recording(metrics.Metrics):
        def __getattribute__(self, name: str) -> Any:
            if name in exposition.FEEDING or name.startswith(exposition.FEEDING):
                called.add(name)
            return super().__getattribute__(name)

    exposition.sample(Recording(version="test"))
    assert exposition.setters() <= called, f"sample() does not call {sorted(exposition.setters() - called)}"
    assert len(exposition.setters()) >= 10


OFF_DASHBOARD = {
    "tenantctl_build_info": "feeds the instance variable (label_values)",
}


def test_every_exported_family_is_on_the_dashboard() -> None:
    families = {re.sub(r"_created$", "", s.name) for s in exposition.series(SAMPLE)}
    families = {re.sub(r"_(total|bucket|count|sum)$", "", f) for f in families}
    used = {re.sub(r"_(total|bucket|count|sum)$", "", m) for q in QUERIES for m in promql.names(grafana(q.expr)).metrics}
    missing = families - used - set(OFF_DASHBOARD)
    assert not missing, f"exported but on no dashboard panel: {sorted(missing)}"
    assert not set(OFF_DASHBOARD) & used, "listed as off the dashboard but queried"
