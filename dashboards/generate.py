"""Writes tokenmeter's Grafana dashboards (dashboards/*.json) and the recording rules' expressions.

Why code and not hand-edited JSON: three dashboards and the Prometheus recording rules share one
vocabulary of PromQL (blended $/MTok, cache hit rate, input:output, spend vs compensation), one
filter set and one panel shape, and a change to any of them must land everywhere. Plain Python
writing plain JSON keeps that without a dependency. The parts:

- ``promql.py``: the vocabulary, every formula once;
- ``grafana.py``: Grafana's JSON shapes (panels, rows, variables, the grid);
- ``token_economics.py``, ``proxy_health.py``, ``people_roi.py``: one module per dashboard;
- ``rules.py``: the recording rules' expressions, written into
  ``deploy/prometheus/rules/tokenmeter.rules.yml`` (alerts and comments are edited there).

Run ``python dashboards/generate.py`` (or ``python -m dashboards.generate``) after editing;
``--check`` exits 1 when a committed file differs from what this script writes
(tests/test_deploy.py runs it). Every ``expr`` written here is evaluated against a real
Prometheus scraping a real proxy by tests/integration/test_prometheus.py, so a typo in a metric
or label fails CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

if not __package__:  # run as a file: the package lives one directory up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Imported after the path is set, so `python dashboards/generate.py` keeps working.
from dashboards import people_roi, proxy_health, rules, token_economics
from dashboards.grafana import Json

HERE = Path(__file__).resolve().parent
DASHBOARDS: dict[str, Callable[[], Json]] = {
    "token-economics.json": token_economics.build,
    "proxy-health.json": proxy_health.build,
    "people-roi.json": people_roi.build,
}


def render(build: Callable[[], Json]) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    """Every file this script writes, with the text it writes."""
    written = {HERE / name: render(build) for name, build in DASHBOARDS.items()}
    written[rules.RULES_FILE] = rules.write_exprs(rules.RULES_FILE.read_text())
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a written file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.relative_to(rules.ROOT))
        else:
            path.write_text(text)
    for name in stale:
        print(f"{name} is stale: run python dashboards/generate.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
