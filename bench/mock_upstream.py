"""A fast mock of Anthropic's ``POST /v1/messages`` that is never the bottleneck of the bench.

Raw asyncio protocol on uvloop with httptools parsing: no framework, no per-request coroutine,
responses pre-encoded at start. One process listens on two ports:

* ``--fast-port``: answers at once; JSON or the whole SSE stream written event by event;
* ``--real-port``: "realistic" timing: ``--ttfb`` (50 ms) to the first byte, then one SSE event
  every ``--gap`` (2 ms), the way the API trickles tokens.

JSON or SSE is chosen by ``"stream": true`` in the first bytes of the body (see ``payloads``).
Any other path answers 404 in Anthropic's error format; ``GET /healthz`` answers 200.

Run: ``python -m bench.mock_upstream --fast-port 9001 --real-port 9002``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools
import uvloop

from bench import payloads

_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\nrequest-id: req_bench\r\ntransfer-encoding: chunked\r\n\r\n"
)
_LAST_CHUNK = b"0\r\n\r\n"


def _json_response(status: bytes, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status.decode()}\r\ncontent-type: application/json\r\n"
    head += f"request-id: req_bench\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass(frozen=True)
class Responses:
    """Every response the mock sends, encoded once."""

    message: bytes
    sse_frames: tuple[bytes, ...]
    not_found: bytes
    health: bytes

    @classmethod
    def build(cls) -> Responses:
        frames = [_chunk(event) for event in payloads.sse_events()]
        frames[0] = _SSE_HEAD + frames[0]
        frames[-1] = frames[-1] + _LAST_CHUNK
        return cls(
            message=_json_response(b"200 OK", payloads.json_message()),
            sse_frames=tuple(frames),
            not_found=_json_response(b"404 Not Found", payloads.not_found()),
            health=_json_response(b"200 OK", b'{"status":"ok"}'),
        )


@dataclass(frozen=True)
class Timing:
    """Delays of one port: zero for the fast port."""

    ttfb_s: float
    gap_s: float


class MockProtocol(asyncio.Protocol):
    """One client connection: parse requests with httptools, answer from ``Responses``."""

    def __init__(self, responses: Responses, timing: Timing) -> None:
        self._responses = responses
        self._timing = timing
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._close()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self._body)
        path, method = self._url.split(b"?", 1)[0], self._parser.get_method()
        self._url, self._body = b"", []
        if path == b"/healthz":
            self._write(self._responses.health)
        elif method != b"POST" or path != b"/v1/messages":
            self._write(self._responses.not_found)
        elif payloads.is_stream_request(body):
            self._after(self._timing.ttfb_s, self._start_stream)
        else:
            self._after(self._timing.ttfb_s, self._send_message)

    def _send_message(self) -> None:
        self._write(self._responses.message)

    def _start_stream(self) -> None:
        if self._timing.gap_s == 0:
            for frame in self._responses.sse_frames:  # one write per event, like the API
                self._write(frame)
        else:
            self._send_event(0)

    def _send_event(self, index: int) -> None:
        frames = self._responses.sse_frames
        if self._transport is None or self._transport.is_closing():
            return  # the client hung up: stop the stream
        self._transport.write(frames[index])
        if index + 1 < len(frames):
            self._loop.call_later(self._timing.gap_s, self._send_event, index + 1)

    def _after(self, delay: float, callback: Callable[[], None]) -> None:
        if delay == 0:
            callback()
        else:
            self._loop.call_later(delay, callback)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def serve(host: str, ports: dict[int, Timing]) -> None:
    """Listen on every port until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    responses = Responses.build()
    servers = []
    for port, timing in ports.items():

        def factory(timing: Timing = timing) -> MockProtocol:
            return MockProtocol(responses, timing)

        servers.append(await loop.create_server(factory, host, port, backlog=2048))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--fast-port", type=int, required=True)
    parser.add_argument("--real-port", type=int, required=True)
    parser.add_argument("--ttfb", type=float, default=0.050, help="realistic time to first byte")
    parser.add_argument("--gap", type=float, default=0.002, help="realistic gap between events")
    args = parser.parse_args()
    ports = {args.fast_port: Timing(0.0, 0.0), args.real_port: Timing(args.ttfb, args.gap)}
    uvloop.run(serve(args.host, ports))


if __name__ == "__main__":
    main()
