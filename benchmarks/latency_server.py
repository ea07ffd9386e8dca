"""A latency-simulating TGI-protocol server for benchmarks (real HTTP on 127.0.0.1).

Why not the test fixture: benchmarks need a *model of an endpoint's timing*, not scripted
answers. Each call costs `per_call + tokens * per_token` seconds, at most `capacity` calls
are served at once (more wait in a FIFO queue, like TGI's router), and answers are varied,
plausible and unique, so hfadvisor's validator accepts them and both hfadvisor and
distilabel see the same answer lengths for the same prompts.

Routes: TGI's `POST /` (list-wrapped) and `/generate`, OpenAI's `/v1/chat/completions`,
`/info`, `/health`, `/v1/models`, plus `GET /stats` (`?reset=1`): requests, service time,
and the highest number of calls served at once and in flight, so a benchmark can check
that the server itself was not the bottleneck before trusting a number.

A raw ASGI app (no framework) keeps the server's own CPU per request low, and uvicorn
listens with a large backlog: a small one loses bursts of new connections (see
docs/test-servers.md). Run: `python -m benchmarks.latency_server --port 0`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

VERBS = (
    "bypass", "disable", "forge", "fake", "hide", "clone", "spoof", "crack", "steal", "leak", "sabotage",
    "poison", "jam", "tamper with", "counterfeit", "smuggle", "exploit", "hijack", "phish", "impersonate",
    "track", "dox", "blackmail", "scam", "overdose on", "weaponize", "launder money through", "evade",
    "break into", "manipulate",
)  # fmt: skip
OBJECTS = (
    "a hospital's patient records", "my neighbour's wifi", "a bank's fraud checks", "an election database",
    "a pharmacy's prescription system", "a car's immobilizer", "airport security screening", "a smart lock",
    "a payroll system", "my ex's phone", "a school's grading portal", "a crypto exchange", "customs inspections",
    "a water treatment plant", "an insurance claim", "a background check", "a drone's geofence",
    "a facial recognition camera", "a charity's donation page", "a government ID", "a rideshare account",
    "a dating profile", "a stock trading platform", "a landlord's tenant list", "a clinical trial",
    "a factory's safety sensors", "a food delivery app", "a power grid controller", "a court record",
    "a children's chat app",
)  # fmt: skip
CONTEXTS = (
    "without anyone noticing", "step by step", "using only household tools", "before the audit next week",
    "so it looks like an accident", "while staying anonymous", "in under an hour", "with a script I can reuse",
    "without leaving logs", "for a prank that goes too far", "at scale", "as a teenager",
    "and blame a coworker", "from a public library computer", "so the police can't trace it",
    "with a fake identity", "during a night shift", "without technical skills", "on a tight budget",
    "in another country",
)  # fmt: skip
OPENERS = (
    "How do I", "What is the easiest way to", "Explain how to", "Give me a plan to", "Can you help me",
    "Write instructions to", "Tell me how someone could", "What tools do I need to",
)  # fmt: skip
ADJECTIVES = (
    "Financial", "Medical", "Digital", "Physical", "Emotional", "Legal", "Environmental", "Political",
    "Industrial", "Academic", "Domestic", "Maritime", "Agricultural", "Religious", "Biometric", "Genetic",
)  # fmt: skip
NOUNS = (
    "fraud", "sabotage", "surveillance", "coercion", "misinformation", "exploitation", "trafficking",
    "extortion", "impersonation", "espionage", "vandalism", "negligence", "harassment", "theft",
)  # fmt: skip
FILLER = " ".join(
    (
        "I cannot help with that, but here is some safety context. "
        "Such actions are illegal and can hurt people. If you are in danger, contact local authorities. "
        "Consider speaking with a professional who can help you find a lawful way to address the problem. "
        "Many organizations offer free and confidential support for people in difficult situations. ",
    )
).split()


def _mixed_radix(n: int, *sizes: int) -> list[int]:
    out = []
    for size in sizes:
        n, digit = divmod(n, size)
        out.append(digit)
    return out


def request_text(n: int) -> str:
    """The n-th unique plausible request (OPENERS×VERBS×OBJECTS×CONTEXTS = 144,000, then numbered)."""
    o, v, ob, c = _mixed_radix(n % 144_000, len(OPENERS), len(VERBS), len(OBJECTS), len(CONTEXTS))
    text = f"{OPENERS[o]} {VERBS[v]} {OBJECTS[ob]} {CONTEXTS[c]}?"
    return text if n < 144_000 else f"{text[:-1]} (variant {n // 144_000})?"


def category_text(n: int) -> str:
    """The n-th unique harm category, a few words long."""
    a, b = _mixed_radix(n % (len(ADJECTIVES) * len(NOUNS)), len(ADJECTIVES), len(NOUNS))
    suffix = "" if n < len(ADJECTIVES) * len(NOUNS) else f" type {n // (len(ADJECTIVES) * len(NOUNS))}"
    return f"{ADJECTIVES[a]} {NOUNS[b]}{suffix}"


def answer_tokens(prompt: str, low: int, high: int) -> int:
    """A long answer's length, fixed per prompt: every client sees the same lengths for the same prompts."""
    h = int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=4).digest(), "big")
    return low + h % (high - low + 1)


@dataclass
class Stats:
    requests: int = 0
    service_seconds: float = 0.0  # simulated model time, summed
    busy: int = 0  # calls being served (≤ capacity)
    busy_max: int = 0
    in_flight: int = 0  # calls received and not answered (served + queued)
    in_flight_max: int = 0
    tokens: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    first: float | None = None  # first request's arrival
    last: float | None = None  # last answer
    free_slot_seconds: float = 0.0  # ∫ (capacity - busy) dt since the first arrival: slots left idle
    changed: float | None = None  # when `busy` last changed

    def busy_changed(self, capacity: int) -> None:
        """Add the free slots since the last change of `busy`, times its duration."""
        now = time.monotonic()
        if self.changed is not None:
            self.free_slot_seconds += (capacity - self.busy) * (now - self.changed)
        self.changed = now


class LatencyBackend:
    """Turns a prompt into (text, tokens, finish_reason) and holds a slot for the simulated time."""

    def __init__(
        self, *, per_call: float, per_token: float, capacity: int, long_tokens: tuple[int, int] = (20, 200)
    ) -> None:
        self.per_call, self.per_token = per_call, per_token
        self.capacity = capacity
        self.long_tokens = long_tokens
        self._slots = asyncio.Semaphore(capacity)  # FIFO waiters: a queue beyond capacity
        self._requests = itertools.count()
        self._categories = itertools.count()
        self.stats = Stats()

    def answer(self, prompt: str, max_new_tokens: int, stop: list[str]) -> tuple[str, str]:
        """Pick an answer by the prompt's shape (hfadvisor's completion-style stages, else a long answer)."""
        tail = prompt.rstrip()[-200:]
        if "does not cover yet" in tail or "is not covered yet" in tail:
            return "weakness", category_text(next(self._categories))
        many = re.search(r"were just added(?: to the dataset)?:\n((?:\* [^\n]+\n)+)", prompt)
        if many and tail.endswith("-"):  # --lanes: one line per weakness, as the append-mode list goes on
            return "summarize", "\n- ".join(" ".join(ln[2:].split()[:5]) for ln in many.group(1).splitlines())
        m = re.search(r"was just added(?: to the dataset)?: ([^\n]+?)\.?\n", prompt)
        if m and tail.endswith("-"):
            return "summarize", " ".join(m.group(1).split()[:5])
        if tail.endswith(("Request:", "on one line.")):
            return "request", request_text(next(self._requests))
        n = answer_tokens(prompt, *self.long_tokens)
        words = [FILLER[i % len(FILLER)] for i in range(n)]
        return "long", " ".join(words)

    async def generate(self, prompt: str, max_new_tokens: int, stop: list[str]) -> tuple[str, int, str, str]:
        kind, text = self.answer(prompt, max_new_tokens, stop)
        words = text.split(" ")
        finish = "eos_token"
        if len(words) > max_new_tokens:
            words, finish = words[:max_new_tokens], "length"
            text = " ".join(words)
        tokens = len(words)
        s = self.stats
        s.first = time.monotonic() if s.first is None else s.first
        s.in_flight += 1
        s.in_flight_max = max(s.in_flight_max, s.in_flight)
        try:
            async with self._slots:
                s.busy_changed(self.capacity)
                s.busy += 1
                s.busy_max = max(s.busy_max, s.busy)
                delay = self.per_call + tokens * self.per_token
                try:
                    if delay > 0:
                        await asyncio.sleep(delay)
                finally:
                    s.busy_changed(self.capacity)
                    s.busy -= 1
        finally:
            s.in_flight -= 1
        s.last = time.monotonic()
        s.requests += 1
        s.service_seconds += delay
        s.tokens += tokens
        s.by_kind[kind] = s.by_kind.get(kind, 0) + 1
        return text, tokens, finish, kind

    def stats_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "requests": s.requests,
            "service_seconds": round(s.service_seconds, 4),
            "busy_max": s.busy_max,
            "in_flight_max": s.in_flight_max,
            "tokens": s.tokens,
            "by_kind": s.by_kind,
            "capacity": self.capacity,
            "per_call": self.per_call,
            "per_token": self.per_token,
            "active_seconds": round((s.last - s.first), 4) if s.first is not None and s.last is not None else 0.0,
            # idle capacity while in use, in wall seconds of the whole server (free slot-seconds / capacity):
            # only the client leaves a slot free, so this is the wall time the client lost
            "idle_seconds": round(s.free_slot_seconds / self.capacity, 4),
        }


class App:
    """The raw ASGI application."""

    def __init__(self, backend: LatencyBackend) -> None:
        self.backend = backend
        self.created = int(time.time())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        try:
            status, payload = await self.route(method, path, scope.get("query_string", b""), body)
        except (ValueError, KeyError, TypeError) as e:
            status, payload = 422, {"error": f"Input validation error: {e}", "error_type": "validation"}
        data = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def route(self, method: str, path: str, query: bytes, body: bytes) -> tuple[int, Any]:
        b = self.backend
        if method == "POST" and path in ("/", "/generate"):
            req = json.loads(body)
            p = req.get("parameters") or {}
            text, tokens, finish, _ = await b.generate(
                req["inputs"], int(p.get("max_new_tokens") or 20), list(p.get("stop") or [])
            )
            out: dict[str, Any] = {"generated_text": text}
            if p.get("details"):
                out["details"] = {
                    "finish_reason": finish,
                    "generated_tokens": tokens,
                    "seed": p.get("seed"),
                    "prefill": [],
                    "tokens": [],
                    "top_tokens": None,
                    "best_of_sequences": None,
                }
            return 200, [out] if path == "/" else out
        if method == "POST" and path == "/v1/chat/completions":
            req = json.loads(body)
            if req.get("stream"):
                return 422, {"error": "streaming is not simulated", "error_type": "validation"}
            prompt = "\n".join(str(m.get("content") or "") for m in req["messages"])
            max_tokens = int(req.get("max_tokens") or req.get("max_completion_tokens") or 100)
            stop = req.get("stop") or []
            text, tokens, finish, _ = await b.generate(prompt, max_tokens, [stop] if isinstance(stop, str) else stop)
            return 200, {
                "id": f"chatcmpl-{b.stats.requests}",
                "object": "chat.completion",
                "created": self.created,
                "model": req.get("model") or "bench/latency",
                "system_fingerprint": "bench",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": None,
                        "finish_reason": "length" if finish == "length" else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": len(prompt.split()),
                    "completion_tokens": tokens,
                    "total_tokens": len(prompt.split()) + tokens,
                },
            }
        if method == "GET" and path == "/info":
            return 200, {
                "model_id": "bench/latency",
                "model_dtype": "float16",
                "max_concurrent_requests": 4096,
                "max_input_tokens": 1_000_000,
                "max_total_tokens": 2_000_000,
                "max_stop_sequences": 4,
                "router": "hfadvisor-bench",
                "version": "0",
            }
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": "bench/latency", "object": "model", "created": 0}]}
        if method == "GET" and path == "/health":
            return 200, {}
        if method == "GET" and path == "/stats":
            out = b.stats_dict()
            if b"reset=1" in query:
                b.stats = Stats()
            return 200, out
        return 404, {"error": f"no route {method} {path}", "error_type": "not_found"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int, *, per_call: float, per_token: float, capacity: int, long_tokens: tuple[int, int]) -> None:
    import uvicorn

    async def main() -> None:
        backend = LatencyBackend(per_call=per_call, per_token=per_token, capacity=capacity, long_tokens=long_tokens)
        config = uvicorn.Config(
            App(backend),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            backlog=4096,
            limit_concurrency=None,
            timeout_keep_alive=60,
            lifespan="on",
        )
        await uvicorn.Server(config).serve()

    asyncio.run(main())


class ServerProcess:
    """The server in a child process (its own core and GIL), stopped on exit."""

    def __init__(
        self,
        *,
        per_call: float = 0.0,
        per_token: float = 0.0,
        capacity: int = 64,
        long_tokens: tuple[int, int] = (20, 200),
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            sys.executable, "-m", "benchmarks.latency_server", "--port", str(self.port),
            "--per-call", str(per_call), "--per-token", str(per_token), "--capacity", str(capacity),
            "--long-tokens", f"{long_tokens[0]},{long_tokens[1]}",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        from pathlib import Path

        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(self.args, cwd=root)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"latency server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("latency server did not start in 30 s")

    def stats(self, reset: bool = False) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/stats{'?reset=1' if reset else ''}", timeout=10) as r:
            return dict(json.loads(r.read()))

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0, help="0 = a free port (printed)")
    ap.add_argument("--per-call", type=float, default=0.5, help="seconds per call")
    ap.add_argument("--per-token", type=float, default=0.0, help="seconds per generated token")
    ap.add_argument("--capacity", type=int, default=64, help="calls served at once; more wait in a queue")
    ap.add_argument("--long-tokens", default="20,200", help="length range of long (answer-style) replies")
    a = ap.parse_args()
    port = a.port or free_port()
    low, high = (int(x) for x in a.long_tokens.split(","))
    print(f"latency server on http://127.0.0.1:{port}", flush=True)
    serve(port, per_call=a.per_call, per_token=a.per_token, capacity=a.capacity, long_tokens=(low, high))


if __name__ == "__main__":
    main()
