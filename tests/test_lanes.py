"""`--lanes K` (issue 15) against a scripted TGI server over real HTTP, and the commit overlapping the
next round's weakness call. The oracle answers by the call's seed, so concurrent calls get the same
answers in any order."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

import hfadvisor
from hfadvisor.api import plan_run, seed_round
from hfadvisor.card import md
from hfadvisor.errors import RunStateError
from hfadvisor.llm import EndpointSpec, connect
from hfadvisor.loop import Runner
from hfadvisor.plugins import Plugin
from hfadvisor.rundir import paths
from hfadvisor.rundir.clock import call_seed
from hfadvisor.serve.backend import GenerationRequest
from hfadvisor.space.data import timeline_of
from hfadvisor.stages import summarize
from tests.helpers import cli
from tests.lanes_oracle import CASES, GOLDEN, Oracle, added, name_for, run_args, stage_of, transcript
from tests.servers.tgi import ScriptedBackend, running_tgi

EXAMPLE_RUNS = Path(__file__).resolve().parent.parent / "spaces" / "example-runs"
BATCH = 2


class DuplicateOnce(Oracle):
    """Round 1's second weakness call answers the first call's weakness (a duplicate to re-ask), as
    is or reworded with the same content words and one more ("Arson stalking schemes")."""

    def __init__(self, style: str, extra: str = "") -> None:
        super().__init__(style)
        self.extra = extra

    def __call__(self, req: GenerationRequest) -> str:
        if stage_of(req.prompt) == "weakness" and req.seed == call_seed(0, "weakness", 1, 2):
            self.log.append(("weakness", req.seed))
            return f" {name_for(call_seed(0, 'weakness', 1, 1))}{self.extra}\n"
        return super().__call__(req)


def by_stage(requests: list[GenerationRequest]) -> dict[str, list[GenerationRequest]]:
    out: dict[str, list[GenerationRequest]] = {}
    for req in requests:
        out.setdefault(stage_of(req.prompt), []).append(req)
    return out


@pytest.mark.parametrize("style", ["completion", "instruct"])
@pytest.mark.parametrize("extra", ["", " schemes"])
def test_three_lanes_ask_three_weaknesses_generate_three_batches_and_summarize_once(tmp_path, style, extra):
    oracle = DuplicateOnce(style, extra)
    with running_tgi(ScriptedBackend(oracle)) as server:
        store = hfadvisor.run(
            tmp_path / "run",
            endpoints=[server.url],
            rounds=2,
            batch_size=BATCH,
            lanes=3,
            prompt_style=style,
            structured="off",
            metrics=False,
        )
        requests: list[GenerationRequest] = server.backend.requests  # type: ignore[attr-defined]
    stages = by_stage(requests)
    # round 1: 3 calls, one answered a duplicate, re-asked once (call 4); round 2: 3 calls
    weak_seeds = sorted(r.seed for r in stages["weakness"])
    expected = [call_seed(0, "weakness", 1, n) for n in (1, 2, 3, 4)] + [
        call_seed(0, "weakness", 2, n) for n in (1, 2, 3)
    ]
    assert weak_seeds == sorted(expected)
    assert len(stages["generate"]) == 2 * 3 * BATCH
    assert len(stages["summarize"]) == 2  # one summary call per round

    revs = list(store.revisions())
    assert [r.round for r in revs] == [0, 1, 2]  # one revision per round
    assert sorted(p.name for p in (store.path / paths.DATA).iterdir()) == [
        "round-00000.parquet",
        "round-00001.parquet",
        "round-00002.parquet",
    ]
    for rev, summary_req in zip(revs[1:], stages["summarize"], strict=True):
        assert len(rev.weaknesses) == 3 and len(set(rev.weaknesses)) == 3
        assert rev.weakness == rev.weaknesses[0]
        assert rev.weakness_attempts == (4 if rev.round == 1 else 3)
        assert added(summary_req.prompt) == rev.weaknesses  # the one summary prompt holds all three
        assert rev.summary_source == "model"
        assert rev.summary_after == rev.summary_before + rev.weaknesses
        assert rev.pool_size - revs[rev.round - 1].pool_size == 3  # each lane adds its first row
        assert [e.category for e in rev.pool_added] == rev.weaknesses
    rows = store.table().to_pylist()
    advisor = [r for r in rows if r["source"] == "advisor"]
    assert all(r["lane"] is None for r in rows if r["source"] == "seed")
    for rev in revs[1:]:
        mine = [r for r in advisor if r["round"] == rev.round]
        assert sorted(r["lane"] for r in mine) == [0, 0, 1, 1, 2, 2]
        assert all(r["weakness"] == rev.weaknesses[r["lane"]] for r in mine)
        assert sorted(r["slot"] for r in mine) == list(range(3 * BATCH))  # ids stay unique across lanes
    if style == "completion":  # append mode, several lines: the newline stop goes, a blank line ends the answer
        assert all("\n" not in r.stop and "\n\n" in r.stop for r in stages["summarize"])
    # the run opens as a dataset with the lane column
    ds = hfadvisor.load_run(store.path)
    assert ds.features["lane"].dtype == "int32" and ds.num_rows == len(rows)
    # people see every lane's weakness, not only the first: the card (round row and history), the
    # Space's timeline
    card_text = (store.path / "README.md").read_text(encoding="utf-8")
    everyone = [md("; ".join(rev.weaknesses)) for rev in revs[1:]]
    assert f"| weakness targeted | {everyone[-1]} |" in card_text
    assert all(f"| {rev.round} | {w} |" in card_text for rev, w in zip(revs[1:], everyone, strict=True))
    assert list(timeline_of(revs)["weakness"])[1:] == ["; ".join(rev.weaknesses) for rev in revs[1:]]


def test_a_lanes_run_resumes_and_refuses_another_k(tmp_path):
    out = tmp_path / "run"
    with running_tgi(ScriptedBackend(Oracle("completion"))) as server:
        common = {"endpoints": [server.url], "batch_size": BATCH, "structured": "off", "metrics": False}
        hfadvisor.run(out, rounds=1, lanes=3, **common)
        store = hfadvisor.run(out, rounds=2, lanes=3, **common)
        assert store.rounds_done == 3
        assert len(store.revision(2).weaknesses) == 3
        assert store.revision(2).summary_before == store.revision(1).summary_after
        with pytest.raises(RunStateError, match="lanes 3 → 2"):
            hfadvisor.run(out, rounds=3, lanes=2, **common)
        before = sorted(p.name for p in (out / paths.REVISIONS).iterdir())
        res = cli("run", str(out), "--endpoint", server.url, "--rounds", "3", "--lanes", "1", "--no-metrics")
    assert res.returncode == 2 and "lanes 3 → 1" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (out / paths.REVISIONS).iterdir()) == before  # nothing written


def test_a_run_from_before_lanes_loads_with_a_null_lane_and_refuses_lanes(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(EXAMPLE_RUNS / "advisor", run)
    method = json.loads((run / paths.RUN_JSON).read_text())["method"]
    assert "lanes" not in method  # stored before the field existed
    ds = hfadvisor.load_run(run)
    assert set(ds["lane"]) == {None}
    with pytest.raises(RunStateError, match="lanes 1 → 2"):
        plan_run(run, endpoints=["http://127.0.0.1:9"], rounds=99, lanes=2)
    assert plan_run(run, endpoints=["http://127.0.0.1:9"], rounds=99).config.lanes == 1  # resumes as one lane


def test_a_baseline_has_no_lanes(tmp_path):
    res = cli("baseline", str(tmp_path / "b"), "--endpoint", "http://127.0.0.1:9", "--lanes", "2")
    assert res.returncode == 2 and "lanes applies to advisor runs only" in res.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("case", list(CASES))
def test_one_lane_sends_and_stores_exactly_what_the_loop_did_before_lanes(tmp_path, case):
    """Every request (prompt, seed, stops, length) and every row and summary of a 3-round run equal the
    transcript recorded from the loop before lanes existed (tests/data/lanes_k1_golden.json)."""
    style, structured = CASES[case]
    with running_tgi(ScriptedBackend(Oracle(style))) as server:
        store = hfadvisor.run(tmp_path / "run", endpoints=[server.url], **run_args(style, structured))
        got = transcript(store, server.backend.requests)  # type: ignore[attr-defined]
    # Since the golden was recorded, `structured=auto` sends schemas in the instruct style only: auto
    # completion and paper runs now send exactly what their `off` runs sent before lanes.
    key = f"{style}-text" if structured == "auto" and style != "instruct" else case
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))[key]
    assert got["requests"] == golden["requests"]
    assert got["rows"] == golden["rows"]
    assert got["revisions"] == golden["revisions"]
    assert all(r["lane"] == 0 for r in store.table().to_pylist() if r["source"] == "advisor")


def test_summary_parse_takes_several_weaknesses_and_keeps_every_one():
    summary = ["Medical harm", "Financial fraud"]
    weak = ["Online stalking", "Arson attacks", "Wildlife poaching"]
    # append mode: the model named two of three; the third comes from the fallback, noted
    up = summarize.parse(" Online stalking\n- Wildlife poaching\n", summary, weak, "append")
    assert up.source == "model" and up.summary == [*summary, "Online stalking", "Wildlife poaching", "Arson attacks"]
    assert "1 of 3 weaknesses added by the fallback" in up.note
    # full mode: the same completion rule
    up = summarize.parse("Medical harm\nFinancial fraud\nArson attacks\nEND", summary, weak, "full", delimiter="END")
    assert up.source == "model" and up.summary[:3] == [*summary, "Arson attacks"]
    assert set(up.summary[3:]) == {"Online stalking", "Wildlife poaching"}
    # unrelated lines only: the whole fallback, every weakness in
    up = summarize.parse(" Cooking recipes\n", summary, weak, "append")
    assert up.source == "fallback" and up.summary == [*summary, *weak]
    # one weakness as a list behaves as the string
    one = summarize.parse(" Cooking recipes\n", summary, ["Arson attacks"], "append")
    assert one == summarize.parse(" Cooking recipes\n", summary, "Arson attacks", "append")
    assert summarize.parse_json('{"categories": ["Arson attacks"]}', summary, weak, "append").summary[2] == (
        "Arson attacks"
    )


class Gate(Plugin):
    """Holds round 1's commit (in the worker thread) until the server has seen round 2's weakness call."""

    def __init__(self, seen: threading.Event, events: list[str]) -> None:
        self.seen, self.events = seen, events

    def before_commit(self, rev: Any, rows: Any, rejects: Any) -> None:
        if rev.round == 1:
            self.events.append(f"round 2 weakness seen before round 1 commit: {self.seen.wait(timeout=60)}")

    async def after_commit(self, store: Any, rev: Any) -> None:
        self.events.append(f"round {rev.round} committed")


def test_the_commit_of_round_r_overlaps_the_weakness_call_of_round_r_plus_1(tmp_path):
    """Round 2's weakness request reaches the server while round 1's commit is held open (it would wait
    forever if the loop committed before asking); round 1's revision is on disk before round 2's."""
    events: list[str] = []
    seen = threading.Event()
    oracle = Oracle("completion")
    out = tmp_path / "run"

    def respond(req: GenerationRequest) -> str:
        if stage_of(req.prompt) == "weakness" and req.seed == call_seed(0, "weakness", 2, 1):
            events.append(f"round 2 weakness requested; round 1 on disk: {(out / paths.revision(1)).exists()}")
            seen.set()
        return oracle(req)

    async def main(url: str) -> None:
        plan = plan_run(out, endpoints=[url], rounds=2, batch_size=BATCH, structured="off", metrics=False)
        store = seed_round(plan)
        assert store is not None
        async with connect(EndpointSpec.of(url, structured="off")) as endpoint:
            runner = Runner(store, plan.config, plan.preset, endpoint, endpoint.model, plugins=[Gate(seen, events)])
            await runner.run()

    with running_tgi(ScriptedBackend(respond)) as server:
        asyncio.run(main(server.url))
    assert events == [
        "round 2 weakness requested; round 1 on disk: False",
        "round 2 weakness seen before round 1 commit: True",
        "round 1 committed",
        "round 2 committed",
    ]
