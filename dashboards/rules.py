"""The recording rules' expressions, from the same vocabulary as the dashboards.

``RECORDED`` maps each recording rule of ``deploy/prometheus/rules/tokenmeter.rules.yml`` to its
expression, built by ``dashboards/promql.py``'s functions: a rule and a panel that show the same
figure use the same formula. ``write_exprs(text)`` returns the rules file with every recording
rule's ``expr`` replaced by its entry here (alerts, comments and everything else untouched);
``python dashboards/generate.py`` writes it and ``--check`` fails while the file differs.
"""

from __future__ import annotations

import re
from pathlib import Path

from dashboards.promql import (
    COST,
    blended,
    cache_hit,
    io_ratio,
    over,
    roi_by_team,
    roi_overall,
    spend_30d_by_user,
    spend_to_pay_by_team,
    spend_to_pay_overall,
    sticker,
    valued_share,
)

ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = ROOT / "deploy" / "prometheus" / "rules" / "tokenmeter.rules.yml"
MODEL, TEAM = "provider, model", "team"
SPEND_30D = "user:tokenmeter_cost_usd:increase30d"  # recorded once, read by both ratios

RECORDED: dict[str, str] = {
    "model:tokenmeter_blended_usd_per_mtok:rate1h": blended("", "1h", MODEL, "rate"),
    "team:tokenmeter_blended_usd_per_mtok:rate1h": blended("", "1h", TEAM, "rate"),
    "model:tokenmeter_sticker_usd_per_mtok:rate1h": sticker("", "1h", MODEL, "rate"),
    "model:tokenmeter_cache_hit_ratio:rate1h": cache_hit("", "1h", MODEL, "rate"),
    "team:tokenmeter_cache_hit_ratio:rate1h": cache_hit("", "1h", TEAM, "rate"),
    "model:tokenmeter_input_output_ratio:rate1h": io_ratio("", "1h", MODEL, "rate"),
    "team:tokenmeter_input_output_ratio:rate1h": io_ratio("", "1h", TEAM, "rate"),
    "team:tokenmeter_cost_usd:increase1h": over("increase", COST, "", "1h", TEAM),
    SPEND_30D: spend_30d_by_user('user!=""'),
    "team:tokenmeter_spend_to_compensation:ratio30d": spend_to_pay_by_team("", SPEND_30D),
    "org:tokenmeter_spend_to_compensation:ratio30d": spend_to_pay_overall("", SPEND_30D),
    "team:tokenmeter_task_roi:ratio": roi_by_team(),
    "org:tokenmeter_task_roi:ratio": roi_overall(),
    "team:tokenmeter_valued_spend_share:ratio30d": valued_share("", "30d", TEAM),
    "org:tokenmeter_valued_spend_share:ratio30d": valued_share("", "30d"),
}

_RECORD = re.compile(r"(?P<indent> *)- record: (?P<name>\S+)\n")
_WIDTH = 100
_BREAKS = (" / ", " or ")  # where a long expression goes on a new line (outside any brackets)


class RulesError(Exception):
    """The rules file and ``RECORDED`` do not name the same recording rules."""


def write_exprs(text: str) -> str:
    """``text`` (the rules file) with each recording rule's ``expr`` as ``RECORDED`` says."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    found: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        match = _RECORD.fullmatch(lines[i])
        i += 1
        if match is None:
            continue
        name, indent = match["name"], match["indent"] + "  "
        if name not in RECORDED or not lines[i].startswith(f"{indent}expr:"):
            raise RulesError(f"recording rule {name}: no expression in dashboards/rules.py")
        i += 1
        while i < len(lines) and lines[i].startswith(indent + " "):  # the old block's lines
            i += 1
        out.append(_expr_yaml(indent, RECORDED[name]))
        found.append(name)
    if sorted(found) != sorted(RECORDED):
        raise RulesError(f"not in the rules file: {sorted(set(RECORDED) - set(found))}")
    return "".join(out)


def normalized(expr: str) -> str:
    """An expression with its whitespace collapsed, for comparing a rule with ``RECORDED``."""
    return re.sub(r"\s+", " ", expr).strip()


def _expr_yaml(indent: str, expr: str) -> str:
    if len(f"{indent}expr: {expr}") <= _WIDTH:
        return f"{indent}expr: {expr}\n"
    first, *rest = _split(expr)
    body = [f"{indent}  {first}\n", *(f"{indent}    {part}\n" for part in rest)]
    return f"{indent}expr: |\n" + "".join(body)


def _split(expr: str) -> list[str]:
    """``expr`` in lines, each starting at a ``/`` or ``or`` outside brackets; a division by a
    number stays on its line (``* 365 / 30``)."""
    parts, depth, start = [], 0, 0
    for at, char in enumerate(expr):
        depth += (char in "([{") - (char in ")]}")
        if depth or not expr.startswith(_BREAKS, at) or at == start:
            continue
        if expr[at + 3 : at + 4].isdigit():
            continue
        parts.append(expr[start:at])
        start = at + 1
    parts.append(expr[start:])
    return parts
