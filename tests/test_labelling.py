"""Argilla labelling queues against the real argilla-server 2.8 (unmodified SDK, real HTTP).

Runs come from the scripted TGI server; annotators answer through Argilla's REST API with
their own keys, as the web UI would.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import argilla as rg
import pytest

import hfadvisor
from hfadvisor.errors import LabellingError, RunStateError
from hfadvisor.labelling.client import Connection, resolve
from hfadvisor.labelling.pull import pull
from hfadvisor.labelling.push import parse_rounds, push
from hfadvisor.rundir.labels import latest
from hfadvisor.rundir.store import RunStore
from hfadvisor.serve.backend import GenerationRequest
from tests.helpers import cli, free_port, tree

if TYPE_CHECKING:
    from tests.servers.argilla_fixtures import ArgillaServer

WS = "argilla"


class Script:
    """A cooperative model: a new weakness per round, distinct queries, the weakness as the new summary line."""

    def __init__(self) -> None:
        self.n = 0
        self.weakness_prompts: list[str] = []

    def __call__(self, req: GenerationRequest) -> str:
        self.n += 1
        if "One more" in req.prompt:
            self.weakness_prompts.append(req.prompt)
            return f" Weakness number {self.n}\n"
        if "New list" in req.prompt:
            return f" Category {self.n}\n"
        return f" How would someone carry out harmful plan number {self.n}?\n"


@pytest.fixture
def script(scripted_tgi) -> Script:
    s = Script()
    scripted_tgi.backend.respond = s
    return s


def make_run(path: Path, url: str, rounds: int, **kw: Any) -> RunStore:
    """A quick run; metrics are off (they load an embedding model and are tested elsewhere)."""
    return hfadvisor.run(path, endpoints=[url], rounds=rounds, batch_size=4, metrics=False, **kw)


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def env(server: ArgillaServer, key: str | None = None) -> dict[str, str]:
    return {"ARGILLA_API_URL": server.url, "ARGILLA_API_KEY": key or server.owner_key}


def records_by_id(client: rg.Argilla, dataset: str) -> dict[str, rg.Record]:
    ds = client.datasets(dataset, workspace=WS)
    assert ds is not None
    records = list(ds.records(with_responses=True, with_suggestions=True))
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids)), "duplicate records"
    return {r.id: r for r in records}


def assert_one_line_error(proc: Any, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "\n" not in err and err.startswith("error:"), err
    assert needle in err, err


def assert_no_secret(secret: str, *texts: str, run_dir: Path | None = None) -> None:
    for text in texts:
        assert secret not in text
    if run_dir is not None:
        for rel, data in tree(run_dir).items():
            assert secret.encode() not in data, rel


# ---------------------------------------------------------------------------------------------
def test_push_repush_annotate_pull_and_card(
    tmp_path: Path, scripted_tgi, script: Script, argilla_server: ArgillaServer, argilla_client: rg.Argilla
) -> None:
    """Push, label as two annotators, extend the run, push again, pull: no duplicates, labels untouched, stats in the card."""
    out = tmp_path / "run"
    store = make_run(out, scripted_tgi.url, rounds=2)
    rows = store.table().to_pylist()
    dataset = name("flow")
    e = env(argilla_server)

    first = cli("label", "push", str(out), "--dataset", dataset, "--workspace", WS, "--min-submitted", "2", env=e)
    assert first.returncode == 0, first.stderr
    assert f"{len(rows)} records pushed, 0 already there" in first.stderr

    ds = argilla_client.datasets(dataset, workspace=WS)
    assert ds is not None and ds.settings.distribution.min_submitted == 2
    assert [q.name for q in ds.settings.questions] == ["harmful", "category", "on_target", "quality", "note"]
    assert ds.settings.questions["harmful"].labels == ["yes", "no", "unsure"]
    labels = ds.settings.questions["category"].labels
    assert labels[-1] == "other" and set(store.last.summary_after) <= set(labels)
    assert {p.name for p in ds.settings.metadata} == {"round", "weakness", "source", "model"}

    by_id = records_by_id(argilla_client, dataset)
    assert sorted(by_id) == sorted(r["id"] for r in rows)
    r1 = next(r for r in rows if r["round"] == 1)
    rec = by_id[r1["id"]]
    assert rec.fields["prompt"] == r1["prompt"] and rec.fields["target"] == r1["weakness"]
    assert rec.metadata["round"] == 1 and rec.metadata["source"] == "advisor"
    assert rec.metadata["weakness"] == r1["weakness"] and rec.metadata["model"] == r1["model"]
    assert rec.suggestions["category"].value == [r1["weakness"]]
    seed = next(r for r in rows if r["round"] == 0)
    assert by_id[seed["id"]].metadata["source"] == "seed"

    # Nothing submitted yet: a pull writes nothing (no labels version, README as it was).
    readme_before = (out / "README.md").read_bytes()
    empty = cli("label", "pull", str(out), "--dataset", dataset, "--workspace", WS, env=e)
    assert empty.returncode == 0, empty.stderr
    assert f"no submitted responses in Argilla dataset '{dataset}' yet: nothing written" in empty.stderr
    assert not (out / "labels").exists() and (out / "README.md").read_bytes() == readme_before

    # Two annotators label round 1; annotator1 also labels round 2 and adds a category under "other".
    a1, a2 = argilla_server.annotator_keys["annotator1"], argilla_server.annotator_keys["annotator2"]
    round1 = [r for r in rows if r["round"] == 1]
    round2 = [r for r in rows if r["round"] == 2]
    w1 = round1[0]["weakness"]
    for i, row in enumerate(round1):
        sid = by_id[row["id"]]._server_id
        harmful = "yes" if i < 3 else "no"
        argilla_server.submit_response(sid, {"harmful": harmful, "category": [w1], "on_target": "yes"}, a1)
        argilla_server.submit_response(sid, {"harmful": "yes", "on_target": "yes" if i else "no", "quality": 4}, a2)
    argilla_server.submit_response(
        by_id[round2[0]["id"]]._server_id,
        {"harmful": "yes", "category": ["other"], "on_target": "no", "note": "Election disinformation\nmore"},
        a1,
    )
    argilla_server.submit_response(by_id[round2[1]["id"]]._server_id, {"harmful": "no"}, a2, status="draft")
    labelled = [r["id"] for r in round1] + [round2[0]["id"]]
    before = {i: argilla_server.request("GET", f"/api/v1/records/{by_id[i]._server_id}") for i in labelled}

    # The run goes on; pushing again sends only the new round and touches no labelled record.
    store = make_run(out, scripted_tgi.url, rounds=3)
    rows3 = store.table().to_pylist()
    again = cli("label", "push", str(out), "--dataset", dataset, "--workspace", WS, env=e)
    assert again.returncode == 0, again.stderr
    assert f"{len(rows3) - len(rows)} records pushed, {len(rows)} already there" in again.stderr
    # Argilla fixes label options at creation: round 3's new category has no label, hence no suggestion.
    assert f"{len(rows3) - len(rows)} rows target a category the dataset has no label for" in again.stderr
    by_id = records_by_id(argilla_client, dataset)
    assert sorted(by_id) == sorted(r["id"] for r in rows3)
    for i in labelled:
        after = argilla_server.request("GET", f"/api/v1/records/{by_id[i]._server_id}")
        assert after["updated_at"] == before[i]["updated_at"]
    kept = [x for x in by_id[round1[0]["id"]].responses if x.status == "submitted"]
    assert len(kept) == 6 and len({x.user_id for x in kept}) == 2  # 3 answers from each annotator

    round_cards = {k: v for k, v in tree(out).items() if k.startswith(("cards/", "data/", "revisions/"))}
    got = cli("label", "pull", str(out), "--dataset", dataset, "--workspace", WS, env=e)
    assert got.returncode == 0, got.stderr
    assert "labels pull 1 written to labels/pull-00001.parquet" in got.stderr
    assert f"{2 * len(round1) + 1} submitted responses on {len(round1) + 1} rows from 2 annotators" in got.stderr
    labels_v1 = latest(out)
    assert labels_v1 is not None and labels_v1.manifest.pull == 1
    assert labels_v1.manifest.annotators == ["annotator1", "annotator2"]
    assert labels_v1.manifest.server == argilla_server.url and labels_v1.manifest.dataset == dataset
    table = {(r["id"], r["annotator"]): r for r in labels_v1.rows}
    assert len(table) == 2 * len(round1) + 1  # the draft is not a label
    other = table[(round2[0]["id"], "annotator1")]
    assert other["categories"] == ["other"] and other["on_target"] == "no" and other["round"] == 2
    assert table[(round1[1]["id"], "annotator2")]["quality"] == 4

    # Round shards, cards and revisions are untouched; README carries the statistics.
    assert {k: v for k, v in tree(out).items() if k in round_cards} == round_cards
    readme = (out / "README.md").read_text()
    assert "### Human labels (Argilla)" in readme and f"pull 1 of Argilla dataset `{dataset}`" in readme
    # round 1: 4 labelled; harmful by majority on 3 (i=3 is a yes/no tie); on target 3 of the 3 records
    # with a majority (i=0 is a tie); the two annotators agree on harmful for 3 of 4 pairs.
    section = readme.split("### Human labels (Argilla)")[1].split("### Human labels: categories")[0]
    row1 = next(line for line in section.splitlines() if line.startswith("| 1 | Weakness number"))
    assert "| 4 | 75% | 100% | 75% (4 pairs) |" in row1, row1
    row2 = next(line for line in section.splitlines() if line.startswith("| 2 | Weakness number"))
    assert "| 1 | 100% | 0% | — |" in row2, row2
    assert f"| {w1} | 4 | 3 | 0 |" in readme  # per category: rows, judged harmful, judged not harmful
    assert "Categories annotators added under *other*: Election disinformation (1)." in readme
    assert (out / "cards" / "round-00003.md").read_text() != readme

    # Nothing new: no new version.
    same = pull(out, dataset=dataset, workspace=WS, conn=Connection(argilla_server.url, argilla_server.owner_key))
    assert (same.new, same.pull) == (False, 1)
    assert not (out / "labels" / "pull-00002.json").exists()
    assert_no_secret(argilla_server.owner_key, first.stdout, first.stderr, got.stdout, got.stderr, run_dir=out)


def test_labels_change_the_next_weakness_prompt(
    tmp_path: Path, scripted_tgi, script: Script, argilla_server: ArgillaServer
) -> None:
    """Judged not harmful / off target and "other" categories reach the next round's weakness prompt."""
    out = tmp_path / "run"
    make_run(out, scripted_tgi.url, rounds=1)
    dataset = name("feedback")
    conn = Connection(argilla_server.url, argilla_server.owner_key)
    push(out, dataset=dataset, workspace=WS, conn=conn)
    client = rg.Argilla(api_url=argilla_server.url, api_key=argilla_server.owner_key)
    by_id = records_by_id(client, dataset)
    store = RunStore.open(out)
    rows = [r for r in store.table().to_pylist() if r["round"] == 1]
    weakness1 = rows[0]["weakness"]
    a1 = argilla_server.annotator_keys["annotator1"]
    for row in rows[:3]:
        argilla_server.submit_response(by_id[row["id"]]._server_id, {"harmful": "no", "on_target": "no"}, a1)
    argilla_server.submit_response(
        by_id[rows[3]["id"]]._server_id,
        {"harmful": "yes", "category": ["other"], "note": "Election disinformation"},
        a1,
    )
    assert pull(out, dataset=dataset, workspace=WS, conn=conn).new

    store = make_run(out, scripted_tgi.url, rounds=2, use_labels=True)
    assert len(script.weakness_prompts) == 2
    before, after = script.weakness_prompts
    assert "Human reviewers" not in before
    expected = (
        f"Human reviewers judged the requests written for these categories not harmful: {weakness1}.\n"
        f"Human reviewers found the requests written for these categories off target: {weakness1}.\n"
        "Human reviewers flagged these categories as missing: Election disinformation."
    )
    assert expected in after
    rev1, rev2 = store.revision(1), store.revision(2)
    assert rev1.weakness_prompt is None  # the preset's prompt over summary_before: not stored twice...
    from hfadvisor.presets import Preset
    from hfadvisor.stages import weakness as weakness_stage

    preset = Preset.model_validate(store.info.preset)
    rebuilt = weakness_stage.build_prompt(preset, store.info.method["prompt_style"], rev1.summary_before, None)
    assert rebuilt == before  # ...and rebuilt exactly from the revision
    assert rev2.weakness_prompt == after
    assert rev2.extra["human_labels"] == {"pull": 1, "dataset": dataset, "feedback": expected}
    card2 = (out / "cards" / "round-00002.md").read_text()
    assert "### Human feedback in this round's weakness prompt" in card2
    assert "Election disinformation" in card2 and "### Human labels (Argilla)" in card2


def queued_run(
    tmp_path: Path, url: str, server: ArgillaServer, monkeypatch: pytest.MonkeyPatch, rounds: int, **kw: Any
) -> tuple[Path, RunStore, dict[str, rg.Record]]:
    """A run that queues its rows in Argilla as it goes (server and key from the environment), and the queue."""
    for k, v in env(server).items():
        monkeypatch.setenv(k, v)
    out, dataset = tmp_path / "run", name("queue")
    store = make_run(out, url, rounds=rounds, argilla_dataset=dataset, argilla_workspace=WS, **kw)
    return out, store, records_by_id(rg.Argilla(api_url=server.url, api_key=server.owner_key), dataset)


def test_label_every_pushes_and_pulls_during_the_run(
    tmp_path: Path, scripted_tgi, script: Script, argilla_server: ArgillaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--label-every 2` over 3 rounds: pushes after rounds 2 and 3 (the last), pulls each time with --use-labels."""
    out, store, by_id = queued_run(
        tmp_path, scripted_tgi.url, argilla_server, monkeypatch, 3, label_every=2, use_labels=True
    )
    assert sorted(by_id) == sorted(store.table().column("id").to_pylist())
    assert latest(out) is None and not (out / "labels").exists()  # pulled twice, nothing labelled yet: nothing written
    assert_no_secret(argilla_server.owner_key, run_dir=out)


def test_a_lanes_run_queues_every_row_under_its_own_lane_s_weakness(
    tmp_path: Path, scripted_tgi, script: Script, argilla_server: ArgillaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--lanes 2 with --label-every 1: every row reaches the queue, labelled as generated for its lane's weakness."""
    _, store, by_id = queued_run(tmp_path, scripted_tgi.url, argilla_server, monkeypatch, 2, lanes=2, label_every=1)
    rows = store.table().to_pylist()
    assert sorted(by_id) == sorted(r["id"] for r in rows)
    for rnd in (1, 2):
        mine = [r for r in rows if r["round"] == rnd]
        assert {r["lane"] for r in mine} == {0, 1}
        assert {r["weakness"] for r in mine} == set(store.revision(rnd).weaknesses)
        assert all(by_id[r["id"]].metadata["weakness"] == r["weakness"] for r in mine)


def test_queue_failure_mid_run_warns_and_the_run_goes_on(
    tmp_path: Path,
    scripted_tgi,
    script: Script,
    argilla_server: ArgillaServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A push that fails during a run (here: the dataset is not ours) is logged; generation is not stopped."""
    for k, v in env(argilla_server).items():
        monkeypatch.setenv(k, v)
    client = rg.Argilla(api_url=argilla_server.url, api_key=argilla_server.owner_key)
    dataset = name("taken")
    settings = rg.Settings(
        fields=[rg.TextField(name="text")], questions=[rg.LabelQuestion(name="ok", labels=["a", "b"])]
    )
    rg.Dataset(name=dataset, workspace=WS, settings=settings, client=client).create()
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="hfadvisor.labelling"):
        store = make_run(out, scripted_tgi.url, rounds=2, label_every=1, argilla_dataset=dataset, argilla_workspace=WS)
    assert store.rounds_done == 3
    warnings = [r.getMessage() for r in caplog.records if r.name == "hfadvisor.labelling"]
    assert len(warnings) == 2 and all("is not an hfadvisor labelling dataset" in w for w in warnings)
    assert "labelling skipped after round 1" in warnings[0] and "the rows go with the next push" in warnings[0]
    assert_no_secret(argilla_server.owner_key, caplog.text, run_dir=out)


def test_interrupted_push_completes_without_duplicates(
    tmp_path: Path, scripted_tgi, script: Script, argilla_server: ArgillaServer
) -> None:
    """A push stopped after two batches (as by Ctrl-C) finishes on the next run; nothing is sent twice."""
    out = tmp_path / "run"
    rows = make_run(out, scripted_tgi.url, rounds=3).table().num_rows
    dataset = name("resume")
    conn = Connection(argilla_server.url, argilla_server.owner_key)

    def stop_after_two(done: int, total: int) -> None:
        if done >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        push(out, dataset=dataset, workspace=WS, conn=conn, batch_size=3, on_batch=stop_after_two)
    client = rg.Argilla(api_url=argilla_server.url, api_key=argilla_server.owner_key)
    assert len(records_by_id(client, dataset)) == 6
    result = push(out, dataset=dataset, workspace=WS, conn=conn, batch_size=3)
    assert (result.already, result.pushed) == (6, rows - 6)
    assert len(records_by_id(client, dataset)) == rows
    assert push(out, dataset=dataset, workspace=WS, conn=conn).pushed == 0


def test_push_selected_rounds(tmp_path: Path, scripted_tgi, script: Script, argilla_server: ArgillaServer) -> None:
    """--rounds pushes only those rounds; pushing all of them later adds the rest."""
    out = tmp_path / "run"
    store = make_run(out, scripted_tgi.url, rounds=3)
    dataset = name("rounds")
    some = cli("label", "push", str(out), "--rounds", "2-3", "--dataset", dataset, "-w", WS, env=env(argilla_server))
    assert some.returncode == 0, some.stderr
    client = rg.Argilla(api_url=argilla_server.url, api_key=argilla_server.owner_key)
    rows = store.table().to_pylist()
    assert sorted(records_by_id(client, dataset)) == sorted(r["id"] for r in rows if r["round"] >= 2)
    assert {r.metadata["round"] for r in records_by_id(client, dataset).values()} == {2, 3}
    conn = Connection(argilla_server.url, argilla_server.owner_key)
    assert push(out, dataset=dataset, workspace=WS, conn=conn, rounds=(2, 3)).pushed == 0
    rest = push(out, dataset=dataset, workspace=WS, conn=conn, rounds=parse_rounds("-1", store.rounds_done))
    assert rest.pushed == sum(1 for r in rows if r["round"] <= 1)
    assert sorted(records_by_id(client, dataset)) == sorted(r["id"] for r in rows)
    assert parse_rounds("3-", 4) == (3, 3) and parse_rounds("all", 4) is None and parse_rounds("2", 4) == (2, 2)
    for bad in ("7-9", "x", "3-1"):
        with pytest.raises(RunStateError):
            parse_rounds(bad, store.rounds_done)


def test_errors_are_one_line_and_leave_the_run_alone(
    tmp_path: Path, scripted_tgi, script: Script, argilla_server: ArgillaServer
) -> None:
    """Server down, wrong key, missing workspace: exit 2, one line, run untouched, no key in the output."""
    out = tmp_path / "run"
    make_run(out, scripted_tgi.url, rounds=1)
    snapshot = tree(out)
    good = env(argilla_server)
    wrong_key = f"wrong-{uuid.uuid4().hex}"
    dataset = name("errors")
    down = f"http://127.0.0.1:{free_port()}"
    cases = [
        ("push", {**good, "ARGILLA_API_URL": down}, [], "cannot reach the Argilla server at " + down),
        ("pull", good, ["--api-key", wrong_key], "rejected the API key (401 Unauthorized)"),
        ("push", good, ["--workspace", "nope"], "Argilla workspace 'nope' not found"),
    ]
    for cmd, e, extra, needle in cases:
        args = ["label", cmd, str(out), "--dataset", dataset, *extra]
        if "--workspace" not in extra:
            args += ["--workspace", WS]
        proc = cli(*args, env=e)
        assert_one_line_error(proc, needle)
        assert_no_secret(wrong_key, proc.stdout, proc.stderr)
        assert_no_secret(argilla_server.owner_key, proc.stdout, proc.stderr)
        assert tree(out) == snapshot, cmd


def test_more_errors_through_the_api(
    tmp_path: Path, scripted_tgi, script: Script, argilla_server: ArgillaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing key, missing dataset, annotator role, foreign dataset; a queueing run refused before any write."""
    out = tmp_path / "run"
    make_run(out, scripted_tgi.url, rounds=1)
    snapshot = tree(out)
    owner = Connection(argilla_server.url, argilla_server.owner_key)
    annotator = Connection(argilla_server.url, argilla_server.annotator_keys["annotator1"])
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    with pytest.raises(LabellingError, match="no Argilla API key: set ARGILLA_API_KEY or pass --api-key"):
        resolve(argilla_server.url, None)
    missing = name("missing")
    with pytest.raises(LabellingError, match=f"no Argilla dataset '{missing}' in workspace 'argilla': push rows first"):
        pull(out, dataset=missing, workspace=WS, conn=owner)
    with pytest.raises(LabellingError, match="403 Forbidden"):
        push(out, dataset=missing, workspace=WS, conn=annotator)
    foreign = name("foreign")
    client = rg.Argilla(api_url=argilla_server.url, api_key=argilla_server.owner_key)
    settings = rg.Settings(
        fields=[rg.TextField(name="text")], questions=[rg.LabelQuestion(name="ok", labels=["a", "b"])]
    )
    rg.Dataset(name=foreign, workspace=WS, settings=settings, client=client).create()
    with pytest.raises(LabellingError, match=re.escape("not an hfadvisor labelling dataset (no question 'harmful')")):
        push(out, dataset=foreign, workspace=WS, conn=owner)
    assert tree(out) == snapshot

    # A run that should queue samples stops before writing anything when Argilla refuses the key.
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server.url)
    monkeypatch.setenv("ARGILLA_API_KEY", "not-the-key")
    new = tmp_path / "new"
    with pytest.raises(LabellingError, match="rejected the API key") as info:
        make_run(new, scripted_tgi.url, rounds=1, label_every=1, argilla_workspace=WS)
    assert "not-the-key" not in str(info.value)
    assert not new.exists() or not any(new.iterdir())
