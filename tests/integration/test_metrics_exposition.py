"""``/metrics`` as scrapers read it: the text format whatever they prefer, gzip when they accept
it, built off the event loop so a big exposition never delays proxied traffic."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator

import httpx
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tests.conftest import Proxy

# What Prometheus 2.42 sends: OpenMetrics first, the text format after.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def test_a_scraper_preferring_openmetrics_gets_the_text_format_gzipped(
    make_proxy: Callable[..., Proxy],
) -> None:
    proxy = make_proxy()
    headers = {"accept": PROMETHEUS_ACCEPT, "accept-encoding": "gzip"}
    with httpx.stream("GET", f"{proxy.url}/metrics", headers=headers) as answer:
        raw = b"".join(answer.iter_raw())
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=1.0.0; charset=utf-8")
    assert answer.headers["content-encoding"] == "gzip"
    text = gzip.decompress(raw).decode()
    assert "# TYPE tokenmeter_requests_total counter" in text  # OpenMetrics would say requests
    assert "# EOF" not in text


class ThreadProbe(Collector):
    """Records the thread each collection runs on."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.threads.append(threading.current_thread())
        yield GaugeMetricFamily("probe", "the thread that collected", value=1)


def test_the_exposition_is_built_off_the_event_loop(make_proxy: Callable[..., Proxy]) -> None:
    proxy = make_proxy()
    probe = ThreadProbe()
    proxy.app.parts.metrics.registry.register(probe)
    answer = proxy.http.get("/metrics")
    assert answer.status_code == 200
    assert "\nprobe 1.0\n" in answer.text
    server_thread = proxy.server._thread  # uvicorn's event loop runs on this thread
    assert probe.threads
    assert all(thread is not server_thread for thread in probe.threads)
