"""What goes over the wire, byte for byte: a recording TCP relay and a raw HTTP/1.1 client.

``WireTap(target_port)`` listens on a loopback port, relays every connection to the target (a fake
upstream) unchanged in both directions, and keeps every byte each connection sent towards the
target. Put it between the proxy and a fake upstream and a test can assert exactly which request
lines, headers and bodies reached the upstream (``received()``, ``request_lines()``), whatever
the proxy's HTTP client wrote, smuggled requests included.

``raw_request(port, data)`` writes bytes a well-behaved client (or ``curl``) would refuse to send,
such as a path with ``%0D%0A`` or raw non-UTF-8 bytes, and returns what the server answered.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from contextlib import suppress

_REQUEST_LINE = re.compile(rb"(?:^|\r\n\r\n|\n\n)([A-Z]+ [^\r\n]* HTTP/1\.[01])\r?\n")


class WireTap:
    """A threaded loopback relay that records the client-to-server bytes of each connection."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._connections: list[bytearray] = []
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._closing = False

    def __enter__(self) -> WireTap:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing = True
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        for sock in self._sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()

    def received(self) -> bytes:
        """Every byte sent towards the upstream so far, connection after connection."""
        with self._lock:
            return b"".join(bytes(c) for c in self._connections)

    def request_lines(self) -> list[bytes]:
        """The request lines found in what was sent (a rough parse, enough to spot smuggling)."""
        return [m.group(1) for m in _REQUEST_LINE.finditer(self.received())]

    def clear(self) -> None:
        with self._lock:
            for recorded in self._connections:
                recorded.clear()

    def _spawn(self, target: Callable[..., object], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            recorded = bytearray()
            with self._lock:
                self._connections.append(recorded)
                self._sockets += [client, upstream]
            self._spawn(self._pipe, client, upstream, recorded)
            self._spawn(self._pipe, upstream, client, None)

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        try:
            while data := source.recv(65536):
                if record is not None:
                    with self._lock:
                        record.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` as is on a new connection; return all the server answered until it closed
    or went quiet for ``timeout`` seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if _complete(b"".join(chunks)):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def _complete(answer: bytes) -> bool:
    """True once ``answer`` holds one whole response framed by content-length."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return match is not None and len(body) >= int(match.group(1))


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer (0 when there was none)."""
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return int(match.group(1)) if match else 0


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]
