"""A fake OpenAI API speaking the real wire format, served on a loopback port by uvicorn.

Faithful where the proxy must be exact (OpenAI's API reference, openai-python's types):

- Chat Completions and legacy completions stream data-only SSE (``data: {json}\\n\\n``) ending in
  ``data: [DONE]``. With ``stream_options.include_usage`` every chunk carries ``"usage":null``
  and one last chunk with ``"choices":[]`` and the usage precedes ``[DONE]``; without it,
  neither. Chunks carry an ``obfuscation`` member unless ``include_obfuscation`` is false.
- The Responses API streams named events (``event: response.created`` ...) with a
  ``sequence_number``; usage arrives on ``response.completed`` (or ``response.incomplete`` /
  ``response.failed``).
- Embeddings answer ``{"object":"list",...,"usage":{"prompt_tokens":..,"total_tokens":..}}``,
  base64 vectors when asked (the SDK's default).
- Errors are ``{"error":{"message","type","param","code"}}`` with an ``x-request-id`` header.
- JSON is gzipped when the client accepts gzip; SSE is compressed only when a test asks.

Everything a test sees is deterministic (ids derive from the request's messages, ``created`` is
fixed), so two answers to the same question can be compared byte for byte.

Per-request behaviour, chosen by headers the proxy forwards untouched: ``x-fake-scenario``
(text | tool_calls | error_400 | error_401 | error_429 | error_500 | error_503 | cut | slow |
incomplete | failed | cut_before_usage: the connection drops just before the usage chunk |
no_usage_chunk: ``include_usage`` ignored and no usage in a JSON answer, as some compatible
servers do), ``x-fake-usage``
(a JSON usage object), ``x-fake-compress`` (gzip | br | zstd: compress the SSE answer).
``requests`` keeps every request as received.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import brotli
import zstandard

from tests.fakes.anthropic_upstream import Received, receive_request

CREATED = 1767225600
CHAT_USAGE: dict[str, Any] = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 192,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
RESPONSES_USAGE: dict[str, Any] = {
    "input_tokens": 5000,
    "input_tokens_details": {"cached_tokens": 4096, "cache_write_tokens": 0},
    "output_tokens": 700,
    "output_tokens_details": {"reasoning_tokens": 512},
    "total_tokens": 5700,
}
TEXT = "Hello! How can I help you today?"
TOOL_ARGUMENTS = '{"location":"Paris, France"}'
ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Missing required parameter: 'messages'."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-test."),
    404: ("invalid_request_error", "unknown_url", "Unknown request URL. Please check the path."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for gpt-5 on requests per min."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def error_payload(status: int) -> bytes:
    kind, code, message = ERRORS[status]
    error = {"message": message, "type": kind, "param": None, "code": code}
    return json.dumps({"error": error}, indent=2).encode() + b"\n"


@dataclass
class FakeOpenAI:
    """The ASGI app. ``pause_s`` is the gap between SSE events in the ``slow`` scenario."""

    requests: list[Received] = field(default_factory=list)
    pause_s: float = 0.3

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        received = await receive_request(scope, receive, send)
        if received is not None:
            self.requests.append(received)
            await self._answer(received, send)

    async def _answer(self, req: Received, send: Any) -> None:
        scenario = req.header("x-fake-scenario") or "text"
        if scenario.startswith("error_"):
            await _error(send, int(scenario[6:]))
            return
        if req.method == "GET" and req.path == "/v1/models":
            models = [{"id": "gpt-5", "object": "model", "created": CREATED, "owned_by": "system"}]
            await _json(send, {"object": "list", "data": models}, req)
            return
        handler = {
            "/v1/chat/completions": self._chat,
            "/v1/completions": self._completion,
            "/v1/responses": self._responses,
            "/v1/embeddings": self._embeddings,
        }.get(req.path)
        try:
            request = json.loads(req.body)
        except ValueError:
            request = None
        if handler is None or req.method != "POST" or not isinstance(request, dict):
            await _error(send, 400 if handler else 404)
            return
        await handler(req, request, scenario, send)

    async def _chat(self, req: Received, request: dict[str, Any], scenario: str, send: Any) -> None:
        usage = _usage(req, CHAT_USAGE)
        ident = "chatcmpl-" + _digest(request.get("messages"))
        model = request.get("model", "gpt-5")
        if request.get("stream"):
            chunks = _chat_chunks(ident, model, scenario)
            await self._sse_chat(req, request, send, chunks, usage, scenario)
            return
        message: dict[str, Any] = {"role": "assistant", "content": TEXT, "refusal": None}
        finish = "stop"
        if scenario == "tool_calls":
            message = {"role": "assistant", "content": None, "tool_calls": [_tool_call()]}
            finish = "tool_calls"
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        answer = {**_head(ident, "chat.completion", model), "choices": [choice], "usage": usage}
        if scenario == "no_usage_chunk":  # a compatible server that reports no usage at all
            del answer["usage"]
        await _json(send, answer, req)

    async def _completion(
        self, req: Received, request: dict[str, Any], scenario: str, send: Any
    ) -> None:
        usage = _usage(req, {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12})
        ident = "cmpl-" + _digest(request.get("prompt"))
        model = request.get("model", "gpt-3.5-turbo-instruct")
        head = _head(ident, "text_completion", model)
        if request.get("stream"):
            chunks = [
                {**head, "choices": [_text_choice(TEXT[i : i + 8], None)]}
                for i in range(0, len(TEXT), 8)
            ]
            chunks.append({**head, "choices": [_text_choice("", "stop")]})
            await self._sse_chat(req, request, send, chunks, usage, scenario)
            return
        answer = {**head, "choices": [_text_choice(TEXT, "stop")], "usage": usage}
        await _json(send, answer, req)

    async def _sse_chat(
        self,
        req: Received,
        request: dict[str, Any],
        send: Any,
        chunks: list[dict[str, Any]],
        usage: dict[str, Any],
        scenario: str,
    ) -> None:
        """Chat/completion chunks as OpenAI streams them, shaped by ``stream_options``."""
        options = request.get("stream_options") or {}
        with_usage = options.get("include_usage") is True and scenario != "no_usage_chunk"
        obfuscate = options.get("include_obfuscation", True) is not False
        if with_usage:
            chunks = [{**chunk, "usage": None} for chunk in chunks]
            chunks.append({**chunks[-1], "choices": [], "usage": usage})
        if obfuscate:
            chunks = [{**chunk, "obfuscation": "x" * (i % 5 + 1)} for i, chunk in enumerate(chunks)]
        events = [f"data: {dumps(chunk)}\n\n".encode() for chunk in chunks]
        events.append(b"data: [DONE]\n\n")
        await self._sse(req, send, events, scenario)

    async def _responses(
        self, req: Received, request: dict[str, Any], scenario: str, send: Any
    ) -> None:
        usage = _usage(req, RESPONSES_USAGE)
        response = _response(request, scenario, usage)
        if request.get("stream"):
            await self._sse(req, send, _response_events(response, scenario), scenario)
        else:
            await _json(send, response, req)

    async def _embeddings(
        self, req: Received, request: dict[str, Any], scenario: str, send: Any
    ) -> None:
        inputs = request.get("input")
        texts = inputs if isinstance(inputs, list) else [inputs]
        as_base64 = request.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(text, as_base64)}
            for i, text in enumerate(texts)
        ]
        usage = _usage(req, {"prompt_tokens": 4 * len(texts), "total_tokens": 4 * len(texts)})
        model = request.get("model", "text-embedding-3-small")
        await _json(send, {"object": "list", "data": data, "model": model, "usage": usage}, req)

    async def _sse(self, req: Received, send: Any, events: list[bytes], scenario: str) -> None:
        coding = req.header("x-fake-compress")
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-request-id", b"req_" + hashlib.sha256(events[0]).hexdigest()[:24].encode()),
            (b"openai-processing-ms", b"321"),
        ]
        compressor = _Compressor(coding) if coding else None
        if coding:
            headers.append((b"content-encoding", coding.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index, event in enumerate(events):
            if scenario == "cut" and index == len(events) // 2:
                raise ConnectionAbortedError("fake upstream cuts the stream")
            if scenario == "cut_before_usage" and index == len(events) - 2:
                raise ConnectionAbortedError("fake upstream cuts the stream before its usage")
            if scenario == "slow" and index:
                await asyncio.sleep(self.pause_s)
            body = compressor.send(event) if compressor else event
            await send({"type": "http.response.body", "body": body, "more_body": True})
        tail = compressor.end() if compressor else b""
        await send({"type": "http.response.body", "body": tail, "more_body": False})


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:24]


def _usage(req: Received, default: dict[str, Any]) -> dict[str, Any]:
    given = req.header("x-fake-usage")
    return json.loads(given) if given else dict(default)


def _head(ident: str, kind: str, model: str) -> dict[str, Any]:
    head = {"id": ident, "object": kind, "created": CREATED, "model": model}
    if kind != "text_completion":
        head.update(service_tier="default", system_fingerprint=None)
    return head


def _text_choice(text: str, finish: str | None) -> dict[str, Any]:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}


def _tool_call() -> dict[str, Any]:
    function = {"name": "get_weather", "arguments": TOOL_ARGUMENTS}
    return {"id": "call_abc123", "type": "function", "function": function}


def _chat_chunks(ident: str, model: str, scenario: str) -> list[dict[str, Any]]:
    head = _head(ident, "chat.completion.chunk", model)

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice]}

    if scenario == "tool_calls":
        call = {**_tool_call(), "index": 0}
        call["function"] = {"name": "get_weather", "arguments": ""}
        chunks = [chunk({"role": "assistant", "content": None, "tool_calls": [call]})]
        for i in range(0, len(TOOL_ARGUMENTS), 10):
            piece = {"index": 0, "function": {"arguments": TOOL_ARGUMENTS[i : i + 10]}}
            chunks.append(chunk({"tool_calls": [piece]}))
        return [*chunks, chunk({}, "tool_calls")]
    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [chunk({"content": TEXT[i : i + 6]}) for i in range(0, len(TEXT), 6)]
    return [*chunks, chunk({}, "stop")]


def _response(request: dict[str, Any], scenario: str, usage: dict[str, Any]) -> dict[str, Any]:
    status = {"incomplete": "incomplete", "failed": "failed"}.get(scenario, "completed")
    text = {"type": "output_text", "text": TEXT, "annotations": [], "logprobs": []}
    message = {
        "id": "msg_" + _digest(request.get("input")),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [text],
    }
    error = None
    if scenario == "failed":
        error = {"code": "server_error", "message": "The model failed to generate a response."}
    return {
        "id": "resp_" + _digest(request.get("input")),
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": request.get("instructions"),
        "model": request.get("model", "gpt-5"),
        "output": [message],
        "parallel_tool_calls": True,
        "service_tier": "default",
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


def _response_events(response: dict[str, Any], scenario: str) -> list[bytes]:
    status = response["status"]
    pending = {**response, "status": "in_progress", "output": [], "usage": None, "error": None}
    pending["incomplete_details"] = None
    message = response["output"][0]
    part = message["content"][0]
    empty_part = {**part, "text": ""}
    item = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    steps: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": pending}),
        ("response.in_progress", {"response": pending}),
        ("response.output_item.added", {"output_index": 0, "item": {**message, "content": []}}),
        ("response.content_part.added", {**item, "part": empty_part}),
    ]
    steps += [
        ("response.output_text.delta", {**item, "delta": TEXT[i : i + 6], "logprobs": []})
        for i in range(0, len(TEXT), 6)
    ]
    steps += [
        ("response.output_text.done", {**item, "text": TEXT, "logprobs": []}),
        ("response.content_part.done", {**item, "part": part}),
        ("response.output_item.done", {"output_index": 0, "item": message}),
        (f"response.{status}", {"response": response}),
    ]
    return [
        f"event: {name}\ndata: {dumps({'type': name, 'sequence_number': n, **data})}\n\n".encode()
        for n, (name, data) in enumerate(steps)
    ]


def _vector(text: Any, as_base64: bool) -> Any:
    seed = hashlib.sha256(str(text).encode()).digest()
    floats = [(byte - 128) / 128 for byte in seed[:8]]
    if as_base64:
        return base64.b64encode(struct.pack(f"<{len(floats)}f", *floats)).decode()
    return floats


class _Compressor:
    """Compresses an SSE answer event by event, flushing each, as a compressing server does."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        if coding == "gzip":
            self._z = zlib.compressobj(wbits=zlib.MAX_WBITS | 16)
        elif coding == "br":
            self._br = brotli.Compressor()
        else:
            self._zstd = zstandard.ZstdCompressor().compressobj()

    def send(self, data: bytes) -> bytes:
        if self._coding == "gzip":
            return self._z.compress(data) + self._z.flush(zlib.Z_SYNC_FLUSH)
        if self._coding == "br":
            return bytes(self._br.process(data) + self._br.flush())
        return self._zstd.compress(data) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def end(self) -> bytes:
        if self._coding == "gzip":
            return self._z.flush()
        if self._coding == "br":
            return bytes(self._br.finish())
        return self._zstd.flush()


async def _json(send: Any, payload: dict[str, Any], req: Received, status: int = 200) -> None:
    body = json.dumps(payload, indent=2).encode()  # OpenAI pretty-prints its JSON answers
    headers = [(b"content-type", b"application/json"), (b"x-request-id", b"req_json")]
    if "gzip" in (req.header("accept-encoding") or ""):
        body = gzip.compress(body)
        headers.append((b"content-encoding", b"gzip"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Any, status: int) -> None:
    body = error_payload(status)
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"x-request-id", b"req_err"),
        (b"x-should-retry", b"false"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    """``python -m tests.fakes.openai_upstream --port 9998``: try tokenmeter's OpenAI side with no
    API key (point TOKENMETER_OPENAI_UPSTREAM at it)."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=9998)
    args = parser.parse_args()
    uvicorn.run(FakeOpenAI(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
