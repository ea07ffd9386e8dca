"""One place that brings an endpoint up: client, server kind, model name, token limits, structured output.

`run`, `respond` and `evaluate` all start here, so every command resolves the model the same way
(`--model`, else TGI's `/info`, else the one model `/v1/models` lists), refuses a model the server
does not serve before anything is written, and knows the server's token limits (the summary's
budget follows them).

Structured-output support is learnt lazily by the client (the first call of each stage that
carries a schema finds out, per endpoint, and the answer is kept): a probe would cost a call and
still could not tell a server that silently ignores schemas from one that honours them. Only
`structured="on"` probes at bring-up, so an endpoint without support fails before a run writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx2

from hfadvisor.config import RetryPolicy, RunConfig, Sampling
from hfadvisor.errors import ConfigError, EndpointError
from hfadvisor.llm.client import LLMClient
from hfadvisor.llm.template import Message, as_messages, load_chat_template

PROMPT_MARGIN = 64  # tokens kept free beyond the counted prompt: chat-template turns, a default system prompt
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class EndpointSpec:
    """How to reach one model server, passed whole from the CLI or a `RunConfig` down to the client.

    One value instead of nine keyword arguments re-spelled by every command, `respond`,
    `evaluate` (target and judge) and `LLMClient`: a new setting is added here once. The token
    is kept out of the repr, so a spec can be logged or shown in a traceback.
    """

    urls: tuple[str, ...]  # as given: may carry credentials (log `LLMClient.endpoint_names`)
    api: str = "tgi"  # "tgi" (generate API) | "chat" (OpenAI-style chat completions)
    model: str | None = None  # None: TGI's /info, else the one model /v1/models lists
    token: str | None = field(default=None, repr=False)
    chat_template: str | None = None  # tgi api: a Jinja file, or "server" for the one /info reports
    concurrency: int = 16
    timeout: float = 120.0
    retry: RetryPolicy | None = None
    structured: str = "auto"  # auto | on | off (see LLMClient)

    @classmethod
    def of(cls, endpoint: EndpointSpec | str | Sequence[str], **changes: Any) -> EndpointSpec:
        """A spec from a spec, one URL or a list of URLs (callers and tests stay short), with `changes`."""
        if isinstance(endpoint, EndpointSpec):
            return replace(endpoint, **changes)
        return cls(urls=(endpoint,) if isinstance(endpoint, str) else tuple(endpoint), **changes)

    @classmethod
    def from_config(cls, config: RunConfig, urls: Sequence[str], token: str | None) -> EndpointSpec:
        """A run's endpoint: `urls` and `token` resolved by the caller (embedded model, login)."""
        return cls(
            tuple(urls), token=token, api=config.api, model=config.model, chat_template=config.chat_template,
            concurrency=config.concurrency, timeout=config.timeout, retry=config.retry, structured=config.structured,
        )  # fmt: skip


@dataclass
class Budget:
    """The `max_new_tokens` a call may ask for, and how the prompt was counted."""

    max_new_tokens: int
    prompt_tokens: int | None  # None when the server reports no limits (nothing to fit under)
    counted: str  # "server" (/tokenize) | "estimate" (UTF-8 bytes, an upper bound) | "no limit"


@dataclass
class Endpoint:
    """A connected endpoint: what `connect` found out, and the client to call it with."""

    client: LLMClient
    api: str  # "tgi" (generate API) | "chat" (OpenAI-style chat completions)
    kind: str  # "tgi" (answers /info) | "openai" (only /v1/models: vLLM, llama.cpp, OpenAI)
    model: str  # the model name recorded in rows (and sent to chat APIs)
    info: dict[str, Any]  # /info as the server sent it, or the /v1/models entry; `model_id` is `model`
    max_total_tokens: int | None = None
    max_input_tokens: int | None = None
    structured: str = "auto"  # auto | on | off (see LLMClient)
    _tokenize: str | None = field(default="unknown", repr=False)  # "tgi" | "vllm" | "llamacpp" | None (not offered)
    _token: str | None = field(default=None, repr=False)

    @property
    def structured_support(self) -> dict[str, dict[str, bool]]:
        """Per endpoint and stage: does it honour JSON schemas (only stages that were tried)."""
        return self.client.structured_support()

    async def count_tokens(self, prompt: str | list[Message]) -> tuple[int, str]:
        """Prompt tokens as the server counts them (`/tokenize`), else a safe upper bound (UTF-8 bytes).

        For the chat API the messages' text is counted; the template's own tokens are in the margin.
        """
        if self.api == "chat" or self.client.chat_template is None:
            text = "\n".join(m["content"] for m in as_messages(prompt))
        else:
            text = self.client.chat_template.render(prompt)
        if self._tokenize is not None:
            n = await self._server_count(text)
            if n is not None:
                return n, "server"
        return len(text.encode("utf-8")), "estimate"

    async def _server_count(self, text: str) -> int | None:
        base = _base(self.client.endpoint_urls[0])
        shapes = {
            "tgi": {"inputs": text},
            "vllm": {"model": self.model, "prompt": text, "add_special_tokens": True},
            "llamacpp": {"content": text, "add_special": True},
        }
        if self._tokenize in shapes:  # the shape that answered before
            tried = [self._tokenize]
        else:
            tried = [*(["tgi"] if self.kind == "tgi" else []), "vllm", "llamacpp"]
        bodies = [(flavor, shapes[flavor]) for flavor in tried]
        async with httpx2.AsyncClient(timeout=min(self.client.timeout, 30.0), headers=_auth(self._token)) as http:
            for flavor, body in bodies:
                try:
                    resp = await http.post(f"{base}/tokenize", json=body)
                    if resp.status_code in (404, 405):
                        break  # no such route: the other body shapes would not help
                    data = resp.json() if resp.status_code == 200 else None
                except (httpx2.HTTPError, ValueError):
                    data = None
                n = _token_count(data, flavor)
                if n is not None and (n > 0 or not text):
                    self._tokenize = flavor
                    return n
        self._tokenize = None  # not offered: estimate from now on
        return None

    async def budget(self, prompt: str | list[Message], configured: int) -> Budget:
        """`max_new_tokens` for a long answer: min(configured, room the server's limits leave)."""
        if self.max_total_tokens is None:
            return Budget(configured, None, "no limit")
        n, how = await self.count_tokens(prompt)
        room = self.max_total_tokens - n - PROMPT_MARGIN
        return Budget(max(1, min(configured, room)), n, how)


@contextlib.asynccontextmanager
async def connect(spec: EndpointSpec) -> AsyncIterator[Endpoint]:
    """Bring the endpoints up and yield an `Endpoint`; raises a one-line error before any write.

    `spec.chat_template` (tgi api) is loaded here: a Jinja file, or "server" for the template /info reports.
    """
    client = LLMClient(spec)
    async with client:
        kind, info, models = await _discover(client, spec.token)
        if kind == "openai" and spec.api == "tgi":
            raise ConfigError(
                f"{client.endpoint_names[0]} is an OpenAI-compatible server (no TGI /info): use --api chat "
                "(or --api completions for raw text prompts)"
            )
        name = await _resolve_model(client, kind, info, models, spec.model)
        client.model = name
        client.response_format = "tgi" if kind == "tgi" else "openai"
        if spec.chat_template and spec.api in ("tgi", "completions"):
            client.chat_template = load_chat_template(spec.chat_template, info)
        ep = Endpoint(
            client=client,
            api=spec.api,
            kind=kind,
            model=name,
            info={**info, "model_id": name},
            max_total_tokens=_int(info.get("max_total_tokens") or info.get("max_model_len")),
            max_input_tokens=_int(info.get("max_input_tokens") or info.get("max_input_length")),
            structured=spec.structured,
            _token=spec.token,
        )
        if spec.structured == "on":
            await _probe_structured(client)
        yield ep


async def _discover(client: LLMClient, token: str | None) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """(kind, info, models): TGI's /info, else the OpenAI /v1/models list (+ llama.cpp's /props limits)."""
    last: Exception | None = None
    async with httpx2.AsyncClient(timeout=min(client.timeout, 30.0), headers=_auth(token)) as http:
        for url, name in zip(client.endpoint_urls, client.endpoint_names, strict=True):
            base = _base(url)
            try:
                resp = await http.get(f"{base}/info")
                if resp.status_code == 200 and isinstance(info := resp.json(), dict) and info.get("model_id"):
                    return "tgi", info, []
                resp = await http.get(f"{base}/v1/models")
                if resp.status_code == 200:
                    models = [m for m in (resp.json().get("data") or []) if isinstance(m, dict) and m.get("id")]
                    extra: dict[str, Any] = {}
                    if not any(m.get("max_model_len") for m in models):  # llama.cpp: the slot's context
                        props = await http.get(f"{base}/props")
                        if props.status_code == 200:
                            settings = props.json().get("default_generation_settings") or {}
                            extra = {"max_total_tokens": settings.get("n_ctx")}
                    return "openai", extra, models
                last = EndpointError(_http_hint(name, resp.status_code))
            except (httpx2.HTTPError, ValueError, AttributeError) as e:
                last = e
    if isinstance(last, EndpointError):
        raise last
    raise EndpointError(
        f"cannot reach {', '.join(client.endpoint_names)} ({type(last).__name__}): check the URL and that the "
        "server is running"
    )


async def _resolve_model(
    client: LLMClient, kind: str, info: dict[str, Any], models: list[dict[str, Any]], wanted: str | None
) -> str:
    """The model to name: `--model`, TGI's model_id, or the one model the OpenAI server lists."""
    where = client.endpoint_names[0]
    if kind == "tgi":
        return wanted or str(info.get("model_id") or where)
    ids = [str(m["id"]) for m in models]
    if not ids:
        raise EndpointError(f"{where} lists no model at /v1/models: pass --model NAME")
    served = ", ".join(ids[:5]) + (", …" if len(ids) > 5 else "")
    if wanted is None:
        if len(ids) > 1:
            raise ConfigError(f"{where} serves several models ({served}): choose one with --model")
        chosen = ids[0]
    elif wanted in ids:
        chosen = wanted
    elif len(ids) > 1 or await _model_refused(client, wanted):
        raise ConfigError(f"{where} does not serve model {wanted!r} (it serves {served}): fix or drop --model")
    else:
        chosen = wanted  # llama.cpp serves its one model under any name
    entry = next((m for m in models if m["id"] == chosen), models[0])
    if entry.get("max_model_len"):
        info["max_total_tokens"] = entry["max_model_len"]
    return chosen


async def _model_refused(client: LLMClient, name: str) -> bool:
    """Does a one-token chat call naming `name` get a 404 (vLLM: "The model … does not exist")?"""
    base = _base(client.endpoint_urls[0])
    body = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    async with httpx2.AsyncClient(timeout=min(client.timeout, 30.0), headers=_auth(client.token)) as http:
        try:
            resp = await http.post(f"{base}/v1/chat/completions", json=body)
        except httpx2.HTTPError:
            return False  # the run's own first call will report the connection problem
    return resp.status_code == 404


async def _probe_structured(client: LLMClient) -> None:
    """structured=on: one short schema-constrained call, so an endpoint without support fails now."""
    out = await client.complete(
        "Answer with a JSON object whose `ok` field is true.",
        Sampling(temperature=0.0, top_p=None, max_new_tokens=24),
        stage="probe",
        schema=PROBE_SCHEMA,
    )
    if not out.structured:  # pragma: no cover - complete() raises first when structured is on
        raise EndpointError(f"{out.endpoint} did not honour a JSON schema: use --structured auto or off")


def _http_hint(name: str, status: int) -> str:
    if status in (401, 403):
        return f"endpoint {name} answered HTTP {status}: the token was rejected (set HF_TOKEN or run `hf auth login`)"
    return f"endpoint {name} answered HTTP {status} to /info and /v1/models: check the URL"


def _token_count(data: Any, flavor: str) -> int | None:
    """The count in a /tokenize answer of the shape asked for. llama.cpp answers vLLM's body (no
    `content`) with `{"tokens": []}`: read as a count, every prompt would weigh 0 tokens."""
    if flavor == "tgi" and isinstance(data, list):  # one entry per token
        return len(data)
    if flavor == "vllm" and isinstance(data, dict) and isinstance(data.get("count"), int):
        return int(data["count"])
    if flavor == "llamacpp" and isinstance(data, dict) and isinstance(data.get("tokens"), list):
        return len(data["tokens"])
    return None


def _base(url: str) -> str:
    return url.rstrip("/").removesuffix("/v1")  # OpenAI-style URLs are often given with /v1


def _auth(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def _int(value: Any) -> int | None:
    try:
        return int(value) if value else None
    except (TypeError, ValueError):
        return None
