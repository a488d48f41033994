"""The PromQL vocabulary: every formula the dashboards and the recording rules use, defined once.

Blended and sticker $/MTok, cache hit rate, input:output, spend vs compensation: each is one
function here, parameterized by what differs between a Grafana panel and a recording rule (the
label filters, the window, the grouping, ``rate`` or ``increase``). The dashboards
(``dashboards/*.py``) call them with Grafana's variables; the recording rules
(``dashboards/rules.py``) call them with none, and ``python dashboards/generate.py`` writes both.
The definitions are README's ("Dashboards") and DESIGN's: blended $/MTok = dollars / all five
token kinds of *priced* requests x 1e6; cache hit rate = cache_read / every input kind.

Metric names are a contract with ``proxy/metrics.py``; tests/integration/test_prometheus.py
evaluates every expression against a real Prometheus scraping a real proxy.
"""

from __future__ import annotations

TOKENS = "tokenmeter_tokens_total"
COST = "tokenmeter_cost_usd_total"
STICKER = "tokenmeter_sticker_cost_usd_total"
UNPRICED_TOKENS = "tokenmeter_unpriced_tokens_total"
# Tokens of subscription (seat) traffic: paid $0 per token, so no paid $/MTok divides by them.
SEAT_TOKENS = "tokenmeter_api_equivalent_tokens_total"
# What that seat traffic would have cost at list price: shown beside spend, never added to it.
SEAT_COST = "tokenmeter_api_equivalent_cost_usd_total"
# A seat holder's plan windows (proxy/quota.py): the latest utilization, 0..1.
SEAT_QUOTA = "tokenmeter_seat_quota_utilization"
REQUESTS = "tokenmeter_requests_total"
# Pay as /metrics exports it by default: team totals, and who is in which team without an
# amount (proxy/paymetrics.py); never a person's pay. Their team is the person's team in the
# people table, not the team the traffic was tagged with. Every replica exports the same
# values: take the max across replicas, never the sum.
TEAM_PAY = "tokenmeter_team_annual_compensation_usd"
PERSON_TEAM = "tokenmeter_person_team_info"
ANNUALIZE = "365 / 30"  # 30 days of spend, annualized
# ROI as /metrics exports it (proxy/roimetrics.py): totals read from the database, the same on
# every replica (max across replicas, never the sum), by the team of the traffic.
TASK_VALUE = "tokenmeter_task_value_usd_total"
VALUED_COST = "tokenmeter_valued_task_cost_usd_total"


def sel(metric: str, filters: str, extra: str = "") -> str:
    """``metric{filters, extra}``, or the bare metric when there is nothing to match."""
    inner = ", ".join(part for part in (filters, extra) if part)
    return f"{metric}{{{inner}}}" if inner else metric


def over(fn: str, metric: str, filters: str, window: str, by: str = "", extra: str = "") -> str:
    """``sum [by (..)] (fn(metric{..}[window]))``."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({fn}({sel(metric, filters, extra)}[{window}]))"


# ---------------------------------------------------------------- unit economics


def priced_tokens(filters: str, window: str, by: str = "", fn: str = "increase") -> str:
    """Tokens of paid requests with a known price (all five kinds): every $/MTok's denominator,
    so requests without a price, and seat traffic (paid $0 per token), neither add dollars nor
    pull the rate down. Each ``or`` keeps the groups that have no such tokens."""
    tokens = over(fn, TOKENS, filters, window, by)
    priced = f"(({tokens} - {over(fn, UNPRICED_TOKENS, filters, window, by)}) or {tokens})"
    return f"(({priced} - {over(fn, SEAT_TOKENS, filters, window, by)}) or {priced})"


def blended(filters: str, window: str, by: str = "", fn: str = "increase") -> str:
    """Dollars per million priced tokens, all five kinds in the denominator (README)."""
    cost = over(fn, COST, filters, window, by)
    return f"{cost} / {priced_tokens(filters, window, by, fn)} * 1e6"


def sticker(filters: str, window: str, by: str = "", fn: str = "increase") -> str:
    """What the same priced tokens cost per million at list prices with no caching."""
    cost = over(fn, STICKER, filters, window, by)
    return f"{cost} / {priced_tokens(filters, window, by, fn)} * 1e6"


def cache_hit(filters: str, window: str, by: str = "", fn: str = "increase") -> str:
    """cache_read / (input + cache_write_5m + cache_write_1h + cache_read)."""
    hits = over(fn, TOKENS, filters, window, by, 'kind="cache_read"')
    inputs = over(fn, TOKENS, filters, window, by, 'kind!="output"')
    return f"{hits} / {inputs}"


def io_ratio(filters: str, window: str, by: str = "", fn: str = "increase") -> str:
    """Every input kind over output tokens."""
    inputs = over(fn, TOKENS, filters, window, by, 'kind!="output"')
    outputs = over(fn, TOKENS, filters, window, by, 'kind="output"')
    return f"{inputs} / {outputs}"


# ---------------------------------------------------------------- spend vs compensation
# ``teams`` filters the pay series (the people table's teams); ``spend_by_user`` is each
# person's spend over the last 30 days: computed (dashboards) or a recorded series (rules).


def spend_30d_by_user(filters: str = "") -> str:
    """Each person's spend over the last 30 days, whatever team their traffic was tagged with."""
    return over("increase", COST, filters, "30d", "user")


def people_teams(teams: str = "") -> str:
    """One series per person with a compensation record, labelled (user, people-table team);
    ``topk`` keeps one team per person while replicas disagree for a scrape after a move."""
    return f"topk by (user) (1, group by (user, team) ({sel(PERSON_TEAM, teams)}))"


def spend_30d_by_person_team(teams: str = "", spend_by_user: str = "") -> str:
    """Each person's 30-day spend, for people with a compensation record, labelled with their
    people team: a join on ``user`` only, since the counter's own team is the traffic's."""
    spend = spend_by_user or spend_30d_by_user()
    return f"{spend} * on (user) group_left (team) {people_teams(teams)}"


def pay(teams: str = "", by: str = "") -> str:
    """Annual compensation in USD of the selected people-table teams, per team or in all."""
    per_team = f"max by (team) ({sel(TEAM_PAY, teams)})"
    return per_team if by == "team" else f"sum({per_team})"


def spend_to_pay_by_team(teams: str = "", spend_by_user: str = "") -> str:
    """Its people's annualized spend / everyone's pay in the team; 0 for a team with no spend."""
    team_pay = pay(teams, "team")
    people = spend_30d_by_person_team(teams, spend_by_user)
    spend = f"(sum by (team) ({people}) or 0 * {team_pay})"
    return f"{spend} * {ANNUALIZE} / {team_pay}"


def spend_to_pay_overall(teams: str = "", spend_by_user: str = "") -> str:
    """The same for everyone with a compensation record (in the selected teams)."""
    spend = f"(sum({spend_30d_by_person_team(teams, spend_by_user)}) or vector(0))"
    return f"{spend} * {ANNUALIZE} / {pay(teams)}"


def compensation_covered(teams: str = "") -> str:
    """Share of the last 30 days' spend made by people who have a compensation record."""
    known = f"sum({spend_30d_by_user(teams)} and on (user) {PERSON_TEAM})"
    return f"({known} or vector(0)) / {over('increase', COST, teams, '30d')}"


# ---------------------------------------------------------------- ROI
# ROI = value of the tasks that have one / what their tokens cost (README, DESIGN): the same
# totals as ``tokenmeter report roi`` over all time.


def per_team(metric: str, filters: str = "") -> str:
    """A database-derived total per team: every replica exports the same value."""
    return f"max by (team) ({sel(metric, filters)})"


def roi_by_team(filters: str = "") -> str:
    """Each team's share of task value over its dollars on those tasks."""
    return f"{per_team(TASK_VALUE, filters)} / {per_team(VALUED_COST, filters)}"


def roi_overall(filters: str = "") -> str:
    """All value over all valued-task dollars (of the selected teams)."""
    return f"sum({per_team(TASK_VALUE, filters)}) / sum({per_team(VALUED_COST, filters)})"


def valued_share(filters: str, window: str, by: str = "") -> str:
    """Share of the window's dollars on tasks that have a value; a value entered in the window
    brings its task's earlier dollars with it, hence the cap at 1."""
    grouping = f" by ({by})" if by else ""
    valued = f"sum{grouping} (max by (team) (increase({sel(VALUED_COST, filters)}[{window}])))"
    return f"clamp_max({valued} / {over('increase', COST, filters, window, by)}, 1)"


# ---------------------------------------------------------------- latency


def quantile(q: float, metric: str, filters: str) -> str:
    """A latency quantile across replicas from a histogram's buckets."""
    buckets = over("rate", f"{metric}_bucket", filters, "$__rate_interval", "le")
    return f"histogram_quantile({q}, {buckets})"
