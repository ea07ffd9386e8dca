"""Request bodies and validation of the servers `app.py` imitates: TGI, vLLM, llama.cpp.

Why per-flavour rules: the client must work against the real servers, so the test server
refuses what they refuse. TGI's grammar is `{"type": "json"|"json_object"|"regex"|"json_schema",
"value": ...}` on `/generate` and as chat `response_format` (serde `tag = "type", content =
"value"`: OpenAI's `{"type": "json_schema", "json_schema": {...}}` has no `value` and fails to
deserialize); vLLM and llama.cpp take OpenAI's shapes; our own server ("hfadvisor") takes both.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from hfadvisor.serve.backend import Backend, GenerationRequest

Flavor = Literal["hfadvisor", "tgi", "vllm", "llamacpp"]
FLAVORS: tuple[Flavor, ...] = ("hfadvisor", "tgi", "vllm", "llamacpp")
TGI_LIKE: tuple[Flavor, ...] = ("hfadvisor", "tgi")
DEFAULT_MAX_NEW_TOKENS = 100  # TGI's default for the chat route and older /generate
GRAMMAR_NOT_SUPPORTED = "grammar is not supported"  # TGI's ValidationError::Grammar


class Invalid(Exception):
    """A request the imitated server refuses as invalid (TGI 422, vLLM/llama.cpp 400)."""


class Parameters(BaseModel):
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
    grammar: Any = None


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    inputs: str
    parameters: Parameters | None = None
    stream: bool | None = None


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    messages: list[dict[str, Any]]
    model: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    response_format: Any = None


def parse_body(raw: bytes, model: type[BaseModel]) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(json.loads(raw))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise Invalid(f"Failed to deserialize the JSON body into the target type: {where}: {error['msg']}") from exc
    except ValueError as exc:
        raise Invalid(f"Failed to parse the request body as JSON: {exc}") from exc


# -- grammars -------------------------------------------------------------------------------------

Grammar = tuple[Literal["json", "regex"], Any]  # ("json", schema dict; {} = any object) or ("regex", pattern)


def _schema(value: Any, *, tgi: bool) -> dict[str, Any]:
    """TGI accepts the schema as an object or as a string holding JSON; it needs `properties`."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise Invalid(f"Input validation error: grammar is not valid: {exc}") from exc
    if not isinstance(value, dict):
        raise Invalid(f"Input validation error: {GRAMMAR_NOT_SUPPORTED}")
    if tgi and "properties" not in value:
        raise Invalid("Input validation error: grammar is not valid: Grammar must have a 'properties' field")
    return value


def tgi_grammar(spec: Any, where: str, *, strict: bool) -> Grammar:
    """TGI's GrammarType: `{"type": ..., "value": ...}`; `strict` is real TGI (else also OpenAI's shapes)."""
    variants = "`json`, `json_object`, `regex`, `json_schema`"
    if not isinstance(spec, dict) or "type" not in spec:
        raise Invalid(f"Failed to deserialize the JSON body into the target type: {where}: missing field `type`")
    kind = spec["type"]
    if not strict and kind in ("json_object", "json_schema", "text") and "value" not in spec:
        return openai_grammar(spec, where, llamacpp=False)  # our own server also speaks OpenAI's shape
    if kind not in ("json", "json_object", "regex", "json_schema"):
        raise Invalid(
            f"Failed to deserialize the JSON body into the target type: {where}: unknown variant `{kind}`, "
            f"expected one of {variants}"
        )
    if "value" not in spec:
        raise Invalid(f"Failed to deserialize the JSON body into the target type: {where}: missing field `value`")
    value = spec["value"]
    if kind == "regex":
        if not isinstance(value, str):
            raise Invalid(f"Failed to deserialize the JSON body into the target type: {where}: expected a string")
        return ("regex", value)
    if kind == "json_schema":
        if not isinstance(value, dict) or "schema" not in value:
            raise Invalid(f"Failed to deserialize the JSON body into the target type: {where}: missing field `schema`")
        value = value["schema"]
    return ("json", _schema(value, tgi=strict))


def openai_grammar(spec: Any, where: str, *, llamacpp: bool) -> Grammar | None:
    """OpenAI's response_format as vLLM (and our server) read it, or as llama.cpp's server-common.cpp does."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if llamacpp:  # unknown keys ignored; a missing or empty schema means any object
        if kind == "json_object":
            return ("json", spec.get("schema") or {})
        if kind == "json_schema":
            wrapper = spec.get("json_schema") or {}
            return ("json", (wrapper.get("schema") if isinstance(wrapper, dict) else None) or {})
        if kind in (None, "", "text"):
            return None
        raise Invalid(f'response_format type must be one of "text" or "json_object", but got: {kind}')
    if kind == "text":
        return None
    if kind == "json_object":
        return ("json", {})
    if kind == "json_schema":
        wrapper = spec.get("json_schema")
        if not isinstance(wrapper, dict) or not isinstance(wrapper.get("schema", {}), dict):
            raise Invalid(f"{where}.json_schema: Field required (an object with `name` and `schema`)")
        return ("json", wrapper.get("schema") or {})
    raise Invalid(f"{where}.type: Input should be 'text', 'json_object' or 'json_schema' (got {kind!r})")


def with_grammar(request: GenerationRequest, grammar: Grammar | None) -> GenerationRequest:
    if grammar is None:
        return request
    kind, value = grammar
    return request.model_copy(update={"json_schema": value} if kind == "json" else {"regex": value})


# -- requests -------------------------------------------------------------------------------------


def _check_common(max_new_tokens: int | None, top_p: float | None, stop: list[str], max_stops: int) -> None:
    if max_new_tokens is not None and max_new_tokens <= 0:
        raise Invalid("`max_new_tokens` must be strictly positive")
    if top_p is not None and not 0.0 < top_p < 1.0:
        raise Invalid("`top_p` must be > 0.0 and < 1.0")
    if len(stop) > max_stops:
        raise Invalid(f"`stop` supports up to {max_stops} stop sequences. Given: {len(stop)}")
    if any(not s for s in stop):
        raise Invalid("`stop` sequences cannot be empty strings")


def generate_request(body: GenerateBody, max_stops: int, max_input_tokens: int) -> GenerationRequest:
    """TGI's /generate rules: sampling iff do_sample or any warper differs from its neutral value."""
    p = body.parameters or Parameters()
    stop = p.stop or []
    _check_common(p.max_new_tokens, p.top_p, stop, max_stops)
    if not body.inputs:
        raise Invalid("`inputs` cannot be empty")
    if p.temperature is not None and p.temperature <= 0:
        raise Invalid("`temperature` must be strictly positive")
    if p.top_k is not None and p.top_k <= 0:
        raise Invalid("`top_k` must be strictly positive")
    if p.typical_p is not None and not 0.0 < p.typical_p < 1.0:
        raise Invalid("`typical_p` must be > 0.0 and < 1.0")
    if p.repetition_penalty is not None and p.repetition_penalty <= 0:
        raise Invalid("`repetition_penalty` must be strictly positive")
    if (p.best_of or 1) != 1:
        raise Invalid("`best_of` != 1 is not allowed for this endpoint")
    if p.truncate is not None and not 0 < p.truncate <= max_input_tokens:
        raise Invalid(f"`truncate` must be strictly positive and less than {max_input_tokens}. Given: {p.truncate}")
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
    raise Invalid("message `content` must be a string or a list of text parts")


def chat_request(body: ChatBody, backend: Backend, max_stops: int) -> GenerationRequest:
    """TGI's chat rules: greedy only when temperature is 0, otherwise sampling (default 1.0)."""
    stop = [body.stop] if isinstance(body.stop, str) else (body.stop or [])
    max_tokens = body.max_completion_tokens or body.max_tokens
    _check_common(max_tokens, body.top_p, stop, max_stops)
    if body.temperature is not None and body.temperature < 0:
        raise Invalid("`temperature` must be strictly positive")
    messages = []
    for message in body.messages:
        if "role" not in message:
            raise Invalid("every message needs a `role`")
        messages.append({"role": str(message["role"]), "content": _message_text(message.get("content"))})
    if not messages:
        raise Invalid("`messages` cannot be empty")
    greedy = body.temperature == 0
    return GenerationRequest(
        prompt=backend.apply_chat_template(messages),
        max_new_tokens=max_tokens or DEFAULT_MAX_NEW_TOKENS,
        temperature=None if greedy else (body.temperature or 1.0),
        top_p=None if greedy else body.top_p,
        seed=body.seed,
        stop=stop,
    )
