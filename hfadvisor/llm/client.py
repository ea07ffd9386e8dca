"""One client for every text-generation endpoint: TGI's native API or OpenAI-style chat.

Built on `huggingface_hub.AsyncInferenceClient`, which does not retry: this layer adds
bounded concurrency that adapts to overload answers (`limit.py`), balancing over several
endpoint URLs (least in-flight first, dead endpoints benched for a while), retries with
exponential backoff and jitter that honour `Retry-After` (tenacity), a give-up limit, and the
run's ledger, and structured answers: a call may carry its stage's JSON schema (TGI's
`grammar`, chat `response_format`); whether an endpoint honours it is learnt from the first
such call per endpoint and stage and remembered, and a refused call is re-sent as text.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2
from huggingface_hub import AsyncInferenceClient, ChatCompletionOutput
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError, TextGenerationError
from huggingface_hub.utils import hf_raise_for_status
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, stop_after_delay

from hfadvisor.config import COMPLETIONS_TEXT_ONLY, RetryPolicy, Sampling
from hfadvisor.errors import ConfigError, EndpointError, scrub
from hfadvisor.ledger import Ledger
from hfadvisor.llm.limit import AdaptiveLimit
from hfadvisor.llm.pools import Pools
from hfadvisor.llm.retry import (
    RETRYABLE_STATUS,
    TransientError,
    WaitRetryAfter,
    display_url,
    error_detail,
    http_status,
    parse_retry_after,
)
from hfadvisor.llm.structured import looks_json, response_format, starts_json, tgi_grammar
from hfadvisor.llm.template import ChatTemplate, Message, as_messages

if TYPE_CHECKING:
    from hfadvisor.llm.connect import EndpointSpec

SCHEMA_REFUSAL_STATUS = {400, 422}  # a call carrying a schema answered this: re-sent without it
STRUCTURED_MODES = ("auto", "on", "off")
OVERLOAD_KINDS = {"http_429", "http_503", "generation"}  # answers that mean "ask me less at once"
BENCH_SECONDS = 5.0  # how long an endpoint that refused connections is avoided


@dataclass
class Completion:
    text: str
    completion_tokens: int
    prompt_tokens: int
    finish_reason: str | None
    endpoint: str
    latency: float
    attempts: int
    structured: bool = False  # the answer was constrained by the schema the caller passed (JSON text)


@dataclass(frozen=True)
class _Call:
    """One `complete` call's request: the same for every attempt (and every endpoint it is tried on)."""

    prompt: str | list[Message]
    sampling: Sampling
    stops: list[str]
    stage: str
    seed: int | None
    schema: dict[str, Any] | None  # the stage's schema; whether it is sent is decided per endpoint


class _Endpoint:
    def __init__(self, url: str, client: AsyncInferenceClient) -> None:
        self.url = url
        self.name = display_url(url)
        self.client = client
        self.in_flight = 0
        self.benched_until = 0.0
        self.support: dict[str, bool] = {}  # stage → does this endpoint honour the stage's schema
        self.probes: dict[str, asyncio.Lock] = {}  # one call per stage finds out; the others wait for it
        self.pools: Pools | None = None  # direct posts (see LLMClient._post)


class LLMClient:
    """Sends prompts to one or more endpoints; one instance per run (it owns the ledger)."""

    def __init__(
        self,
        spec: EndpointSpec,
        *,
        ledger: Ledger | None = None,
        chat_template: ChatTemplate | None = None,
        response_format: str = "openai",
    ) -> None:
        """`chat_template` is the loaded template (`connect` loads `spec.chat_template`)."""
        if not spec.urls:
            raise ConfigError("no endpoint given: pass --endpoint URL (or omit it to use the embedded model)")
        self.api = spec.api
        self.model = spec.model
        self.retry = spec.retry or RetryPolicy()
        self.ledger = ledger or Ledger()
        self.chat_template = chat_template
        self.timeout = timeout = spec.timeout
        if spec.api == "completions" and spec.structured == "on":
            raise ConfigError(COMPLETIONS_TEXT_ONLY)
        if spec.structured not in STRUCTURED_MODES:
            raise ConfigError(f"structured must be one of {', '.join(STRUCTURED_MODES)}, not {spec.structured!r}")
        self.structured = spec.structured
        # chat dialect for schemas: "tgi" = {"type": "json", "value": schema} (TGI's Messages API),
        # "openai" = {"type": "json_schema", "json_schema": {...}} (vLLM, llama.cpp, OpenAI)
        self.response_format = response_format
        self._token = token = spec.token  # only to scrub it from error messages (servers and proxies may echo it)
        self._limit = AdaptiveLimit(spec.concurrency)
        self._endpoints = [
            _Endpoint(url, AsyncInferenceClient(base_url=self._base(url), token=token, timeout=timeout))
            for url in spec.urls
        ]
        self._rr = 0

    def _base(self, url: str) -> str:
        url = url.rstrip("/")
        if self.api in ("chat", "completions") and url.endswith("/v1"):
            url = url[: -len("/v1")]
        return url

    @property
    def endpoint_names(self) -> list[str]:
        return [e.name for e in self._endpoints]

    @property
    def endpoint_urls(self) -> list[str]:
        """The URLs as given (may carry credentials: never log them; use `endpoint_names`)."""
        return [e.url for e in self._endpoints]

    @property
    def token(self) -> str | None:
        return self._token

    def structured_support(self) -> dict[str, dict[str, bool]]:
        """endpoint name → stage → whether it honoured the stage's JSON schema (stages tried so far)."""
        return {e.name: dict(e.support) for e in self._endpoints}

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for ep in self._endpoints:
            await ep.client.close()
            if ep.pools is not None:
                await ep.pools.aclose()

    # ------------------------------------------------------------------ calls
    def _pick(self) -> _Endpoint:
        now = time.monotonic()
        healthy = [e for e in self._endpoints if e.benched_until <= now] or sorted(
            self._endpoints, key=lambda e: e.benched_until
        )[:1]
        self._rr += 1
        return min(healthy, key=lambda e: (e.in_flight, (self._endpoints.index(e) + self._rr) % len(self._endpoints)))

    async def complete(
        self,
        prompt: str | list[Message],
        sampling: Sampling,
        *,
        stage: str,
        seed: int | None = None,
        stop: list[str] | None = None,
        ledger: Ledger | None = None,
        schema: dict[str, Any] | None = None,
    ) -> Completion:
        """One generation, retried on transient failures; raises EndpointError when giving up.

        `schema` (the stage's JSON schema) is sent as TGI's `grammar` or the chat API's
        `response_format` unless `structured` is off or the endpoint was found not to honour it;
        `Completion.structured` says whether the answer is schema-constrained JSON.

        `prompt` is one user turn, or a list of chat messages (sent as they are to a chat API,
        rendered with the chat template for TGI's generate API). Everything is counted in the client's ledger and, if given, also in `ledger` (e.g. the
        ledger of the round the call belongs to, when rounds overlap).
        """
        ledgers = [self.ledger] if ledger is None else [self.ledger, ledger]
        schema = None if self.api == "completions" else schema  # text only (`_completions`): nothing to probe
        call = _Call(prompt, sampling, list(dict.fromkeys([*sampling.stop, *(stop or [])])), stage, seed, schema)
        attempts = 0
        started = time.monotonic()
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            wait=WaitRetryAfter(self.retry),
            stop=stop_after_attempt(self.retry.max_attempts) | stop_after_delay(self.retry.give_up_after),
            before_sleep=lambda state: self._before_sleep(state, ledgers),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    return await self._attempt(call, attempts, ledgers)
        except TransientError as e:
            _bump(ledgers, "failures")
            elapsed = time.monotonic() - started
            raise EndpointError(
                f"{stage} call failed after {attempts} attempts in {elapsed:.0f}s ({e}); the run stopped cleanly "
                "and resumes from the last complete round"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _before_sleep(self, state: RetryCallState, ledgers: list[Ledger]) -> None:
        _bump(ledgers, "retries")
        if state.next_action is not None:
            _bump(ledgers, "backoff_total", state.next_action.sleep)

    async def _attempt(self, call: _Call, attempt: int, ledgers: list[Ledger]) -> Completion:
        ep, stage = self._pick(), call.stage
        probe: asyncio.Lock | None = None
        if call.schema is not None and self.structured != "off" and stage not in ep.support:
            # Support is unknown: one call per endpoint and stage finds out, the others wait for it,
            # so a server without grammar support sees exactly one refused call per stage.
            probe = ep.probes.setdefault(stage, asyncio.Lock())
            await probe.acquire()
            if stage in ep.support:
                probe.release()
                probe = None
        try:
            honoured = self.structured != "off" and ep.support.get(stage, True)
            return await self._send(ep, call, attempt, ledgers, call.schema if honoured else None)
        finally:
            if probe is not None:
                probe.release()

    async def _send(
        self, ep: _Endpoint, call: _Call, attempt: int, ledgers: list[Ledger], schema: dict[str, Any] | None
    ) -> Completion:
        """One attempt on `ep`; `schema` is the one to send (None: the text path)."""
        prompt, sampling, stops, stage, seed = call.prompt, call.sampling, call.stops, call.stage, call.seed
        greedy = sampling.temperature == 0.0
        top_p = sampling.top_p if sampling.top_p is not None and sampling.top_p < 1.0 and not greedy else None
        async with self._limit.slot() as epoch:
            ep.in_flight += 1
            t0 = time.monotonic()
            try:
                while True:
                    _bump(ledgers, "attempts")
                    # JSON may hold a newline between tokens: a one-line stop would cut it (the grammar ends it)
                    sent = stops if schema is None else [x for x in stops if x.strip()]
                    try:
                        if self.api == "chat":
                            answer = await self._chat(ep, prompt, sampling, sent, top_p, seed, greedy, schema)
                        elif self.api == "completions":
                            answer = await self._completions(ep, prompt, sampling, sent, top_p, seed, greedy)
                        else:
                            answer = await self._tgi(ep, prompt, sampling, sent, top_p, seed, greedy, schema)
                        break
                    except Exception as e:
                        if schema is None or http_status(e) not in SCHEMA_REFUSAL_STATUS:
                            raise
                        self._refused(ep, stage, e, ledgers)
                        schema = None  # the call that found out is re-sent on the text path: not a failure
            except Exception as e:
                err = self._classify(e, ep, ledgers)
                if isinstance(err, TransientError) and err.kind in OVERLOAD_KINDS and self._limit.overloaded(epoch):
                    _bump(ledgers, "throttled")
                    _gauge(ledgers, self._limit.current)
                raise err from None
            finally:
                ep.in_flight -= 1
        text, ptok, ctok, finish = answer
        structured = schema is not None and self._honoured(ep, stage, text, finish, ledgers)
        latency = time.monotonic() - t0
        self._limit.succeeded()
        _gauge(ledgers, self._limit.current)
        for led in ledgers:
            led.record_success(stage, ep.name, latency, ptok, ctok, structured)
        return Completion(text, ctok, ptok, finish, ep.name, latency, attempt, structured)

    def _refused(self, ep: _Endpoint, stage: str, exc: Exception, ledgers: list[Ledger]) -> None:
        """The endpoint refused a call for its schema: remember it (or stop, with structured on)."""
        if self.structured == "on":
            http = exc if isinstance(exc, HfHubHTTPError) else exc.__cause__
            detail = scrub(error_detail(http), self._token) if isinstance(http, HfHubHTTPError) else ""
            raise EndpointError(
                f"endpoint {ep.name} refused structured output for the {stage} stage (HTTP {http_status(exc)}{detail}): "
                "use --structured auto (text path where refused) or off"
            )
        ep.support[stage] = False
        _bump(ledgers, "structured_refused")

    def _honoured(self, ep: _Endpoint, stage: str, text: str, finish: str | None, ledgers: list[Ledger]) -> bool:
        """A schema-constrained answer is JSON; text means the server ignored the schema.

        An answer cut off by the token limit or a stop sequence counts as unfinished JSON when it
        starts like JSON; one that starts with prose was never constrained.
        """
        if looks_json(text):
            ep.support[stage] = True
            return True
        if finish in ("length", "stop_sequence") and starts_json(text):
            return True
        if self.structured == "on":
            raise EndpointError(
                f"endpoint {ep.name} ignored the JSON schema of the {stage} stage (it answered text): "
                "use --structured auto (text path where not honoured) or off"
            )
        ep.support[stage] = False
        _bump(ledgers, "structured_ignored")
        return False

    async def _tgi(
        self, ep: _Endpoint, prompt: str | list[Message], s: Sampling, stops: list[str], top_p: float | None,
        seed: int | None, greedy: bool, schema: dict[str, Any] | None = None,
    ) -> tuple[str, int | None, int, str | None]:  # fmt: skip
        prompt = self._render(prompt)
        params: dict[str, Any] = {"details": True, "do_sample": not greedy, "max_new_tokens": s.max_new_tokens}
        for key, value in (
            ("temperature", None if greedy else s.temperature),
            ("top_p", top_p),
            ("seed", seed),
            ("stop", stops or None),
            ("grammar", tgi_grammar(schema) if schema is not None else None),
        ):
            if value is not None:
                params[key] = value
        # Posted directly (the body huggingface_hub's text_generation sends): its answer hides the
        # x-prompt-tokens header, the only place TGI reports prompt tokens (prefill details are off
        # by default since TGI 3), and it parses each answer in a worker thread (CPU per call).
        resp = await self._post(ep, self._base(ep.url), {"inputs": prompt, "parameters": params})
        hf_raise_for_status(resp)
        out = resp.json()
        if isinstance(out, list):
            out = out[0]
        text = out.get("generated_text")
        if not isinstance(text, str):
            raise ValueError("answer has no generated_text")
        details = out.get("details") or {}
        ctok = int(details.get("generated_tokens") or 0)
        finish = str(details.get("finish_reason") or "") or None
        header = resp.headers.get("x-prompt-tokens")
        prefill = details.get("prefill")
        ptok = int(header) if header and header.isdigit() else (len(prefill) if prefill else None)
        return _strip_stops(text, stops), ptok, ctok, finish

    def _render(self, prompt: str | list[Message]) -> str:
        """The text a raw-text API (tgi, completions) is sent: the prompt, through the chat template if any."""
        if self.chat_template is not None:
            return self.chat_template.render(prompt)
        if not isinstance(prompt, str):
            raise ConfigError(
                f"a conversation needs a chat template with the {self.api} api: pass --chat-template, or use --api chat"
            )
        return prompt

    async def _completions(
        self, ep: _Endpoint, prompt: str | list[Message], s: Sampling, stops: list[str], top_p: float | None,
        seed: int | None, greedy: bool,
    ) -> tuple[str, int | None, int, str | None]:  # fmt: skip
        """OpenAI's raw-text API (`/v1/completions` of vLLM, llama.cpp, TGI): the prompt goes as written,
        as to TGI's /generate, so the `paper` style's raw prompts reach servers without /generate. No
        schema: the servers' constrained-decoding fields for it differ (guided_json, json_schema)."""
        body = {
            "model": self.model or "tgi",
            "prompt": self._render(prompt),
            "max_tokens": s.max_new_tokens,
            "temperature": 0.0 if greedy else s.temperature,
            "top_p": top_p,
            "seed": seed,
            "stop": stops or None,
            "stream": False,
        }
        resp = await self._post(
            ep, f"{self._base(ep.url)}/v1/completions", {k: v for k, v in body.items() if v is not None}
        )
        hf_raise_for_status(resp)
        out = resp.json()
        choices = out.get("choices") if isinstance(out, dict) else None
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        if not isinstance(first.get("text"), str):
            raise ValueError("answer has no choices[0].text")
        usage = out.get("usage") if isinstance(out.get("usage"), dict) else {}
        ptok = usage.get("prompt_tokens")
        ctok = usage.get("completion_tokens")
        finish = first.get("finish_reason")
        return (
            _strip_stops(first["text"], stops),
            ptok if isinstance(ptok, int) else None,
            ctok if isinstance(ctok, int) else 0,
            finish if isinstance(finish, str) else None,
        )

    async def _chat(
        self, ep: _Endpoint, prompt: str | list[Message], s: Sampling, stops: list[str], top_p: float | None,
        seed: int | None, greedy: bool, schema: dict[str, Any] | None = None,
    ) -> tuple[str, int | None, int, str | None]:  # fmt: skip
        kwargs: dict[str, Any] = {
            "messages": as_messages(prompt),
            "model": self.model or "tgi",
            "max_tokens": s.max_new_tokens,
            "temperature": 0.0 if greedy else s.temperature,
            "top_p": top_p,
            "seed": seed,
            "stop": stops or None,
            "response_format": self._response_format(schema),
        }
        if schema is None or self.response_format == "openai":
            out = await self._chat_openai(ep, kwargs)
        else:
            out = await ep.client.chat_completion(**kwargs)
        if not out.choices:
            raise ValueError("answer has no choices")
        text = out.choices[0].message.content
        if not isinstance(text, str):
            raise ValueError("answer has no message content")
        usage = out.usage
        reported = getattr(usage, "prompt_tokens", None) if usage else None
        ptok = int(reported) if reported is not None else None
        ctok = int(getattr(usage, "completion_tokens", 0) or 0) if usage else 0
        return _strip_stops(text, stops), ptok, ctok, out.choices[0].finish_reason

    async def _chat_openai(self, ep: _Endpoint, body: dict[str, Any]) -> ChatCompletionOutput:
        """POST the chat body as is: huggingface_hub rewrites OpenAI's `json_schema` response_format to
        TGI's `{"type": "json_object", "value": schema}`, which vLLM and llama.cpp read as "any JSON"
        (calls without a schema come here too: the same body, less CPU per call)."""
        payload = {k: v for k, v in body.items() if v is not None} | {"stream": False}
        resp = await self._post(ep, f"{self._base(ep.url)}/v1/chat/completions", payload)
        hf_raise_for_status(resp)
        return ChatCompletionOutput.parse_obj_as_instance(resp.json())

    async def _post(self, ep: _Endpoint, url: str, payload: dict[str, Any]) -> httpx2.Response:
        """POST on the endpoint's kept-alive connections (`hfadvisor.llm.pools`)."""
        if ep.pools is None:
            ep.pools = Pools(self._limit.ceiling, self.timeout, self._token)
        return await ep.pools.post(url, payload)

    def _response_format(self, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        """The chat API's schema field in the endpoint's dialect."""
        return None if schema is None else response_format(schema, self.response_format)

    def _classify(self, exc: Exception, ep: _Endpoint, ledgers: list[Ledger]) -> Exception:
        """Turn a client exception into TransientError (retry) or EndpointError (stop now)."""
        http = exc if isinstance(exc, HfHubHTTPError) else exc.__cause__
        if isinstance(exc, InferenceTimeoutError | httpx2.TimeoutException):
            _bump(ledgers, "timeouts")
            return TransientError(f"timeout from {ep.name}", "timeout")
        if isinstance(exc, httpx2.TransportError):
            _bump(ledgers, "connection_errors")
            if isinstance(exc, httpx2.ConnectError):
                ep.benched_until = time.monotonic() + BENCH_SECONDS
            return TransientError(f"connection error from {ep.name}: {type(exc).__name__}", "connection")
        if isinstance(http, HfHubHTTPError) and http.response is not None:
            status = http.response.status_code
            retry_after = parse_retry_after(http.response.headers.get("Retry-After"))
            if status in RETRYABLE_STATUS:
                if status in (429, 503):
                    _bump(ledgers, "rate_limited")
                return TransientError(f"HTTP {status} from {ep.name}", f"http_{status}", retry_after)
            hint = {
                401: "the token was rejected: set HF_TOKEN or run `hf auth login`",
                403: "the token has no access to this endpoint",
                404: "wrong URL, or wrong --api (tgi posts to /, chat to /v1/chat/completions)",
                422: "the server refused the parameters",
            }.get(status, "the server refused the request")
            detail = scrub(error_detail(http), self._token)
            _bump(ledgers, "failures")
            return EndpointError(f"endpoint {ep.name} answered HTTP {status}: {hint}{detail}")
        if isinstance(exc, TextGenerationError):
            _bump(ledgers, "rate_limited")
            return TransientError(f"{type(exc).__name__} from {ep.name}", "generation")
        if isinstance(exc, ValueError | KeyError | IndexError | TypeError | UnicodeDecodeError | json.JSONDecodeError):
            _bump(ledgers, "malformed")
            return TransientError(f"malformed answer from {ep.name}: {scrub(str(exc), self._token)[:80]}", "malformed")
        if isinstance(exc, EndpointError):
            return exc
        _bump(ledgers, "failures")
        return EndpointError(
            f"unexpected error from {ep.name}: {type(exc).__name__}: {scrub(str(exc), self._token)[:200]}"
        )


def _bump(ledgers: list[Ledger], field: str, amount: float = 1) -> None:
    for led in ledgers:
        setattr(led, field, getattr(led, field) + amount)


def _gauge(ledgers: list[Ledger], limit: int) -> None:
    for led in ledgers:
        led.concurrency = limit


def _strip_stops(text: str, stops: list[str]) -> str:
    """TGI includes the matched stop sequence in the text; OpenAI servers do not."""
    for s in stops:
        if s and text.endswith(s):
            return text[: -len(s)]
    return text
