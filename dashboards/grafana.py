"""Grafana's JSON shapes: panels, rows, variables and a dashboard, laid out on the 24-column grid.

Plain data in, plain JSON out (Grafana 11, schema version 39); no PromQL here (that is
``dashboards/promql.py``). Every panel and query variable takes its data source from the
``datasource`` variable, so a dashboard imports unchanged into any Grafana with a Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39  # Grafana 11
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
Json = dict[str, Any]


def target(expr: str, legend: str = "", *, instant: bool = False, fmt: str = "") -> Json:
    out: Json = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto"}
    out |= {"instant": instant, "range": not instant, "editorMode": "code"}
    if fmt:
        out["format"] = fmt
    return out


@dataclass
class Panel:
    """One panel: what it shows (kind, targets, unit) and how big it is (w x h grid cells)."""

    kind: str
    title: str
    description: str
    targets: list[Json]
    unit: str = "short"
    w: int = 12
    h: int = 8
    options: Json = field(default_factory=dict)
    defaults: Json = field(default_factory=dict)
    overrides: list[Json] = field(default_factory=list)
    extra: Json = field(default_factory=dict)

    def to_json(self, panel_id: int, pos: Json) -> Json:
        targets = [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(self.targets)]
        defaults = {"unit": self.unit, **self.defaults}
        return {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": pos,
            "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self.options,
            **self.extra,
        }


@dataclass
class Row:
    title: str


def stat(
    title: str, description: str, expr: str, unit: str, *, w: int = 6, **defaults: Any
) -> Panel:
    """A single number; ``defaults`` go to fieldConfig.defaults (decimals, noValue, ...)."""
    options: Json = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    options |= {"colorMode": "value", "graphMode": "none", "textMode": "auto"}
    targets = [target(expr, instant=True)]
    return Panel("stat", title, description, targets, unit, w, 4, options, defaults)


def series(title: str, description: str, targets: list[Json], unit: str, **kw: Any) -> Panel:
    stacked = kw.pop("stacked", False)
    custom: Json = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "spanNulls": False}
    if stacked:
        custom |= {"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 40}
    options = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]}}
    options["tooltip"] = {"mode": "multi", "sort": "desc"}
    return Panel(
        "timeseries",
        title,
        description,
        targets,
        unit,
        options=options,
        defaults={"custom": custom},
        **kw,
    )


def bars(title: str, description: str, expr: str, legend: str, unit: str, **kw: Any) -> Panel:
    options = {"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True}
    options["reduceOptions"] = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    targets = [target(expr, legend, instant=True)]
    return Panel("bargauge", title, description, targets, unit, options=options, **kw)


def table(title: str, description: str, columns: list[tuple[str, str, str]]) -> Panel:
    """One row per label set, one column per (name, unit, expr), merged on the labels."""
    targets = [target(expr, instant=True, fmt="table") for _, _, expr in columns]
    rename = {f"Value #{chr(ord('A') + i)}": name for i, (name, _, _) in enumerate(columns)}
    organize = {"excludeByName": {"Time": True}, "renameByName": rename}
    merge = [{"id": "merge", "options": {}}, {"id": "organize", "options": organize}]
    return Panel(
        "table",
        title,
        description,
        targets,
        w=24,
        h=9,
        options={"showHeader": True, "sortBy": [{"displayName": columns[0][0], "desc": True}]},
        defaults={"custom": {"align": "auto"}},
        overrides=[_unit_of(name, unit) for name, unit, _ in columns],
        extra={"transformations": merge},
    )


def _unit_of(column: str, unit: str) -> Json:
    return {
        "matcher": {"id": "byName", "options": column},
        "properties": [{"id": "unit", "value": unit}],
    }


def layout(items: list[Panel | Row]) -> list[Json]:
    """Place panels left to right, wrapping at 24 columns; a Row starts a new collapsible band."""
    out: list[Json] = []
    x = y = row_h = 0
    for number, item in enumerate(items, start=1):
        if isinstance(item, Row):
            y, x, row_h = y + row_h, 0, 0
            pos = {"h": 1, "w": 24, "x": 0, "y": y}
            out.append(
                {
                    "id": number,
                    "type": "row",
                    "title": item.title,
                    "collapsed": False,
                    "gridPos": pos,
                    "panels": [],
                }
            )
            y += 1
            continue
        if x + item.w > 24:
            y, x, row_h = y + row_h, 0, 0
        out.append(item.to_json(number, {"h": item.h, "w": item.w, "x": x, "y": y}))
        x, row_h = x + item.w, max(row_h, item.h)
    return out


def variable(name: str, label: str, metric: str, *, include_all: bool = True) -> Json:
    query = f"label_values({metric}, {name})"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "includeAll": include_all,
        "allValue": ".*",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
        "regex": "",
        "hide": 0,
    }


def datasource_variable() -> Json:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "refresh": 1,
        "regex": "",
        "hide": 0,
        "includeAll": False,
        "multi": False,
    }


def dashboard(
    uid: str, title: str, description: str, variables: list[Json], items: list[Any]
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["tokenmeter"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-7d", "to": "now"},
        "refresh": "1m",
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["tokenmeter"],
                "asDropdown": True,
                "title": "tokenmeter",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": layout(items),
    }


def red_below(value: float) -> Json:
    """Thresholds of a stat that is bad below ``value``."""
    steps = [{"color": "red", "value": None}, {"color": "green", "value": value}]
    return {"mode": "absolute", "steps": steps}


def red_above(value: float) -> Json:
    """Thresholds of a stat that is bad above ``value``."""
    steps = [{"color": "green", "value": None}, {"color": "red", "value": value + 1e-9}]
    return {"mode": "absolute", "steps": steps}
