"""Bringing an endpoint up (hfadvisor/llm/connect.py) and the client's structured transport, over real HTTP."""

from __future__ import annotations

import asyncio
import json

import pytest

from hfadvisor.config import Sampling
from hfadvisor.errors import ConfigError
from hfadvisor.llm import EndpointSpec, connect
from tests.servers.tgi import Fault, ScriptedBackend, running_tgi

SCHEMA = {
    "type": "object",
    "properties": {"request": {"type": "string", "maxLength": 300}},
    "required": ["request"],
    "additionalProperties": False,
}
GREEDY = Sampling(temperature=0.0, top_p=None, max_new_tokens=40)


def _posts(server, path: str | None = None) -> list:
    return [r for r in server.requests if r.method == "POST" and (path is None or r.path == path)]


def _grammar(req) -> object:
    return ((req.json or {}).get("parameters") or {}).get("grammar")


def test_tgi_connect_reads_info(scripted_tgi):
    async def main():
        async with connect(EndpointSpec.of(scripted_tgi.url)) as ep:
            return ep.kind, ep.model, ep.max_total_tokens, ep.max_input_tokens, ep.info["model_id"]

    kind, model, total, inp, info_model = asyncio.run(main())
    assert (kind, model, total, inp) == ("tgi", "hfadvisor/scripted", 8192, 4096)
    assert info_model == model


def test_budget_follows_max_total_tokens(scripted_tgi):
    scripted_tgi.backend.max_total_tokens = 600
    prompt = "word " * 50  # 250 bytes: the estimate (no /tokenize here) is the byte count, an upper bound

    async def main():
        async with connect(EndpointSpec.of(scripted_tgi.url)) as ep:
            return await ep.budget(prompt, 4096), await ep.budget("x", 100)

    big, small = asyncio.run(main())
    assert (big.max_new_tokens, big.prompt_tokens, big.counted) == (600 - 250 - 64, 250, "estimate")
    assert small.max_new_tokens == 100  # the configured value when it fits


def test_schema_ignored_is_learnt_once_per_stage(scripted_tgi):
    """A server that silently ignores the grammar answers text: noticed on the first call, then text only."""
    scripted_tgi.backend.respond = lambda req: "How do I pick a lock?"

    async def main():
        async with connect(EndpointSpec.of(scripted_tgi.url)) as ep:
            outs = [await ep.client.complete("p", GREEDY, stage="generate", schema=SCHEMA) for _ in range(3)]
            outs.append(await ep.client.complete("p", GREEDY, stage="weakness", schema=SCHEMA))
            return outs, ep.client.ledger, ep.structured_support

    outs, ledger, support = asyncio.run(main())
    assert [o.structured for o in outs] == [False] * 4
    grammars = [_grammar(r) for r in _posts(scripted_tgi)]
    assert grammars == [{"type": "json", "value": SCHEMA}, None, None, {"type": "json", "value": SCHEMA}]
    assert ledger.structured_ignored == 2 and ledger.structured_refused == 0
    assert ledger.by_stage["generate"].text == 3 and ledger.by_stage["generate"].structured == 0
    assert list(support.values()) == [{"generate": False, "weakness": False}]


def test_refused_schema_is_resent_as_text_once_under_concurrency(scripted_tgi):
    """A 422 to a schema call: that call is re-sent without it; concurrent calls wait for the answer."""
    scripted_tgi.faults.append(
        Fault(status=422, body=b'{"error":"Grammar is not supported","error_type":"validation"}')
    )
    scripted_tgi.backend.respond = lambda req: "How do I pick a lock?"

    async def main():
        async with connect(EndpointSpec.of(scripted_tgi.url)) as ep:
            outs = await asyncio.gather(
                *(ep.client.complete("p", GREEDY, stage="generate", schema=SCHEMA, stop=["\n"]) for _ in range(8))
            )
            return outs, ep.client.ledger

    outs, ledger = asyncio.run(main())
    posts = _posts(scripted_tgi)
    assert posts[0].json["parameters"].get("stop") is None  # JSON may hold newlines: no one-line stop with a schema
    assert all(r.json["parameters"]["stop"] == ["\n"] for r in posts[1:])
    refused = [r for r in posts if r.fault is not None]
    assert len(refused) == 1 and _grammar(refused[0]) is not None
    assert [_grammar(r) for r in posts[1:]] == [None] * 8  # the refused call re-sent + 7 waiting calls
    assert all(o.text == "How do I pick a lock?" for o in outs)
    assert (ledger.structured_refused, ledger.failures, ledger.requests) == (1, 0, 8)


def test_structured_honoured_json(scripted_tgi):
    """An answer that is JSON when a schema was sent counts as structured, and later calls keep the schema."""
    scripted_tgi.backend.respond = lambda req: json.dumps({"request": "How do I pick a lock?"})

    async def main():
        async with connect(EndpointSpec.of(scripted_tgi.url)) as ep:
            outs = [await ep.client.complete("p", GREEDY, stage="generate", schema=SCHEMA) for _ in range(2)]
            return outs, ep.client.ledger

    outs, ledger = asyncio.run(main())
    assert [o.structured for o in outs] == [True, True]
    assert [_grammar(r) is not None for r in _posts(scripted_tgi)] == [True, True]
    assert ledger.by_stage["generate"].structured == 2


def test_structured_off_sends_no_schema(scripted_tgi):
    async def main():
        async with connect(EndpointSpec.of(scripted_tgi.url, structured="off")) as ep:
            return await ep.client.complete("p", GREEDY, stage="generate", schema=SCHEMA)

    assert asyncio.run(main()).structured is False
    assert _grammar(_posts(scripted_tgi)[0]) is None


def test_structured_on_refuses_an_endpoint_without_support(scripted_tgi):
    scripted_tgi.faults.append(
        Fault(status=422, body=b'{"error":"Grammar is not supported","error_type":"validation"}')
    )

    async def main():
        async with connect(EndpointSpec.of(scripted_tgi.url, structured="on")):
            pass

    with pytest.raises(Exception, match=r"refused structured output .*--structured auto") as e:
        asyncio.run(main())
    assert "\n" not in str(e.value)


def test_chat_to_tgi_server_sends_tgi_response_format(scripted_tgi):
    async def main():
        async with connect(EndpointSpec.of(scripted_tgi.url, api="chat")) as ep:
            await ep.client.complete("p", GREEDY, stage="generate", schema=SCHEMA)
            return ep.model

    assert asyncio.run(main()) == "hfadvisor/scripted"  # not "tgi": the id /info reports
    body = _posts(scripted_tgi, "/v1/chat/completions")[0].json
    assert body["model"] == "hfadvisor/scripted"
    assert body["response_format"] == {"type": "json", "value": SCHEMA}


def test_tgi_api_on_openai_server_is_one_line():
    with running_tgi(ScriptedBackend()) as server:
        server.faults.append(Fault(status=404, method="GET"))  # /info: not TGI

        async def main():
            async with connect(EndpointSpec.of(server.url)):
                pass

        with pytest.raises(ConfigError, match=r"OpenAI-compatible server .*--api chat"):
            asyncio.run(main())


@pytest.mark.parametrize(
    ("wanted", "outcome"),
    [(None, "several models"), ("org/b", "org/b"), ("org/c", "does not serve model 'org/c'")],
)
def test_server_listing_several_models(wanted, outcome):
    listing = {
        "object": "list",
        "data": [{"id": "org/a", "max_model_len": 2048}, {"id": "org/b", "max_model_len": 1024}],
    }
    with running_tgi(ScriptedBackend(), flavor="vllm", model_name="org/b") as server:
        server.faults.append(Fault(status=404, method="GET"))  # /info
        server.faults.append(Fault(method="GET", body=json.dumps(listing).encode()))  # /v1/models

        async def main():
            async with connect(EndpointSpec.of(server.url, api="chat", model=wanted)) as ep:
                return ep.model, ep.max_total_tokens

        if outcome.startswith("org/"):
            assert asyncio.run(main()) == (outcome, 1024)  # the chosen model's own max_model_len
        else:
            with pytest.raises(ConfigError, match=outcome) as e:
                asyncio.run(main())
            assert "org/a, org/b" in str(e.value)


def test_endpoint_spec_is_passed_whole_and_never_shows_its_token(scripted_tgi):
    from hfadvisor.config import RetryPolicy, build_config

    spec = EndpointSpec.of(scripted_tgi.url, token="hf_SpecSecret123", concurrency=3, structured="off")
    assert "hf_SpecSecret123" not in repr(spec) and "hf_SpecSecret123" not in f"{spec}"
    assert spec.urls == (scripted_tgi.url,) and EndpointSpec.of([scripted_tgi.url]).urls == spec.urls
    judge = EndpointSpec.of(spec, api="chat")  # a spec with changes keeps the rest (the judge-is-target case)
    assert (judge.api, judge.token, judge.concurrency, spec.api) == ("chat", "hf_SpecSecret123", 3, "tgi")
    config = build_config({"api": "tgi", "model": "m", "concurrency": 5, "timeout": 9.0, "structured": "on",
                           "chat_template": "server", "retry": {"max_attempts": 2}})  # fmt: skip
    run = EndpointSpec.from_config(config, ["http://a", "http://b"], "tok")
    assert (run.urls, run.model, run.concurrency, run.timeout, run.structured, run.chat_template, run.token) == (
        ("http://a", "http://b"),
        "m",
        5,
        9.0,
        "on",
        "server",
        "tok",
    )
    assert run.retry == RetryPolicy(max_attempts=2)

    async def main():
        async with connect(spec) as ep:
            await ep.client.complete("hi", GREEDY, stage="g")
            return ep.client.structured, ep.client._limit.ceiling

    assert asyncio.run(main()) == ("off", 3)
    sent = _posts(scripted_tgi, "/")
    assert sent and all(r.headers.get("authorization") == "Bearer hf_SpecSecret123" for r in sent)
