"""A FastAPI app speaking text-generation-inference's HTTP protocol over any `Backend`.

Why TGI's protocol: the loop always talks HTTP through `huggingface_hub.AsyncInferenceClient`,
so the embedded model, the test fakes, a real TGI and an Inference Endpoint all share one code
path. Validation rules, defaults and error bodies follow TGI's router so that a request that
works here also works against a real TGI (e.g. `temperature=0` and `top_p=1.0` are 422 on
`/generate`, as there; the chat route treats `temperature=0` as greedy, as TGI does).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.background import BackgroundTask

from hfadvisor import __version__
from hfadvisor.serve.backend import Backend, Generation, GenerationRequest, GenerationRequestError

DEFAULT_MAX_NEW_TOKENS = 100  # TGI's default for the chat route and older /generate


class _Invalid(Exception):
    """A request TGI would answer with 422."""


class _Parameters(BaseModel):
    model_config = ConfigDict(extra="ignore")
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    best_of: int | None = None
    seed: int | None = None
    stop: list[str] | None = None
    details: bool | None = None
    do_sample: bool | None = None
    return_full_text: bool | None = None
    truncate: int | None = None


class _GenerateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    inputs: str
    parameters: _Parameters | None = None
    stream: bool | None = None


class _ChatBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None


def _error(status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status, headers=headers)


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(json.loads(await request.body()))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise _Invalid(f"Failed to deserialize the JSON body into the target type: {where}: {error['msg']}") from exc
    except ValueError as exc:
        raise _Invalid(f"Failed to parse the request body as JSON: {exc}") from exc


def _check_common(max_new_tokens: int | None, top_p: float | None, stop: list[str], max_stops: int) -> None:
    if max_new_tokens is not None and max_new_tokens <= 0:
        raise _Invalid("`max_new_tokens` must be strictly positive")
    if top_p is not None and not 0.0 < top_p < 1.0:
        raise _Invalid("`top_p` must be > 0.0 and < 1.0")
    if len(stop) > max_stops:
        raise _Invalid(f"`stop` supports up to {max_stops} stop sequences. Given: {len(stop)}")
    if any(not s for s in stop):
        raise _Invalid("`stop` sequences cannot be empty strings")


def _generate_request(body: _GenerateBody, max_stops: int, max_input_tokens: int) -> GenerationRequest:
    """TGI's /generate rules: sampling iff do_sample or any warper differs from its neutral value."""
    p = body.parameters or _Parameters()
    stop = p.stop or []
    _check_common(p.max_new_tokens, p.top_p, stop, max_stops)
    if not body.inputs:
        raise _Invalid("`inputs` cannot be empty")
    if p.temperature is not None and p.temperature <= 0:
        raise _Invalid("`temperature` must be strictly positive")
    if p.top_k is not None and p.top_k <= 0:
        raise _Invalid("`top_k` must be strictly positive")
    if p.typical_p is not None and not 0.0 < p.typical_p < 1.0:
        raise _Invalid("`typical_p` must be > 0.0 and < 1.0")
    if p.repetition_penalty is not None and p.repetition_penalty <= 0:
        raise _Invalid("`repetition_penalty` must be strictly positive")
    if (p.best_of or 1) != 1:
        raise _Invalid("`best_of` != 1 is not allowed for this endpoint")
    if p.truncate is not None and not 0 < p.truncate <= max_input_tokens:
        raise _Invalid(f"`truncate` must be strictly positive and less than {max_input_tokens}. Given: {p.truncate}")
    temperature = p.temperature if p.temperature is not None else 1.0
    sampling = bool(p.do_sample) or temperature != 1.0 or p.top_p is not None or p.top_k is not None
    sampling = sampling or p.typical_p is not None
    return GenerationRequest(
        prompt=body.inputs,
        max_new_tokens=p.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
        temperature=temperature if sampling else None,
        top_p=p.top_p if sampling else None,
        seed=p.seed,
        stop=stop,
        truncate=p.truncate,
    )


def _message_text(content: Any) -> str:
    """OpenAI content is a string or a list of parts; only text parts mean anything here."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    raise _Invalid("message `content` must be a string or a list of text parts")


def _chat_request(body: _ChatBody, backend: Backend, max_stops: int) -> GenerationRequest:
    """TGI's chat rules: greedy only when temperature is 0, otherwise sampling (default 1.0)."""
    stop = [body.stop] if isinstance(body.stop, str) else (body.stop or [])
    max_tokens = body.max_completion_tokens or body.max_tokens
    _check_common(max_tokens, body.top_p, stop, max_stops)
    if body.temperature is not None and body.temperature < 0:
        raise _Invalid("`temperature` must be strictly positive")
    messages = []
    for message in body.messages:
        if "role" not in message:
            raise _Invalid("every message needs a `role`")
        messages.append({"role": str(message["role"]), "content": _message_text(message.get("content"))})
    if not messages:
        raise _Invalid("`messages` cannot be empty")
    greedy = body.temperature == 0
    return GenerationRequest(
        prompt=backend.apply_chat_template(messages),
        max_new_tokens=max_tokens or DEFAULT_MAX_NEW_TOKENS,
        temperature=None if greedy else (body.temperature or 1.0),
        top_p=None if greedy else body.top_p,
        seed=body.seed,
        stop=stop,
    )


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
) -> FastAPI:
    """Build the TGI-protocol app: `/`, `/generate`, `/generate_stream`, `/v1/chat/completions`, `/info`, `/health`."""
    app = FastAPI(title="hfadvisor serve (TGI protocol)", version=__version__, docs_url=None, redoc_url=None)
    slots = _Slots(max_concurrent_requests)
    fingerprint = f"hfadvisor-{__version__}"

    def overloaded() -> JSONResponse:
        return _error(429, "Model is overloaded", "overloaded")

    async def text_generation(request: Request, *, stream: bool | None, wrap: bool) -> Response:
        try:
            body: _GenerateBody = await _parse(request, _GenerateBody)
            gen_request = _generate_request(body, max_stop_sequences, backend.max_input_tokens)
        except _Invalid as exc:
            return _error(422, f"Input validation error: {exc}", "validation")
        params = body.parameters or _Parameters()
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
            return _error(422, str(exc), "validation")
        except Exception as exc:
            return _error(500, f"Request failed during generation: {exc}", "generation")
        finally:
            release()
        answer: dict[str, Any] = {"generated_text": prefix + gen.text}
        if params.details:
            answer["details"] = _details(gen, seed)
        return JSONResponse([answer] if wrap else answer)

    async def _stream_tgi(gen_request: GenerationRequest, prefix: str, seed: int | None) -> Response:
        release = slots.take()
        if release is None:
            return overloaded()
        try:
            iterator, first = await _open_stream(backend, gen_request)
        except GenerationRequestError as exc:
            release()
            return _error(422, str(exc), "validation")
        except Exception as exc:
            release()
            return _error(500, f"Request failed during generation: {exc}", "generation")

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

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        try:
            body: _ChatBody = await _parse(request, _ChatBody)
            gen_request = _chat_request(body, backend, max_stop_sequences)
        except _Invalid as exc:
            return _error(422, f"Input validation error: {exc}", "validation")
        except GenerationRequestError as exc:
            return _error(422, str(exc), "template_error")
        except Exception as exc:  # the model's Jinja template rejected these messages
            return _error(422, f"Template error: {exc}", "template_error")
        created, completion_id = int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:24]}"
        base = {"id": completion_id, "created": created, "model": backend.model_id}
        base["system_fingerprint"] = fingerprint
        release = slots.take()
        if release is None:
            return overloaded()
        if not body.stream:
            try:
                gen = await backend.generate(gen_request)
            except GenerationRequestError as exc:
                return _error(422, str(exc), "validation")
            except Exception as exc:
                return _error(500, f"Request failed during generation: {exc}", "generation")
            finally:
                release()
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": gen.text},
                "logprobs": None,
                "finish_reason": _openai_finish(gen),
            }
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": _usage(gen)})
        try:
            iterator, first = await _open_stream(backend, gen_request)
        except GenerationRequestError as exc:
            release()
            return _error(422, str(exc), "validation")
        except Exception as exc:
            release()
            return _error(500, f"Request failed during generation: {exc}", "generation")
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
                        yield _sse({**chunk, "choices": [], "usage": _usage(final)})
                yield _sse("[DONE]")
            except Exception as exc:
                yield _sse({"error": f"Request failed during generation: {exc}", "error_type": "generation"})
            finally:
                release()
                await _aclose(iterator)

        return StreamingResponse(chunks(), media_type="text/event-stream", background=BackgroundTask(release))

    @app.get("/info")
    async def info() -> dict[str, Any]:
        """TGI's /info (current and older field names), so clients can read limits before sending."""
        return {
            "model_id": backend.model_id,
            "model_sha": None,
            "model_dtype": "float32",
            "model_device_type": "cpu",
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": max_concurrent_requests,
            "max_best_of": 1,
            "max_stop_sequences": max_stop_sequences,
            "max_input_tokens": backend.max_input_tokens,
            "max_input_length": backend.max_input_tokens,
            "max_total_tokens": backend.max_total_tokens,
            "max_batch_size": getattr(backend, "max_batch_size", None),
            "validation_workers": 1,
            "max_client_batch_size": 1,
            "router": "hfadvisor-serve",
            "version": __version__,
            "sha": None,
            "docker_label": None,
            # Not in TGI: lets `hfadvisor run --chat-template server` render prompts like the model expects.
            "chat_template": getattr(backend, "chat_template", None),
            **(getattr(backend, "special_tokens", None) or {}),
        }

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        model = {"id": backend.model_id, "object": "model", "created": 0, "owned_by": "hfadvisor"}
        return {"object": "list", "data": [model]}

    return app


def _token_event(index: int, text: str, *, special: bool = False) -> dict[str, Any]:
    """Token ids and logprobs are not tracked by the Backend protocol: placeholders (0, 0.0)."""
    token = {"id": 0, "text": text, "logprob": 0.0, "special": special}
    return {"index": index, "token": token, "generated_text": None, "details": None, "top_tokens": None}


def _openai_finish(gen: Generation) -> str:
    return "length" if gen.finish_reason == "length" else "stop"


def _usage(gen: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.generated_tokens,
        "total_tokens": gen.prompt_tokens + gen.generated_tokens,
    }


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    """Close the backend stream early (client gone): the embedded backend then drops the row."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
