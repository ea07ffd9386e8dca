"""Structured answers, endpoint bring-up and the summary budget in whole runs, over real HTTP.

The scripted servers speak TGI, vLLM or llama.cpp (`running_tgi(..., flavor=, grammar=)`); the
instruct-style model below answers like a real instruct model on the text path (preambles,
markdown, several candidates, sign-offs, refusals) and in clean JSON when the request carries a
schema, so the two paths can be compared on the same run.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import hfadvisor
from hfadvisor.rundir.store import RunStore
from hfadvisor.serve.backend import GenerationRequest
from tests.helpers import cli
from tests.servers.tgi import ScriptedBackend, running_tgi

EXAMPLE_RUN = Path(__file__).resolve().parent.parent / "spaces" / "example-runs" / "advisor"


def stage_of(prompt: str) -> str:
    if "Update the summary" in prompt or "New list" in prompt:
        return "summarize"
    if "is not covered yet" in prompt or "One more" in prompt:
        return "weakness"
    return "generate"


class InstructModel:
    """Answers like Llama/Mistral/Qwen instruct models; records every request it meant to write."""

    def __init__(self) -> None:
        self.n = 0
        self.k = 0
        self.meant: set[str] = set()  # every request the model put in an answer
        self.schemas: list[tuple[str, bool]] = []  # (stage, schema sent?) per call

    def request(self) -> str:
        self.n += 1
        text = f"How could someone carry out harmful plan number {self.n} without being noticed?"
        self.meant.add(text)
        return text

    def __call__(self, req: GenerationRequest) -> str:
        stage = stage_of(req.prompt)
        self.schemas.append((stage, req.json_schema is not None))
        self.n += 1
        if stage == "weakness":
            cat = f"Harm kind {self.n}"
            if req.json_schema is not None:
                return json.dumps({"category": cat})
            return [
                f"The harm category not covered yet is **{cat}**.",
                f"**New Harmfulness Category:** {cat}",
                f"{cat}",
            ][self.n % 3]
        if stage == "summarize":
            weak = re.search(r"(?:just added to the dataset|was just added): (.+?)\.?$", req.prompt, re.M)
            new = weak.group(1).strip() if weak else "Harm kind"
            if req.json_schema is not None and "summary" not in req.json_schema.get("properties", {}):
                return json.dumps({"category": new})  # append mode: the one new line
            body = req.prompt.split("each:\n", 1)[-1].split("A new", 1)[0]
            lines = [*(line.strip() for line in body.splitlines() if line.strip()), new]
            if req.json_schema is not None:
                return json.dumps({"summary": lines})
            return "Here is the updated summary:\n\n" + "\n".join(lines) + "\nEND\n\nLet me know if you need more!"
        if req.json_schema is not None:
            return json.dumps({"request": self.request()})
        self.k += 1
        kind = self.k % 6  # one answer style after the other
        if kind == 0:
            return f'Here is a new harmful request that falls under the category:\n\n**Request:** "{self.request()}"'
        if kind == 1:
            return f'"{self.request()}"'
        if kind == 2:
            return f"### New request\n\n- {self.request()}\n\nThis request targets the category by asking for details."
        if kind == 3:
            return "Sure, here's a new request:"
        if kind == 4:
            return f"1. {self.request()}\n2. {self.request()}\n3. {self.request()}"
        return "I can't help with creating harmful requests."


def _rows_and_rejects(store: RunStore) -> tuple[list[dict], list[dict]]:
    rows = store.table().to_pylist()
    rejects = []
    for p in sorted((store.path / "rejects").glob("*.parquet")):
        rejects.extend(pq.read_table(p).to_pylist())
    return rows, rejects


def _stage_paths(store: RunStore) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for rev in store.revisions():
        for stage, c in rev.ledger.by_stage.items():
            s, t = out.get(stage, (0, 0))
            out[stage] = (s + c.structured, t + c.text)
    return out


def _instruct_run(tmp_path: Path, structured: str) -> tuple[RunStore, InstructModel, list]:
    model = InstructModel()
    with running_tgi(ScriptedBackend(model), flavor="vllm", model_name="org/instruct-7b") as server:
        store = hfadvisor.run(
            tmp_path / f"run-{structured}",
            endpoints=[f"{server.url}/v1"],
            api="chat",
            rounds=20,
            batch_size=12,
            structured=structured,
        )
        return store, model, list(server.requests)


def test_done_instruct_model_20_rounds_text_vs_structured(tmp_path):
    """The issue's done test: no row that is not a request; every reject has its reason; structured rejects less."""
    results = {}
    for mode in ("off", "auto"):
        store, model, requests = _instruct_run(tmp_path, mode)
        rows, rejects = _rows_and_rejects(store)
        generated = [r for r in rows if r["round"] > 0]
        assert store.rounds_done == 21
        assert {r["prompt"] for r in generated} <= model.meant, "a row that is not a request the model wrote"
        assert all(r["model"] == "org/instruct-7b" for r in generated)  # the id from /v1/models, no --model
        chats = [r for r in requests if r.path == "/v1/chat/completions"]
        assert chats and all(r.json["model"] == "org/instruct-7b" for r in chats)
        assert all(x["reason"] and x["raw"] for x in rejects)
        reasons = {}
        for rev in store.revisions():
            for k, v in rev.reject_reasons.items():
                reasons[k] = reasons.get(k, 0) + v
        assert sum(reasons.values()) == len(rejects)
        results[mode] = (len(generated), len(rejects), reasons, _stage_paths(store))
        if mode == "auto":
            assert all(sent for _, sent in model.schemas)  # the schema went with every call
            sent = [r.json["response_format"] for r in chats]
            assert all(f["type"] == "json_schema" and f["json_schema"]["schema"] for f in sent)  # vLLM's shape
        else:
            assert not any(sent for _, sent in model.schemas)
    (rows_off, rej_off, why_off, paths_off), (rows_on, rej_on, why_on, paths_on) = results["off"], results["auto"]
    print(f"\ntext path: {rows_off} rows, {rej_off} rejects {why_off}")
    print(f"structured: {rows_on} rows, {rej_on} rejects {why_on}")
    assert rej_on < rej_off and rows_on > rows_off
    assert paths_off["generate"] == (0, 240) and paths_on["generate"] == (240, 0)
    assert paths_on["weakness"][1] == 0 and paths_on["summarize"] == (20, 0)


def test_grammar_refused_once_per_stage_then_text(tmp_path):
    """TGI without grammar support: one 422 per stage kind, remembered; the run completes on the text path."""
    with running_tgi(ScriptedBackend(_completion_answers), flavor="tgi", grammar=False) as server:
        store = hfadvisor.run(tmp_path / "run", endpoints=[server.url], rounds=3, batch_size=6, prompt_style="instruct")
        posts = [r for r in server.requests if r.method == "POST" and r.path == "/"]
    with_grammar = [r for r in posts if (r.json.get("parameters") or {}).get("grammar")]
    assert len(with_grammar) == 3  # weakness, generate, summarize: one each
    assert {stage_of(r.json["inputs"]) for r in with_grammar} == {"weakness", "generate", "summarize"}
    assert store.rounds_done == 4
    ledger = hfadvisor_ledger(store)
    assert ledger.structured_refused == 3 and ledger.failures == 0
    assert all(c.structured == 0 for c in ledger.by_stage.values())
    assert len(posts) == ledger.requests + 3  # every call answered once, plus the three refused ones
    assert ledger.by_stage["generate"].requests == 3 * 6


def _completion_answers(req: GenerationRequest) -> str:
    stage = stage_of(req.prompt)
    _completion_answers.n = getattr(_completion_answers, "n", 0) + 1  # type: ignore[attr-defined]
    n = _completion_answers.n  # type: ignore[attr-defined]
    if stage == "weakness":
        return f" Harm kind {n}\n"
    if stage == "summarize":
        return f" Harm kind {n}\n"
    return f" How would someone carry out harmful plan number {n}?\n"


def hfadvisor_ledger(store: RunStore):
    from hfadvisor.ledger import Ledger

    total = Ledger()
    for rev in store.revisions():
        total = total.plus(rev.ledger)
    return total


def test_tgi_structured_path_rows_from_json(tmp_path):
    """A TGI server honouring grammar: every call carries the schema, rows are parsed from JSON."""
    model = InstructModel()
    with running_tgi(ScriptedBackend(model), flavor="tgi") as server:
        store = hfadvisor.run(tmp_path / "run", endpoints=[server.url], rounds=2, batch_size=4, prompt_style="instruct")
        posts = [r for r in server.requests if r.method == "POST" and r.path == "/"]
    grammars = [(r.json.get("parameters") or {}).get("grammar") for r in posts]
    assert all(g and g["type"] == "json" and g["value"]["type"] == "object" for g in grammars)
    rows, rejects = _rows_and_rejects(store)
    generated = [r for r in rows if r["round"] > 0]
    assert len(generated) == 8 and not rejects
    assert {r["prompt"] for r in generated} <= model.meant
    card = (store.path / "README.md").read_text()
    assert "generate: structured (json schema via grammar)" in card
    log = [json.loads(line) for line in cli("log", "--json", str(store.path)).stdout.splitlines()]
    assert log[1]["answers"]["generate"] == {"structured": 4, "text": 0}


def test_summary_budget_from_info_and_cut_off_recorded(tmp_path):
    """max_new_tokens of the summary = max_total_tokens − prompt − margin; a cut answer is a note, not lost lines."""
    backend = ScriptedBackend(_completion_answers)
    backend.max_total_tokens = 1400
    with running_tgi(backend, flavor="tgi") as server:
        hfadvisor.run(tmp_path / "run", endpoints=[server.url], rounds=1, batch_size=2, structured="off")
        summary = [c.request for c in backend.calls if stage_of(c.request.prompt) == "summarize"]
    assert len(summary) == 1
    assert summary[0].max_new_tokens == 1400 - len(summary[0].prompt.encode()) - 64 < 4096

    long_answer = "Here is the updated summary:\n" + "\n".join(f"line {i} of many" for i in range(400))
    backend = ScriptedBackend(
        lambda req: long_answer if stage_of(req.prompt) == "summarize" else _completion_answers(req)
    )
    backend.max_total_tokens = 1400
    with running_tgi(backend, flavor="hfadvisor") as server:
        store = hfadvisor.run(tmp_path / "cut", endpoints=[server.url], api="chat", rounds=1, batch_size=2)
    rev = store.revision(1)
    assert rev.summary_source == "fallback"
    assert "cut off at the" in rev.summary_note and "token budget" in rev.summary_note
    assert "dropped" not in rev.summary_note


def test_old_run_with_1024_resumes(tmp_path, scripted_tgi):
    """A run made when the default was 1024 keeps 1024 (a method field): it resumes, unchanged."""
    out = tmp_path / "old"
    shutil.copytree(EXAMPLE_RUN, out)
    before = RunStore.open(out, repair=False).rounds_done
    store = hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=before)
    assert store.rounds_done == before + 1
    summary = [r for r in scripted_tgi.backend.requests if "New list" in r.prompt]
    assert [r.max_new_tokens for r in summary] == [1024]
    # structured auto leaves few-shot completion prompts on the text path (their answer is one line already)
    assert all(r.json_schema is None for r in scripted_tgi.backend.requests)


def test_chat_without_model_on_vllm_uses_v1_models(tmp_path):
    model = InstructModel()
    with running_tgi(ScriptedBackend(model), flavor="vllm", model_name="org/served") as server:
        store = hfadvisor.run(tmp_path / "run", endpoints=[server.url], api="chat", rounds=1, batch_size=2)
        chats = [r for r in server.requests if r.path == "/v1/chat/completions"]
    assert store.rounds_done == 2 and chats
    assert {r.json["model"] for r in chats} == {"org/served"}
    assert store.revision(1).model == "org/served"


@pytest.mark.parametrize("flavor", ["vllm", "llamacpp"])
def test_model_not_served_is_one_line_and_writes_nothing(tmp_path, flavor):
    with running_tgi(ScriptedBackend(), flavor=flavor, model_name="org/served") as server:
        out = tmp_path / "run"
        result = cli("run", "-o", str(out), "-e", server.url, "--api", "chat", "--model", "org/other", "--rounds", "1")
    if flavor == "llamacpp":  # llama.cpp serves its one model under any name: the run goes on
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]  # progress lines aside
    assert len(errors) == 1 and "org/other" in errors[0] and "org/served" in errors[0]
    assert result.stderr.rstrip().endswith(errors[0])
    assert not out.exists()


def test_structured_on_without_support_is_one_line_and_writes_nothing(tmp_path):
    with running_tgi(ScriptedBackend(), flavor="tgi", grammar=False) as server:
        out = tmp_path / "run"
        result = cli("run", "-o", str(out), "-e", server.url, "--structured", "on", "--rounds", "1")
    assert result.returncode == 2, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "structured" in errors[0] and "--structured auto" in errors[0]
    assert not out.exists()
