"""Microbench of the per-exchange metering step: CPU per event of ``Meter.__call__`` and parts.

``.venv/bin/python -m bench.meter`` (``--events N``, ``--repeats R``) times, in-process and with
no I/O, what every proxied request does when it ends (``Forwarder._finish``):

- ``build_event``: ``forward._build_event`` on an ``_Exchange`` whose ``AnthropicTap`` was fed
  a real SSE stream (``bench.payloads``), i.e. ``tap.result()`` plus the ``UsageEvent``;
- ``price``: ``Pricer.price`` (real catalog, rate cards warm in their LRU cache);
- ``observe``: ``Metrics.observe`` on a fresh ``CollectorRegistry`` (label children warm);
- ``meter``: ``Meter.__call__`` with that pricer and metrics and a recorder stub that appends to
  a list: pricing + metrics, the step without the recorder;
- ``submit``: the real ``Recorder.submit`` on priced events, into a spool in a temporary
  directory (the write-ahead path: the row, its JSON line, one ``write()``, sealing a segment
  every ``batch_size`` events); no database is touched, shipping is not measured;
- ``meter+submit``: ``Meter.__call__`` with the real recorder: the whole end-of-exchange step.

Events are Claude Code-like (1,000 users in 30 teams, 6 models of two providers, cache reads
and writes, a few web searches, long-context requests above 200k input tokens, and some
no-usage and error exchanges). Each figure is the median over ``--repeats`` passes over the
same events, after one unmeasured warm-up pass, in microseconds per event.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from bench.payloads import sse_events
from proxy.forward import _build_event, _Exchange
from proxy.meter import Meter
from proxy.metrics import Metrics
from proxy.pricing.engine import Pricer
from proxy.providers import anthropic
from proxy.store.engine import make_engine
from proxy.store.recorder import Recorder
from proxy.store.spool import Spool
from proxy.usage import Attribution, Status, Usage, UsageEvent
from tests.factories import bench_user, make_event

USERS, TEAMS = 1000, 30
MODELS = (
    ("anthropic", "claude-opus-4-8"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
    ("openai", "gpt-5"),
    ("openai", "gpt-5-mini"),
    ("openai", "o4-mini"),
)


class ListRecorder:
    """The recorder stub: ``submit`` only appends, as the real one only enqueues."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def submit(self, event: UsageEvent) -> None:
        self.events.append(event)


def synthetic_usage(rng: random.Random) -> Usage:
    """Claude Code-like usage: small uncached input, big cache reads, some writes and output."""
    roll = rng.random()
    if roll < 0.05:
        return Usage()  # errors, count_tokens, models: no usage at all
    long_context = roll > 0.95
    return Usage(
        input=rng.randrange(1, 500),
        cache_write_5m=rng.randrange(0, 5000) if rng.random() < 0.6 else 0,
        cache_write_1h=rng.randrange(0, 5000) if rng.random() < 0.1 else 0,
        cache_read=rng.randrange(200_000, 900_000) if long_context else rng.randrange(0, 80_000),
        output=rng.randrange(1, 2000),
        web_search_requests=rng.randrange(1, 4) if rng.random() < 0.03 else 0,
        reasoning=0,
    )


def synthetic_event(rng: random.Random, start: datetime) -> UsageEvent:
    user = rng.randrange(USERS)
    provider, model = MODELS[user % len(MODELS)]
    usage = synthetic_usage(rng)
    failed = rng.random() < 0.02
    return make_event(
        provider=provider,
        path="/v1/messages" if provider == "anthropic" else "/openai/v1/chat/completions",
        started_at=start + timedelta(seconds=rng.random() * 3600),
        **bench_user(user, rng, TEAMS),
        usage=usage,
        model=model,
        message_id="msg_bench",
        service_tier="standard",
        saw_usage=bool(usage.total_tokens()),
        complete=True,
        status=Status.UPSTREAM_ERROR if failed else Status.OK,
        http_status=529 if failed else 200,
        duration_ms=rng.random() * 30_000,
        upstream_headers_ms=90.0 + rng.random() * 200,
        first_token_ms=300.0 + rng.random() * 500,
        added_ms=0.2 + rng.random(),
        request_id="req_bench",
        priced=False,  # the meter prices it
    )


def synthetic_events(n: int, seed: int = 7) -> list[UsageEvent]:
    rng = random.Random(seed)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return [synthetic_event(rng, start) for _ in range(n)]


def fed_exchange() -> _Exchange:
    """An exchange at its end: an Anthropic SSE stream fed through the real tap."""
    provider = anthropic.provider("http://127.0.0.1:1")
    tap = anthropic.AnthropicTap("text/event-stream", None)
    for chunk in sse_events():
        tap.feed(chunk)
    t0 = time.perf_counter()
    return _Exchange(
        provider=provider,
        method="POST",
        path="/v1/messages",
        attribution=Attribution(user="user-0001", team="team-01", source="header"),
        started_at=datetime.now(UTC),
        t0=t0,
        http_status=200,
        stream=True,
        tap=tap,
        sent_at=t0 + 0.0001,
        headers_at=t0 + 0.09,
        answered_at=t0 + 0.0902,
        first_chunk_at=t0 + 0.3,
        request_id="req_bench",
    )


def per_event_us(step: Callable[[UsageEvent], object], events: Sequence[UsageEvent]) -> float:
    start = time.perf_counter_ns()
    for event in events:
        step(event)
    return (time.perf_counter_ns() - start) / len(events) / 1000


def median_us(step: Callable[[UsageEvent], object], events: Sequence[UsageEvent], n: int) -> float:
    per_event_us(step, events)  # warm-up: rate cards cached, label children created
    return statistics.median(per_event_us(step, events) for _ in range(n))


@contextmanager
def wal_recorder() -> Iterator[Recorder]:
    """A real recorder over a spool in a fresh temporary directory (removed afterwards)."""
    directory = Path(tempfile.mkdtemp(prefix="tokenmeter-bench-wal-"))
    try:
        yield Recorder(make_engine(f"sqlite+aiosqlite:///{directory}/unused.db"), Spool(directory))
    finally:
        shutil.rmtree(directory)


def wal_us(
    step: Callable[[Recorder], Callable[[UsageEvent], object]], events: Sequence[UsageEvent], n: int
) -> float:
    """Like ``median_us``, each pass (and the warm-up) on a fresh spool directory."""
    passes = []
    for _ in range(n + 1):
        with wal_recorder() as recorder:
            passes.append(per_event_us(step(recorder), events))
    return statistics.median(passes[1:])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    events = synthetic_events(args.events)
    pricer = Pricer()
    metrics = Metrics(CollectorRegistry())
    recorder = ListRecorder()
    meter = Meter(pricer, metrics, recorder)
    exchange = fed_exchange()

    def build(_: UsageEvent) -> object:
        return _build_event(exchange)

    rows: dict[str, float] = {}
    rows["meter"] = median_us(meter, events, args.repeats)
    recorder.events.clear()
    priced = [meter.priced(event) for event in events]  # as ``observe`` and ``submit`` get them
    rows["price"] = median_us(pricer.price, events, args.repeats)
    rows["observe"] = median_us(metrics.observe, priced, args.repeats)
    rows["build_event"] = median_us(build, events, args.repeats)
    rows["submit"] = wal_us(lambda recorder: recorder.submit, priced, args.repeats)
    rows["meter+submit"] = wal_us(
        lambda recorder: Meter(pricer, metrics, recorder), events, args.repeats
    )
    print(f"{len(events):,} events, median of {args.repeats} passes, µs per event:")
    for name, us in rows.items():
        print(f"  {name:<12} {us:8.2f}")


if __name__ == "__main__":
    main()
