"""The vocabulary of tenantctl's dashboards: a board is rows of stat and time-series
panels, each with PromQL queries, built into Grafana's JSON by grafana-foundation-sdk.

A board names one template variable besides the data source: ``instance`` (the
controller's scrape target, from ``tenantctl_build_info``) or ``server`` (a server's
name, the ``instance`` label of its exporters). Panel ids are given in order, so the
JSON of a board only changes when its definition does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import encoder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as model

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
#: the exporter jobs of every server (controller/drivers/embedded/monitoring.py EXPORTERS)
SERVER_JOBS = "node|nginx|php-fpm|mysqld|postgres|pdns"
WIDTH = 24


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    kind: Literal["stat", "timeseries"] = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """A query variable: ``label_values(metric, label)``, every value by default."""

    name: str
    label: str
    metric: str
    source_label: str = "instance"


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    variable: Variable
    rows: tuple[Row, ...]


def stat_(title: str, expr: str, *, unit: str = "short", description: str = "", width: int = 6) -> Panel:
    """A single figure (the query's value; several series are shown side by side)."""
    return Panel(title, (Query(expr),), "stat", unit, width, 4, description)


def graph(title: str, *queries: Query, unit: str = "short", description: str = "", width: int = 12) -> Panel:
    return Panel(title, queries, "timeseries", unit, width, 8, description)


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def _targets(panel: Panel) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    out: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for i, query in enumerate(panel.queries):
        target = prometheus.Dataquery().expr(query.expr).ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
        if query.legend:
            target = target.legend_format(query.legend)
        out.append(target)
    return out


def _panel(panel: Panel, pid: int) -> stat.Panel | timeseries.Panel:
    built: stat.Panel | timeseries.Panel = stat.Panel() if panel.kind == "stat" else timeseries.Panel()
    built = built.id(pid).title(panel.title).datasource(DATASOURCE).unit(panel.unit)
    built = built.height(panel.height).span(panel.width).targets(_targets(panel))
    if panel.description:
        built = built.description(panel.description)
    return built


def _variable(var: Variable) -> dashboard.QueryVariable:
    return (dashboard.QueryVariable(var.name).label(var.label).datasource(DATASOURCE)
            .query(f"label_values({var.metric}, {var.source_label})")
            .include_all(True).multi(True).all_value(".*")
            .current(model.VariableOption(selected=True, text="All", value="$__all"))
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC))


def build(board: Board) -> dict[str, Any]:
    """The dashboard's JSON model (what Grafana imports)."""
    built = (dashboard.Dashboard(board.title).uid(board.uid).description(board.description)
             .tags(["tenantctl"]).editable().refresh("30s").time("now-6h", "now").timezone("browser")
             .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
             .with_variable(_variable(board.variable)))
    pid = 0
    for row in board.rows:
        pid += 1
        built = built.with_row(dashboard.Row(row.title).id(pid))
        for panel in row.panels:
            pid += 1
            built = built.with_panel(_panel(panel, pid))
    doc: dict[str, Any] = json.loads(json.dumps(built.build(), cls=encoder.JSONEncoder))
    return doc


def render(board: Board) -> str:
    """``build`` as the checked-in file's text: sorted keys, two-space indent, final newline."""
    return json.dumps(build(board), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
