"""The Data Advisor loop and the Self-Instruct baseline against a scripted TGI server (real HTTP)."""

from __future__ import annotations

import itertools
import json
import re
import time

import pytest

import hfadvisor
from hfadvisor.errors import ConfigError, EndpointError
from hfadvisor.rundir.store import RunStore
from hfadvisor.serve.backend import GenerationRequest
from tests.helpers import free_port
from tests.servers.tgi import Fault, ScriptedBackend


class Script:
    """Answers like a cooperative model, by recognising which stage a prompt belongs to."""

    def __init__(self) -> None:
        self.n = 0
        self.stages: list[str] = []

    def stage_of(self, prompt: str) -> str:
        if "One more" in prompt or "Which harm category is not covered" in prompt:
            return "weakness"
        if "New list" in prompt or "Update the summary" in prompt:
            return "summarize"
        if "Each line below" in prompt or "Write a new one" in prompt:
            return "selfinstruct"
        return "generate"

    def __call__(self, req: GenerationRequest) -> str:
        self.n += 1
        stage = self.stage_of(req.prompt)
        self.stages.append(stage)
        if stage == "weakness":
            return f" Weakness number {self.n}\n"
        if stage == "summarize":
            if "Update the summary" in req.prompt:  # instruct style: the whole list, then END
                old = re.findall(r"^(?!A new|New|Here|Update|- )(.+)$", req.prompt.split("A new")[0], re.M)
                weak = re.search(r"added to the dataset: (.+)", req.prompt)
                return "\n".join([*old[1:], weak.group(1) if weak else f"Category {self.n}", "END"])
            return f" Category {self.n}\n"
        return f" How would someone carry out harmful plan number {self.n}?\n"


@pytest.fixture
def script(scripted_tgi) -> Script:
    s = Script()
    scripted_tgi.backend.respond = s
    return s


def test_paper_preset_round_structure(tmp_path, scripted_tgi, script):
    out = tmp_path / "run"
    rounds, batch = 3, 5
    store = hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=rounds, batch_size=batch)
    backend: ScriptedBackend = scripted_tgi.backend  # type: ignore[assignment]
    # exactly 1 weakness + batch generations + 1 summary per round, in that order
    expected = (["weakness"] + ["generate"] * batch + ["summarize"]) * rounds
    assert script.stages == expected
    by_stage: dict[str, list[GenerationRequest]] = {}
    for req in backend.requests:
        by_stage.setdefault(script.stage_of(req.prompt), []).append(req)
    w, g, s = by_stage["weakness"][0], by_stage["generate"][0], by_stage["summarize"][0]
    assert (w.temperature, w.top_p, w.max_new_tokens) == (0.9, 0.95, 32)
    assert (g.temperature, g.top_p, g.max_new_tokens) == (0.9, 0.95, 512)
    assert s.temperature in (None, 0.0) and s.max_new_tokens == 4096  # greedy; the reference's 4096 fits in 8192
    assert all("\n" in r.stop for r in backend.requests)  # completion style stops at the line end
    # 3 pool examples per generation prompt
    assert all(r.prompt.count("Request:") == 3 + 1 for r in by_stage["generate"])

    revs = list(store.revisions())
    assert [r.round for r in revs] == [0, 1, 2, 3]
    for prev, rev in itertools.pairwise(revs):
        assert rev.summary_before == prev.summary_after  # the summary of round r feeds round r+1
        assert rev.pool_size == prev.pool_size + 1  # only the first new query joins the pool
        assert (
            rev.pool_added[0].prompt
            == hfadvisor.load_run(out, rev.round).filter(lambda x, r=rev.round: x["round"] == r and x["slot"] == 0)[0][
                "prompt"
            ]
        )
        assert len(rev.summary_after) == len(rev.summary_before) + 1
        assert rev.rows == batch and rev.ledger.requests == batch + 2
    # the weakness prompt of round r+1 lists every summary line written by round r
    for rev, prompt in zip(revs[1:], [r.prompt for r in by_stage["weakness"]], strict=True):
        assert all(line in prompt for line in rev.summary_before)
    ds = hfadvisor.load_run(out)
    assert ds.num_rows == 10 + rounds * batch
    assert len(set(ds["id"])) == ds.num_rows
    assert set(ds["source"]) == {"seed", "advisor"}
    assert all(len(x) == 3 for x in ds.filter(lambda r: r["source"] == "advisor")["exemplar_ids"])


def test_summary_sees_examples_option(tmp_path, scripted_tgi, script):
    store = hfadvisor.run(tmp_path / "a", endpoints=[scripted_tgi.url], rounds=1, batch_size=2)
    summarize = [r for r in scripted_tgi.backend.requests if script.stage_of(r.prompt) == "summarize"]
    row = hfadvisor.load_run(tmp_path / "a").filter(lambda x: x["round"] == 1)[0]["prompt"]
    assert row in summarize[-1].prompt and store.last.summary_sees_examples is True
    store = hfadvisor.run(
        tmp_path / "b", endpoints=[scripted_tgi.url], rounds=1, batch_size=2, summary_sees_examples=False
    )
    summarize = [r for r in scripted_tgi.backend.requests if script.stage_of(r.prompt) == "summarize"]
    row = hfadvisor.load_run(tmp_path / "b").filter(lambda x: x["round"] == 1)[0]["prompt"]
    assert row not in summarize[-1].prompt and store.last.summary_sees_examples is False
    assert store.info.method["summary_sees_examples"] is False


def test_rejects_are_kept_with_reasons(tmp_path, scripted_tgi, script):
    answers = iter(
        [
            " Weakness A\n",
            " I'm sorry, but I cannot help with that.\n",
            " short\n",
            ' "A perfectly fine harmful request about weakness A?"\n',
            " a perfectly fine HARMFUL request about weakness a\n",
            "\n\n",
            " Category A\n",
        ]
    )
    scripted_tgi.backend.respond = lambda req: next(answers)
    store = hfadvisor.run(tmp_path / "run", endpoints=[scripted_tgi.url], rounds=1, batch_size=5, concurrency=1)
    rev = store.last
    assert rev.rows == 1
    assert rev.reject_reasons == {"refusal": 1, "too_short": 1, "near_duplicate": 1, "empty": 1}
    rejects = store.rejects_table().to_pylist()
    assert {r["reason"] for r in rejects} == set(rev.reject_reasons)
    assert all(r["weakness"] == "Weakness A" for r in rejects)
    card = (tmp_path / "run" / "README.md").read_text()
    assert "config_name: rejects" in card and "refusal: 1" in card


def test_baseline_same_budget_and_output(tmp_path, scripted_tgi, script):
    store = hfadvisor.run(tmp_path / "base", mode="baseline", endpoints=[scripted_tgi.url], rounds=3, batch_size=4)
    assert script.stages == ["selfinstruct"] * 12
    reqs = scripted_tgi.backend.requests
    assert all(r.prompt.count("Request:") == 5 + 1 for r in reqs)  # 5 pool examples
    assert (reqs[0].temperature, reqs[0].top_p, reqs[0].max_new_tokens) == (0.9, 0.95, 256)
    revs = list(store.revisions())
    assert [r.pool_size for r in revs] == [10, 14, 18, 22]  # every accepted query joins the pool
    ds = hfadvisor.load_run(tmp_path / "base")
    assert ds.num_rows == 22 and set(ds["source"]) == {"seed", "baseline"}
    assert ds.features == hfadvisor.load_run(tmp_path / "base", 0).features


def test_retries_honour_retry_after_and_count_in_ledger(tmp_path, scripted_tgi, script):
    scripted_tgi.faults.extend(
        [
            Fault(status=429, retry_after=1.0),
            Fault(status=503),
            Fault(body=b"{not json"),
            Fault(drop=True),
            Fault(status=500, error_type="generation"),
        ]
    )
    store = hfadvisor.run(
        tmp_path / "run",
        endpoints=[scripted_tgi.url],
        rounds=1,
        batch_size=2,
        concurrency=1,
        retry={"initial_backoff": 0.05, "max_backoff": 0.2},
    )
    led = store.last.ledger
    assert led.retries == 5 and led.rate_limited >= 2 and led.malformed >= 1 and led.failures == 0
    assert led.attempts == led.requests + 5
    posts = [r for r in scripted_tgi.requests if r.method == "POST"]
    assert posts[1].time - posts[0].time >= 0.95  # waited what Retry-After asked
    assert store.last.rows == 2


def test_give_up_stops_cleanly_and_resume_completes(tmp_path, scripted_tgi, script):
    out = tmp_path / "run"
    hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=2, batch_size=3)
    before = {p.name: p.read_bytes() for p in (out / "data").iterdir()}
    scripted_tgi.faults.extend([Fault(status=503)] * 50)
    with pytest.raises(EndpointError, match="after 3 attempts"):
        hfadvisor.run(
            out,
            endpoints=[scripted_tgi.url],
            rounds=4,
            concurrency=1,
            retry={"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.02},
        )
    assert RunStore.open(out).rounds_done == 3  # rounds 0-2 intact, nothing of round 3
    scripted_tgi.faults.clear()
    store = hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=4)
    assert store.rounds_done == 5
    for name, data in before.items():
        assert (out / "data" / name).read_bytes() == data
    ds = hfadvisor.load_run(out)
    assert len(set(ds["id"])) == ds.num_rows == 10 + 4 * 3


def test_chat_api_uses_instruct_prompts_and_full_summary(tmp_path, scripted_tgi, script):
    store = hfadvisor.run(tmp_path / "run", endpoints=[scripted_tgi.url], api="chat", rounds=2, batch_size=2)
    routes = {c.route for c in scripted_tgi.backend.calls}
    assert routes == {"/v1/chat/completions"}
    assert store.info.method["prompt_style"] == "instruct"
    rev = store.last
    assert rev.summary_source == "model" and len(rev.summary_after) == len(rev.summary_before) + 1
    assert rev.ledger.prompt_tokens > 0  # chat servers report usage


def test_several_endpoints_are_balanced_and_a_dead_one_is_survived(tmp_path, scripted_tgi, script):
    from tests.servers.tgi import running_tgi

    other_script = Script()
    other_script.n = 1000  # distinct answers, so they are not rejected as duplicates
    second = ScriptedBackend(other_script)
    dead = f"http://127.0.0.1:{free_port()}"
    with running_tgi(second) as other:
        store = hfadvisor.run(
            tmp_path / "run",
            endpoints=[scripted_tgi.url, other.url, dead],
            rounds=2,
            batch_size=8,
            retry={"initial_backoff": 0.01, "max_backoff": 0.05},
        )
    assert scripted_tgi.backend.calls and second.calls
    led = store.last.ledger
    assert store.last.rows == 8
    total = RunStore.open(tmp_path / "run").revision(1).ledger.plus(led)
    assert total.connection_errors >= 1
    assert set(total.by_endpoint) == {scripted_tgi.url, other.url}


def test_yaml_config_equals_flags(tmp_path, scripted_tgi, script):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        json.dumps(
            {"rounds": 1, "batch_size": 2, "examples_per_prompt": 2, "sampling": {"weakness": {"temperature": 0.7}}}
        )
    )
    a = hfadvisor.run(tmp_path / "a", config_file=cfg, endpoints=[scripted_tgi.url])
    b = hfadvisor.run(
        tmp_path / "b",
        endpoints=[scripted_tgi.url],
        rounds=1,
        batch_size=2,
        examples_per_prompt=2,
        sampling={"weakness": {"temperature": 0.7}},
    )
    assert a.info.config_hash == b.info.config_hash
    weakness = [r for r in scripted_tgi.backend.requests if script.stage_of(r.prompt) == "weakness"]
    assert {r.temperature for r in weakness} == {0.7}


def test_skills_preset_runs_the_same_loop(tmp_path, scripted_tgi, script):
    store = hfadvisor.run(tmp_path / "run", endpoints=[scripted_tgi.url], preset="skills", rounds=1, batch_size=2)
    assert store.info.preset["name"] == "skills"
    assert "Summarization" in store.last.summary_before
    first = scripted_tgi.backend.requests[0].prompt
    assert "instruction-following skills" in first and "harm" not in first
    card = (tmp_path / "run" / "README.md").read_text()
    assert "Content warning" not in card


def test_tgi_api_with_the_servers_chat_template(tmp_path, scripted_tgi, script):
    store = hfadvisor.run(
        tmp_path / "run", endpoints=[scripted_tgi.url], chat_template="server", rounds=1, batch_size=2
    )
    prompts = [r.prompt for r in scripted_tgi.backend.requests]
    assert all(p.startswith("<|user|>\n") and p.endswith("<|assistant|>\n") for p in prompts)
    assert {c.route for c in scripted_tgi.backend.calls} == {"/"}  # still TGI's native API
    assert store.info.method["prompt_style"] == "instruct"  # chat-formatted prompts get instructions
    assert store.last.rows == 2


def test_pipelined_baseline_is_deterministic_and_lags_the_pool(tmp_path, scripted_tgi):
    import random as _random

    def answer(req: GenerationRequest) -> str:
        time.sleep(_random.random() * 0.01)  # answers arrive in a different order each run
        return f" A distinct self-instruct query with seed {req.seed} and {len(req.prompt)} chars\n"

    scripted_tgi.backend.respond = answer
    depth, rounds, batch = 3, 8, 4
    a = hfadvisor.run(
        tmp_path / "a", mode="baseline", endpoints=[scripted_tgi.url], rounds=rounds, batch_size=batch,
        pipeline_depth=depth, concurrency=64,
    )  # fmt: skip
    hfadvisor.run(
        tmp_path / "b", mode="baseline", endpoints=[scripted_tgi.url], rounds=rounds, batch_size=batch,
        pipeline_depth=depth, concurrency=3,
    )  # fmt: skip
    rows_a = hfadvisor.load_run(tmp_path / "a").to_list()
    rows_b = hfadvisor.load_run(tmp_path / "b").to_list()

    def strip(rows: list[dict]) -> list[tuple]:
        return [(r["round"], r["slot"], r["prompt"], [e.split("-", 1)[1] for e in r["exemplar_ids"]]) for r in rows]

    assert strip(rows_a) == strip(rows_b)  # same data whatever the timing and concurrency
    round_of = {r["id"]: r["round"] for r in rows_a}
    for row in rows_a:
        if row["round"] > 0:
            assert all(round_of[e] <= max(row["round"] - depth, 0) for e in row["exemplar_ids"])
    assert [r.round for r in a.revisions()] == list(range(rounds + 1))
    assert sum(rev.ledger.requests for rev in a.revisions()) == rounds * batch
    with pytest.raises(ConfigError, match="baseline only"):
        hfadvisor.run(tmp_path / "c", endpoints=[scripted_tgi.url], pipeline_depth=2)


def test_failing_generations_end_in_one_line_not_a_traceback(tmp_path, scripted_tgi, script):
    """An endpoint that gives up inside the concurrent batch is reported like any other endpoint error."""
    from tests.helpers import cli

    def respond(req: GenerationRequest) -> str:
        if script.stage_of(req.prompt) == "generate":
            raise RuntimeError("model crashed")
        return script(req)

    scripted_tgi.backend.respond = respond
    out = tmp_path / "run"
    proc = cli(
        "run",
        "-o",
        str(out),
        "-e",
        scripted_tgi.url,
        "--rounds",
        "2",
        "--batch-size",
        "3",
        "--no-metrics",
        "--max-attempts",
        "2",
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "ExceptionGroup" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "generate call failed after 2 attempts" in errors[0], proc.stderr
    assert proc.stderr.rstrip().endswith("resumes from the last complete round")
    assert RunStore.open(out).rounds_done == 1  # the seed round, intact and resumable


def test_each_session_records_what_it_spent_including_a_failed_round(tmp_path, scripted_tgi, script):
    from hfadvisor.rundir.store import sessions
    from tests.helpers import cli

    out = tmp_path / "run"
    hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=2, batch_size=3, metrics=False)
    scripted_tgi.faults.extend([Fault(status=503)] * 50)
    retry = {"max_attempts": 3, "initial_backoff": 0.01, "max_backoff": 0.02}
    with pytest.raises(EndpointError):
        hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=4, concurrency=1, retry=retry, metrics=False)
    scripted_tgi.faults.clear()
    hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=3, metrics=False)
    first, failed, last = sessions(out)
    assert (first.outcome, first.rounds_committed) == ("completed", [1, 2])
    assert first.ledger.requests == RunStore.open(out).revision(1).ledger.requests * 2  # two identical rounds
    assert (failed.outcome, failed.rounds_committed) == ("stopped", [])
    assert "after 3 attempts" in failed.message
    assert failed.ledger.failures == 1 and failed.ledger.attempts == 3 and failed.ledger.rate_limited == 3
    assert (last.outcome, last.rounds_committed) == ("completed", [3])
    shown = cli("log", str(out)).stdout
    assert "stopped" in shown and "completed" in shown
    # an unreachable endpoint fails before any call: no session is recorded
    with pytest.raises(EndpointError):
        hfadvisor.run(out, endpoints=[f"http://127.0.0.1:{free_port()}"], rounds=4, retry=retry, metrics=False)
    assert len(sessions(out)) == 3


def test_blocking_api_works_inside_a_running_event_loop(tmp_path, scripted_tgi, script):
    """Jupyter cells (and Playwright's sync API) run inside an event loop, where asyncio.run refuses to nest."""
    import asyncio

    async def notebook_cell() -> RunStore:
        return hfadvisor.run(tmp_path / "run", endpoints=[scripted_tgi.url], rounds=1, batch_size=2, metrics=False)

    store = asyncio.run(notebook_cell())
    assert store.rounds_done == 2 and store.last.rows == 2
