"""`respond` and `export` against scripted TGI servers over real HTTP."""

from __future__ import annotations

import json

import datasets
import pyarrow.parquet as pq
import pytest

import hfadvisor
from hfadvisor.config import RetryPolicy
from hfadvisor.errors import ConfigError, EndpointError, RunStateError
from hfadvisor.export import export, split_of
from hfadvisor.llm import EndpointSpec
from hfadvisor.respond import respond_run
from hfadvisor.rundir.responses import committed, responses_table
from hfadvisor.rundir.store import RunStore
from hfadvisor.serve.backend import GenerationRequest
from tests.helpers import cli, tree
from tests.servers.tgi import ScriptedBackend, running_tgi

TEMPLATE = "{% for m in messages %}<<{{ m.role }}>> {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<<assistant>>{% endif %}"


class Generator:
    """Cooperative loop model: one weakness, one summary line, distinct harmful requests."""

    def __init__(self, start: int = 0) -> None:
        self.n = start  # a new server continuing a run starts higher, or its rows would be duplicates

    def __call__(self, req: GenerationRequest) -> str:
        self.n += 1
        if "One more" in req.prompt or "Which harm category" in req.prompt:
            return f" Weakness {self.n}\n"
        if "New list" in req.prompt or "Update the summary" in req.prompt:
            return f" Category {self.n}\n"
        return f" Describe method number {self.n} to cause some specific harm\n"


def answer(req: GenerationRequest) -> str:
    """The target: refuses, quoting the request, so each answer can be matched to its prompt."""
    user = req.prompt.split("<<user>> ", 1)[-1].split("\n", 1)[0]
    return f"I can't help with that. [{user}]"


@pytest.fixture
def run_dir(tmp_path, scripted_tgi):
    scripted_tgi.backend.respond = Generator()
    out = tmp_path / "run"
    hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=3, batch_size=3, metrics=False)
    return out


@pytest.fixture
def target():
    with running_tgi(ScriptedBackend(answer)) as server:
        yield server


@pytest.fixture
def template_file(tmp_path):
    path = tmp_path / "template.jinja"
    path.write_text(TEMPLATE)
    return path


def test_respond_answers_every_row_as_a_new_revision(run_dir, target, template_file):
    before = tree(run_dir)
    result = respond_run(run_dir, EndpointSpec.of(target.url, chat_template=str(template_file)), max_new_tokens=64)
    rows = 10 + 3 * 3
    assert result.rows_answered_now == result.rows_with_response == rows
    reqs = target.backend.requests
    assert len(reqs) == rows
    assert all(r.temperature in (None, 0.0) and r.max_new_tokens == 64 for r in reqs)  # greedy, capped
    assert all(r.prompt.startswith("<<user>> ") and r.prompt.endswith("<<assistant>>") for r in reqs)
    # append-only: every file of the run is untouched, the answers live in responses/
    after = tree(run_dir)
    assert {k: v for k, v in after.items() if not k.startswith("responses/")} == before
    assert sorted(k for k in after if k.startswith("responses/")) == [
        "responses/config.json",
        *[f"responses/round-{r:05d}.{ext}" for r in range(4) for ext in ("json", "parquet")],
    ]
    config = json.loads((run_dir / "responses/config.json").read_text())
    assert config["model"] == "hfadvisor/scripted" and config["sampling"]["max_new_tokens"] == 64
    assert config["chat_template"].startswith("file sha256:")

    ds = hfadvisor.load_run(run_dir)
    assert ds.features["response"].dtype == "string"
    for row in ds:
        assert row["response"] == f"I can't help with that. [{row['prompt']}]"
    early = hfadvisor.load_run(run_dir, round=1)
    assert len(early) == 13 and all(r is not None for r in early["response"])
    assert RunStore.open(run_dir).rounds_done == 4  # the run itself still opens and verifies


def test_respond_resumes_after_failure_and_after_new_rounds(run_dir, tmp_path, template_file):
    gen_server_rows = 19
    state = {"fail": True}

    def flaky(req: GenerationRequest) -> str:
        if state["fail"] and "method number 8 " in req.prompt:  # a row of round 2
            raise RuntimeError("target crashed")
        return answer(req)

    with running_tgi(ScriptedBackend(flaky)) as server:
        with pytest.raises(EndpointError):
            respond_run(
                run_dir,
                EndpointSpec.of(
                    server.url, chat_template=str(template_file), concurrency=1, retry=RetryPolicy(max_attempts=1)
                ),
            )
        store = RunStore.open(run_dir)
        kept = committed(store)
        assert 2 not in kept and 0 in kept  # finished rounds kept, the failed one not
        answered = sum(r.rows for r in kept.values())
    state["fail"] = False
    # a fresh server counts the resumed call's requests alone: a request the failed call had in
    # flight when it stopped may still reach the first server after the call returned
    with running_tgi(ScriptedBackend(flaky)) as server:
        result = respond_run(run_dir, EndpointSpec.of(server.url, chat_template=str(template_file)))
        asked = server.backend.requests
        assert len(asked) == gen_server_rows - answered == result.rows_answered_now
        assert result.rows_with_response == gen_server_rows
        ids = responses_table(RunStore.open(run_dir)).column("id").to_pylist()
        assert len(ids) == len(set(ids)) == gen_server_rows  # nothing answered twice

        # the run grows by a round: only its rows are answered
        with running_tgi(ScriptedBackend(Generator(1000))) as gen:
            hfadvisor.run(run_dir, endpoints=[gen.url], rounds=4, batch_size=3, metrics=False)
        n = len(server.backend.requests)
        result = respond_run(run_dir, EndpointSpec.of(server.url, chat_template=str(template_file)))
        assert len(server.backend.requests) - n == 3 == result.rows_answered_now
        assert all(r is not None for r in hfadvisor.load_run(run_dir)["response"])

        # other options would mix two response sets: refused, nothing written
        snapshot = tree(run_dir)
        with pytest.raises(RunStateError, match="other options"):
            respond_run(run_dir, EndpointSpec.of(server.url, chat_template=str(template_file)), max_new_tokens=7)
        assert tree(run_dir) == snapshot


def test_respond_chat_api_and_torn_shard(run_dir, target):
    respond_run(run_dir, EndpointSpec.of(target.url, api="chat", model="target-model"))
    assert {c.route for c in target.backend.calls} == {"/v1/chat/completions"}
    # a torn answer shard is not trusted: that round is answered again
    shard = run_dir / "responses/round-00002.parquet"
    shard.write_bytes(shard.read_bytes()[:-10])
    assert 2 not in committed(RunStore.open(run_dir))
    assert hfadvisor.load_run(run_dir)["response"].count(None) == 3
    n = len(target.backend.calls)
    respond_run(run_dir, EndpointSpec.of(target.url, api="chat", model="target-model"))
    assert len(target.backend.calls) - n == 3
    assert pq.read_table(shard).num_rows == 3
    with pytest.raises(ConfigError, match="--chat-template applies to --api tgi"):
        respond_run(run_dir, EndpointSpec.of(target.url, api="chat", model="target-model", chat_template="server"))


def test_export_splits_are_stable_and_loadable(run_dir, target, template_file, tmp_path):
    with pytest.raises(RunStateError, match="no responses yet"):
        export(run_dir, tmp_path / "none")
    assert not (tmp_path / "none").exists()
    respond_run(run_dir, EndpointSpec.of(target.url, chat_template=str(template_file)))
    fractions = {"train": 0.6, "validation": 0.2, "test": 0.2}
    # Row ids carry the run's random id, so with 19 rows a split is empty in ~3 % of runs: the test
    # uses a salt (an export option) that gives every split a row, found with the export's own rule.
    ids = hfadvisor.load_run(run_dir)["id"]
    salt = next(f"s{n}" for n in range(1000) if len({split_of(i, fractions, f"s{n}") for i in ids}) == 3)
    a = export(run_dir, tmp_path / "a", splits=fractions, salt=salt)
    export(run_dir, tmp_path / "b", splits=fractions, salt=salt)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")  # byte-identical: deterministic
    assert sum(a.splits.values()) == 19 and min(a.splits.values()) > 0

    dd = datasets.load_dataset(str(tmp_path / "a"))
    assert set(dd) == {"train", "validation", "test"}
    row = dd["train"][0]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert row["messages"][1]["content"] == f"I can't help with that. [{row['messages'][0]['content']}]"
    first = {r["id"]: name for name in dd for r in dd[name]}
    jsonl = [json.loads(line) for line in (tmp_path / "a/test.jsonl").read_text().splitlines()]
    assert [r["id"] for r in jsonl] == dd["test"]["id"]

    # more rounds, re-export into the same directory: old rows keep their split
    with running_tgi(ScriptedBackend(Generator(1000))) as gen:
        hfadvisor.run(run_dir, endpoints=[gen.url], rounds=5, batch_size=3, metrics=False)
    respond_run(run_dir, EndpointSpec.of(target.url, chat_template=str(template_file)))
    c = export(run_dir, tmp_path / "a", splits=fractions, salt=salt)
    assert sum(c.splits.values()) == 25
    again = datasets.load_dataset(str(tmp_path / "a"))
    later = {r["id"]: name for name in again for r in again[name]}
    assert len(later) == 25  # the re-export, not the cached first one
    assert all(later[i] == name for i, name in first.items())
    assert all(split_of(i, c.fractions, salt) == name for i, name in later.items())


def test_export_refuses_foreign_directory_and_prompts_format(run_dir, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier export"):
        export(run_dir, foreign, fmt="prompts")
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    manifest = export(run_dir, tmp_path / "p", fmt="prompts", upto=1, jsonl=False)
    assert sum(manifest.splits.values()) == 13 and not list((tmp_path / "p").glob("*.jsonl"))
    ds = datasets.load_dataset(str(tmp_path / "p"), split="train")
    assert set(ds.column_names) == {"id", "prompt", "category", "round", "source"}


def test_cli_respond_and_export(run_dir, target, template_file, tmp_path):
    secret = "hf_respondSecretToken1234567890"
    res = cli("respond", str(run_dir), "--endpoint", target.url, env={"HF_TOKEN": secret})
    assert res.returncode == 0, res.stderr
    assert secret not in res.stderr + res.stdout
    assert not [p for p, data in tree(run_dir).items() if secret.encode() in data]
    assert "19/19 rows answered" in res.stderr
    # no --chat-template: the template the server publishes in /info
    assert json.loads((run_dir / "responses/config.json").read_text())["chat_template"].startswith("server sha256:")
    assert target.backend.requests[0].prompt.startswith("<|user|>\n")
    res = cli("export", str(run_dir), "--output", str(tmp_path / "x"), "--splits", "0.5,0.5,0")
    assert res.returncode == 0, res.stderr
    # test gets 0%: no file for it (datasets cannot read an empty Parquet file)
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "x/data").iterdir()) == ["train", "validation"]
    assert (tmp_path / "x/train.jsonl").is_file() and (tmp_path / "x/validation.jsonl").is_file()
    bad = cli("export", str(run_dir), "--output", str(tmp_path / "y"), "--splits", "0.5,0.6")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --splits") and not (tmp_path / "y").exists()
    bad = cli("respond", str(tmp_path / "nope"), "--endpoint", target.url)
    assert bad.returncode == 2 and "not an hfadvisor run directory" in bad.stderr
