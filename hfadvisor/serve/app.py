"""A FastAPI app speaking the HTTP protocols of TGI, vLLM or llama.cpp over any `Backend`.

Why TGI's protocol: the loop always talks HTTP through `huggingface_hub.AsyncInferenceClient`,
so the embedded model, the test fakes, a real TGI and an Inference Endpoint all share one code
path. Validation rules, defaults and error bodies follow TGI's router so that a request that
works here also works against a real TGI (e.g. `temperature=0` and `top_p=1.0` are 422 on
`/generate`, as there; the chat route treats `temperature=0` as greedy, as TGI does).

Why flavours: the client must also meet vLLM and llama.cpp as they are (`flavor="vllm"`: 404 for
a model it does not serve, no `/info`, no `/generate`; `"llamacpp"`: ignores the model name,
OpenAI error bodies); `"tgi"` is real TGI exactly (its `/info` fields, its grammar shapes only);
`"hfadvisor"` (default, `hfadvisor serve`) is TGI plus the chat template in `/info` and OpenAI's
`response_format` shapes. `grammar=False` refuses structured output as TGI launched with
`--disable-grammar-support` does (422); `grammar="ignore"` drops it silently, as some servers do.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from hfadvisor import __version__
from hfadvisor.errors import GenerationRequestError
from hfadvisor.serve.backend import Backend, Generation, GenerationRequest
from hfadvisor.serve.protocol import (
    FLAVORS,
    GRAMMAR_NOT_SUPPORTED,
    TGI_LIKE,
    ChatBody,
    Flavor,
    GenerateBody,
    Grammar,
    Invalid,
    Parameters,
    chat_request,
    generate_request,
    openai_grammar,
    parse_body,
    tgi_grammar,
    with_grammar,
)

_VLLM_TYPES = {400: "BadRequestError", 404: "NotFoundError", 429: "TooManyRequests", 500: "InternalServerError"}
_LLAMACPP_TYPES = {400: "invalid_request_error", 404: "not_found_error", 429: "unavailable_error", 500: "server_error"}


def _tgi_message(exc: Exception) -> str:
    """TGI prefixes validation errors; body deserialization errors come from axum unprefixed."""
    message = str(exc)
    prefixes = ("Failed to deserialize", "Failed to parse", "Input validation error", "Template error")
    return message if message.startswith(prefixes) else f"Input validation error: {message}"


def _sse(payload: dict[str, Any] | str) -> bytes:
    import json

    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


class _Slots:
    """TGI's bounded queue: beyond max_concurrent_requests in flight, answer 429 overloaded."""

    def __init__(self, limit: int) -> None:
        self.limit, self.busy = limit, 0

    def take(self) -> Callable[[], None] | None:
        if self.busy >= self.limit:
            return None
        self.busy += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.busy -= 1

        return release


async def _open_stream(
    backend: Backend, request: GenerationRequest
) -> tuple[AsyncIterator[str | Generation], list[str | Generation]]:
    """Start a backend stream and pull its first item, so validation errors still become a 422."""
    iterator = backend.stream(request).__aiter__()
    try:
        first = [await iterator.__anext__()]
    except StopAsyncIteration:
        first = []
    return iterator, first


async def _pieces(
    iterator: AsyncIterator[str | Generation], first: list[str | Generation]
) -> AsyncIterator[tuple[str, Generation | None]]:
    """Yield (piece, None) for text and ("", final) once at the end, synthesising totals if missing."""
    final: Generation | None = None
    texts: list[str] = []
    for item in first:
        if isinstance(item, Generation):
            final = item
        else:
            texts.append(item)
            yield item, None
    if final is None:
        async for item in iterator:
            if isinstance(item, Generation):
                final = item
                break
            texts.append(item)
            yield item, None
    if final is None:  # a backend that streams text only
        final = Generation(text="".join(texts), generated_tokens=len(texts), prompt_tokens=0, finish_reason="eos_token")
    yield "", final


def _details(gen: Generation, seed: int | None) -> dict[str, Any]:
    return {
        "finish_reason": gen.finish_reason,
        "generated_tokens": gen.generated_tokens,
        "seed": seed,
        "prefill": [],
        "tokens": [],
        "top_tokens": None,
        "best_of_sequences": None,
    }


def create_app(
    backend: Backend,
    *,
    max_concurrent_requests: int = 128,
    max_stop_sequences: int = 4,
    flavor: Flavor = "hfadvisor",
    grammar: bool | Literal["ignore"] = True,
    model_name: str | None = None,
) -> FastAPI:
    """Build the app. TGI-like flavours serve `/`, `/generate`, `/generate_stream`, `/info`; all
    serve `/v1/chat/completions`, `/v1/models` and `/health`. `model_name` is the served name
    (vLLM's `--served-model-name`, llama.cpp's `--alias`; default: the backend's model id)."""
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}: one of {', '.join(FLAVORS)}")
    app = FastAPI(title=f"hfadvisor serve ({flavor} protocol)", version=__version__, docs_url=None, redoc_url=None)
    app.openapi_url = None  # type: ignore[assignment]
    slots = _Slots(max_concurrent_requests)
    fingerprint = f"hfadvisor-{__version__}"
    served = model_name or backend.model_id
    tgi_like = flavor in TGI_LIKE
    max_stops = max_stop_sequences if tgi_like else 64  # vLLM and llama.cpp take any number of stops

    def error(status: int, message: str, error_type: str) -> JSONResponse:
        """The imitated server's error body: TGI's {error, error_type}, vLLM's or llama.cpp's shapes."""
        if flavor == "vllm":
            body: dict[str, Any] = {"object": "error", "message": message, "param": None, "code": status}
            body["type"] = _VLLM_TYPES.get(status, "BadRequestError")
        elif flavor == "llamacpp":
            body = {"error": {"code": status, "message": message, "type": _LLAMACPP_TYPES.get(status, "server_error")}}
        else:
            body = {"error": message, "error_type": error_type}
        return JSONResponse(body, status_code=status)

    def invalid(exc: Exception) -> JSONResponse:
        if tgi_like:
            return error(422, _tgi_message(exc), "validation")
        return error(400, str(exc), "validation")

    def overloaded() -> JSONResponse:
        return error(429, "Model is overloaded", "overloaded")

    def refuse_or_keep(parsed: Grammar | None, kind: str) -> Grammar | None:
        """Apply the server's grammar support to a well-formed grammar request."""
        if parsed is None or grammar is True:
            return parsed
        if grammar == "ignore":
            return None
        if tgi_like:
            raise Invalid(f"Input validation error: {GRAMMAR_NOT_SUPPORTED}")
        raise Invalid(f"response_format `{kind}` is not supported by this server")

    async def text_generation(request: Request, *, stream: bool | None, wrap: bool) -> Response:
        try:
            body: GenerateBody = parse_body(await request.body(), GenerateBody)
            gen_request = generate_request(body, max_stops, backend.max_input_tokens)
            params = body.parameters or Parameters()
            if params.grammar is not None:
                parsed = tgi_grammar(params.grammar, "parameters.grammar", strict=flavor == "tgi")
                gen_request = with_grammar(gen_request, refuse_or_keep(parsed, "grammar"))
        except Invalid as exc:
            return invalid(exc)
        prefix = body.inputs if params.return_full_text else ""
        seed = gen_request.seed if gen_request.temperature is not None else None
        if stream if stream is not None else bool(body.stream):
            return await _stream_tgi(gen_request, prefix, seed)
        release = slots.take()
        if release is None:
            return overloaded()
        try:
            gen = await backend.generate(gen_request)
        except GenerationRequestError as exc:
            return error(422, str(exc), "validation")
        except Exception as exc:
            return error(500, f"Request failed during generation: {exc}", "generation")
        finally:
            release()
        answer: dict[str, Any] = {"generated_text": prefix + gen.text}
        if params.details:
            answer["details"] = _details(gen, seed)
        # TGI reports token counts in headers (its answer body has no prompt count without prefill logprobs);
        # a backend that does not count prompt tokens (0) sends none, as a server without the header would
        counts = {"x-generated-tokens": str(gen.generated_tokens)}
        if gen.prompt_tokens:
            counts["x-prompt-tokens"] = str(gen.prompt_tokens)
        return JSONResponse([answer] if wrap else answer, headers=counts)

    async def _stream_tgi(gen_request: GenerationRequest, prefix: str, seed: int | None) -> Response:
        release = slots.take()
        if release is None:
            return overloaded()
        try:
            iterator, first = await _open_stream(backend, gen_request)
        except GenerationRequestError as exc:
            release()
            return error(422, str(exc), "validation")
        except Exception as exc:
            release()
            return error(500, f"Request failed during generation: {exc}", "generation")

        async def events() -> AsyncIterator[bytes]:
            """TGI token events; the held-back last piece carries generated_text and details."""
            held: str | None = None
            index = 0
            try:
                async for piece, final in _pieces(iterator, first):
                    if final is None:
                        if held is not None:
                            index += 1
                            yield _sse(_token_event(index, held))
                        held = piece
                        continue
                    index += 1
                    event = _token_event(index, held or "", special=held is None)
                    event["generated_text"] = prefix + final.text
                    event["details"] = {
                        "finish_reason": final.finish_reason,
                        "generated_tokens": final.generated_tokens,
                        "input_length": final.prompt_tokens,
                        "seed": seed,
                    }
                    yield _sse(event)
            except Exception as exc:
                yield _sse({"error": f"Request failed during generation: {exc}", "error_type": "generation"})
            finally:
                release()
                await _aclose(iterator)

        return StreamingResponse(events(), media_type="text/event-stream", background=BackgroundTask(release))

    def chat_grammar(body: ChatBody) -> Grammar | None:
        spec = body.response_format
        if spec is None:
            return None
        if tgi_like:
            parsed = tgi_grammar(spec, "response_format", strict=flavor == "tgi")
        else:
            parsed = openai_grammar(spec, "response_format", llamacpp=flavor == "llamacpp")
        kind = str(spec.get("type")) if isinstance(spec, dict) else "?"
        return refuse_or_keep(parsed, kind)

    async def chat_completions(request: Request) -> Response:
        try:
            body: ChatBody = parse_body(await request.body(), ChatBody)
        except Invalid as exc:
            return invalid(exc)
        if flavor == "vllm" and body.model is not None and body.model != served:
            return error(404, f"The model `{body.model}` does not exist.", "not_found")
        try:
            gen_request = with_grammar(chat_request(body, backend, max_stops), chat_grammar(body))
        except Invalid as exc:
            return invalid(exc)
        except GenerationRequestError as exc:
            return error(422 if tgi_like else 400, str(exc), "template_error")
        except Exception as exc:  # the model's Jinja template rejected these messages
            return error(422 if tgi_like else 400, f"Template error: {exc}", "template_error")
        created, completion_id = int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:24]}"
        base = {"id": completion_id, "created": created, "model": backend.model_id if tgi_like else served}
        base["system_fingerprint"] = fingerprint
        release = slots.take()
        if release is None:
            return overloaded()
        if not body.stream:
            try:
                gen = await backend.generate(gen_request)
            except GenerationRequestError as exc:
                return error(422 if tgi_like else 400, str(exc), "validation")
            except Exception as exc:
                return error(500, f"Request failed during generation: {exc}", "generation")
            finally:
                release()
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": gen.text},
                "logprobs": None,
                "finish_reason": _openai_finish(gen),
            }
            usage = _usage(gen, flavor)
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})
        try:
            iterator, first = await _open_stream(backend, gen_request)
        except GenerationRequestError as exc:
            release()
            return error(422 if tgi_like else 400, str(exc), "validation")
        except Exception as exc:
            release()
            return error(500, f"Request failed during generation: {exc}", "generation")
        include_usage = bool((body.stream_options or {}).get("include_usage"))

        async def chunks() -> AsyncIterator[bytes]:
            chunk = {**base, "object": "chat.completion.chunk"}
            try:
                async for piece, final in _pieces(iterator, first):
                    delta = {"role": "assistant", "content": piece}
                    reason = None if final is None else _openai_finish(final)
                    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
                    yield _sse({**chunk, "choices": [choice], "usage": None})
                    if final is not None and include_usage:
                        yield _sse({**chunk, "choices": [], "usage": _usage(final, flavor)})
                yield _sse("[DONE]")
            except Exception as exc:
                yield _sse({"error": f"Request failed during generation: {exc}", "error_type": "generation"})
            finally:
                release()
                await _aclose(iterator)

        return StreamingResponse(chunks(), media_type="text/event-stream", background=BackgroundTask(release))

    app.post("/v1/chat/completions")(chat_completions)
    if flavor == "llamacpp":
        app.post("/chat/completions")(chat_completions)
    if tgi_like:

        @app.post("/")
        async def compat_generate(request: Request) -> Response:
            """TGI's catch-all: a JSON *list* of one answer, or SSE when the body says stream."""
            return await text_generation(request, stream=None, wrap=True)

        @app.post("/generate")
        async def generate(request: Request) -> Response:
            return await text_generation(request, stream=False, wrap=False)

        @app.post("/generate_stream")
        async def generate_stream(request: Request) -> Response:
            return await text_generation(request, stream=True, wrap=False)

        @app.get("/info")
        async def info() -> dict[str, Any]:
            return _tgi_info(backend, flavor, max_concurrent_requests, max_stop_sequences)

    @app.get("/health")
    async def health() -> Response:
        if flavor == "llamacpp":
            return JSONResponse({"status": "ok"})
        return Response(status_code=200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return _models(served, backend, flavor)

    if flavor == "vllm":

        @app.get("/version")
        async def version() -> dict[str, Any]:
            return {"version": "0.10.1"}  # the vLLM release whose error and model shapes this imitates

    if flavor == "llamacpp":
        app.get("/models")(models)

        @app.exception_handler(HTTPException)
        async def not_found(request: Request, exc: HTTPException) -> JSONResponse:
            return error(exc.status_code, "File Not Found" if exc.status_code == 404 else str(exc.detail), "")

    return app


def _tgi_info(backend: Backend, flavor: Flavor, max_concurrent: int, max_stops: int) -> dict[str, Any]:
    """TGI's /info as TGI 3.x returns it; our own server adds what lets clients render prompts."""
    info: dict[str, Any] = {
        "model_id": backend.model_id,
        "model_sha": None,
        "model_pipeline_tag": "text-generation",
        "max_concurrent_requests": max_concurrent,
        "max_best_of": 1,
        "max_stop_sequences": max_stops,
        "max_input_tokens": backend.max_input_tokens,
        "max_total_tokens": backend.max_total_tokens,
        "validation_workers": 1,
        "max_client_batch_size": 1,
        "router": "text-generation-router" if flavor == "tgi" else "hfadvisor-serve",
        "version": "3.3.6" if flavor == "tgi" else __version__,
        "sha": None,
        "docker_label": None,
    }
    if flavor == "hfadvisor":
        # Not in TGI: older field names, the batch size, and the chat template so that
        # `hfadvisor run --chat-template server` renders prompts like the model expects.
        info |= {
            "model_dtype": "float32",
            "model_device_type": "cpu",
            "max_input_length": backend.max_input_tokens,
            "max_batch_size": getattr(backend, "max_batch_size", None),
            "chat_template": getattr(backend, "chat_template", None),
            **(getattr(backend, "special_tokens", None) or {}),
        }
    return info


def _models(served: str, backend: Backend, flavor: Flavor) -> dict[str, Any]:
    """`/v1/models` in each server's shape (vLLM reports `max_model_len`, llama.cpp its `meta`)."""
    created = int(time.time())
    if flavor == "vllm":
        model = {"id": served, "object": "model", "created": created, "owned_by": "vllm", "root": served}
        model |= {"parent": None, "max_model_len": backend.max_total_tokens, "permission": []}
        return {"object": "list", "data": [model]}
    if flavor == "llamacpp":
        meta = {"n_ctx_train": backend.max_total_tokens, "n_vocab": None, "n_params": None}
        model = {"id": served, "object": "model", "created": created, "owned_by": "llamacpp", "meta": meta}
        listed = {"name": served, "model": served, "type": "model", "capabilities": ["completion"]}
        return {"models": [listed], "object": "list", "data": [model]}
    return {"object": "list", "data": [{"id": served, "object": "model", "created": 0, "owned_by": served}]}


def _token_event(index: int, text: str, *, special: bool = False) -> dict[str, Any]:
    """Token ids and logprobs are not tracked by the Backend protocol: placeholders (0, 0.0)."""
    token = {"id": 0, "text": text, "logprob": 0.0, "special": special}
    return {"index": index, "token": token, "generated_text": None, "details": None, "top_tokens": None}


def _openai_finish(gen: Generation) -> str:
    return "length" if gen.finish_reason == "length" else "stop"


def _usage(gen: Generation, flavor: Flavor) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.generated_tokens,
        "total_tokens": gen.prompt_tokens + gen.generated_tokens,
    }
    if flavor == "vllm":
        usage["prompt_tokens_details"] = None
    return usage


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    """Close the backend stream early (client gone): the embedded backend then drops the row."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
