"""pytest plugin: real TGI-protocol HTTP servers for tests, scripted or over real models.

Why real HTTP: the loop reaches every model through `huggingface_hub.AsyncInferenceClient`, so
tests exercise the unmodified client against `hfadvisor.serve.app` on a 127.0.0.1 port.

* `scripted_tgi` (function scope): answers programmed per test through `ScriptedBackend`, HTTP
  faults injected one per incoming POST (`server.faults.append(Fault(status=429, retry_after=1))`),
  and every request logged (`server.requests`).
* `tiny_tgi` (session scope): the tiny random-weight Llama in-process (gibberish, fast).
* `embedded_tgi` (session scope): URL of a real `python -m hfadvisor.serve` child over SmolLM2.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import json
import os
import re
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

from hfadvisor.serve.app import create_app
from hfadvisor.serve.backend import Backend, Generation, GenerationRequest

if "127.0.0.1" not in os.environ.get("NO_PROXY", ""):  # local servers must never go through a proxy
    os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))

_ROUTE: contextvars.ContextVar[str] = contextvars.ContextVar("tgi_route", default="?")
_ERROR_TYPES = {422: "validation", 424: "generation", 429: "overloaded", 500: "generation"}

# ---------------------------------------------------------------------------------------------
# A programmable backend
# ---------------------------------------------------------------------------------------------


@dataclass
class ScriptedCall:
    route: str  # the HTTP path that led to this backend call, e.g. "/" or "/v1/chat/completions"
    request: GenerationRequest


class ScriptedBackend:
    """A `Backend` whose answers come from `respond(request)` (a str, or a full `Generation`).

    The request carries the grammar the client asked for (`request.json_schema`, `request.regex`),
    unless the server was started with `grammar=False` (422) or `grammar="ignore"` (dropped).

    Stop strings and max_new_tokens are applied like a real model would (whitespace-separated
    words count as tokens); `respond` may raise to produce a 500 (or a
    `GenerationRequestError` for a 422). `delay` seconds are awaited before each answer.
    """

    model_id = "hfadvisor/scripted"
    max_input_tokens = 4096
    max_total_tokens = 8192
    max_batch_size = 1
    chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )

    def __init__(self, respond: Callable[[GenerationRequest], str | Generation] | None = None) -> None:
        self._counter = itertools.count(1)
        self.respond: Callable[[GenerationRequest], str | Generation] = respond or self.default_respond
        self.calls: list[ScriptedCall] = []
        self.delay = 0.0
        self.style: Any = None  # the InstructStyle of `instruct_style()` backends

    @classmethod
    def instruct_style(
        cls, core: Callable[[GenerationRequest, int], str] | None = None, styles: tuple[str, ...] | None = None
    ) -> ScriptedBackend:
        """A backend answering like real instruct models (preambles, markdown, numbered candidates,
        fences, sign-offs) around one distinct request per call, and clean JSON fitting the schema
        when the request carried one. `backend.style.meant` lists every request it meant to send.
        """
        from tests.servers.instruct_style import STYLES, InstructStyle

        backend = cls()
        backend.style = InstructStyle(core, styles or STYLES)
        backend.respond = backend.style
        return backend

    def default_respond(self, request: GenerationRequest) -> str:
        """One distinct line per call: good enough for loops that dedupe their outputs."""
        return f"scripted reply {next(self._counter)}"

    @property
    def requests(self) -> list[GenerationRequest]:
        return [call.request for call in self.calls]

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str:
        turns = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
        return f"{turns}<|assistant|>\n"

    async def generate(self, request: GenerationRequest) -> Generation:
        self.calls.append(ScriptedCall(_ROUTE.get(), request))
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self.respond(request)
        return answer if isinstance(answer, Generation) else _as_generation(answer, request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str | Generation]:
        gen = await self.generate(request)
        for piece in re.findall(r"\s*\S+|\s+", gen.text):
            yield piece
        yield gen


def _as_generation(text: str, request: GenerationRequest) -> Generation:
    reason = "eos_token"
    hits = [i for i in (text.find(s) for s in request.stop if s) if i >= 0]
    if hits:
        text, reason = text[: min(hits)], "stop_sequence"
    words = re.findall(r"\s*\S+|\s+", text)
    if len(words) > request.max_new_tokens:
        text, reason = "".join(words[: request.max_new_tokens]), "length"
    tokens = min(len(words), request.max_new_tokens) + (reason != "length")
    return Generation(
        text=text, generated_tokens=tokens, prompt_tokens=len(request.prompt.split()), finish_reason=reason
    )


# ---------------------------------------------------------------------------------------------
# HTTP fault injection and request log
# ---------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """What to do to the next matching request instead of (or before) answering it normally.

    status: answer this status with `body` or a TGI-shaped error body (error_type from the status);
    retry_after: add a Retry-After header; delay: sleep first (alone: then answer normally);
    body alone: answer 200 with these raw bytes (truncated or invalid JSON, non-UTF-8 bytes, a huge
    text); drop: close the connection after the status line (a truncated response); reset: abort
    the connection with a TCP RST before any answer (a connection reset); a `delay` longer than the
    client's timeout is a timeout.
    method: which requests consume the fault ("POST" by default, so /info and /health pass; "*" any).
    """

    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    body: bytes | None = None
    drop: bool = False
    error_type: str | None = None
    method: str = "POST"
    reset: bool = False


@dataclass
class LoggedRequest:
    method: str
    path: str
    json: Any  # the parsed body, or None when empty / not JSON
    time: float  # time.monotonic() at arrival
    fault: Fault | None = None
    headers: dict[str, str] = field(default_factory=dict)


class FaultInjector:
    """ASGI middleware: logs every request, then applies the next queued `Fault` if it matches."""

    def __init__(self, app: Any, faults: list[Fault], requests: list[LoggedRequest]) -> None:
        self.app, self.faults, self.requests = app, faults, requests

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body") or message["type"] != "http.request":
                break
        raw = b"".join(chunks)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        method = scope["method"]
        fault = next((f for f in self.faults if f.method in ("*", method)), None)
        if fault is not None:
            self.faults.remove(fault)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        self.requests.append(LoggedRequest(method, scope["path"], parsed, time.monotonic(), fault, headers))
        _ROUTE.set(scope["path"])
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.reset:
                _reset(send)
                return
            if fault.drop:
                headers = [(b"content-type", b"application/json"), (b"content-length", b"1000")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                return  # uvicorn closes the connection: the response is incomplete
            if fault.status is not None or fault.body is not None:
                await _send_fault(fault, send)
                return
        await self.app(scope, replay, send)


def _reset(send: Any) -> None:
    """Abort the request's TCP connection with an RST (SO_LINGER 0), as a crashed proxy would."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionResetError("injected connection reset")  # not uvicorn: let the server drop it
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    cycle.disconnected = True
    transport.abort()


async def _send_fault(fault: Fault, send: Any) -> None:
    status = fault.status or 200
    body = fault.body
    if body is None:
        payload: dict[str, Any] = {"error": f"injected fault: HTTP {status}"}
        error_type = fault.error_type or _ERROR_TYPES.get(status)
        if error_type:
            payload["error_type"] = error_type
        body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if fault.retry_after is not None:
        headers.append((b"retry-after", f"{fault.retry_after:g}".encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------------------------
# Running a server in a thread
# ---------------------------------------------------------------------------------------------


@dataclass
class TGIServer:
    url: str
    backend: Backend
    faults: list[Fault] = field(default_factory=list)
    requests: list[LoggedRequest] = field(default_factory=list)


@contextlib.contextmanager
def running_tgi(backend: Backend, **app_kwargs: Any) -> Iterator[TGIServer]:
    """Serve `create_app(backend, **app_kwargs)` (behind the fault injector) on a free local port.

    Server options (see `hfadvisor.serve.app.create_app`): `flavor="hfadvisor"|"tgi"|"vllm"|"llamacpp"`
    (real TGI's exact /info and grammar shapes; vLLM's 404 for an unknown model and no /info; llama.cpp
    ignoring the model name), `grammar=True|False|"ignore"`, `model_name=` (the served model id),
    `max_concurrent_requests=`, `max_stop_sequences=`.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server_info = TGIServer(url=f"http://127.0.0.1:{sock.getsockname()[1]}", backend=backend)
    app = FaultInjector(create_app(backend, **app_kwargs), server_info.faults, server_info.requests)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2, backlog=1024)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test TGI server did not start")
        time.sleep(0.01)
    try:
        yield server_info
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def scripted_tgi() -> Iterator[TGIServer]:
    """A fresh scripted TGI server per test: `.url`, `.backend` (ScriptedBackend), `.faults`, `.requests`."""
    with running_tgi(ScriptedBackend()) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_tgi() -> Iterator[TGIServer]:
    """The tiny random-weight Llama behind TGI's protocol, in-process (starts in a few seconds)."""
    from hfadvisor.serve.embedded import tiny_random_backend

    backend = tiny_random_backend()
    with running_tgi(backend) as server:
        yield server
    backend.close()


@pytest.fixture(scope="session")
def embedded_tgi() -> Iterator[str]:
    """URL of a real `python -m hfadvisor.serve` child over SmolLM2 (about a minute the first time)."""
    from hfadvisor.serve.process import embedded_endpoint

    with embedded_endpoint() as url:
        yield url
