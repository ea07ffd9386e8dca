"""The run directory as a dataset: append-only rounds, verified on open, loadable by round."""

from __future__ import annotations

import os

import datasets
import pytest

import hfadvisor
from hfadvisor import card
from hfadvisor.api import plan_run, seed_round
from hfadvisor.errors import RunStateError
from hfadvisor.ledger import Ledger
from hfadvisor.records import Revision
from hfadvisor.rundir.store import RevisionIndex, RunStore
from tests.helpers import tree


def _make_run(path, rounds: int, rows_per_round: int = 3) -> RunStore:
    plan = plan_run(path, endpoints=["http://127.0.0.1:9"], rounds=rounds)
    store = seed_round(plan)
    assert store is not None
    for r in range(1, rounds + 1):
        rows = [
            {
                "id": f"{store.info.run_id[:8]}-{r:05d}-{s:03d}",
                "round": r,
                "slot": s,
                "prompt": f"query {r}.{s} about something harmful",
                "weakness": f"weakness {r}",
                "source": "advisor",
                "model": "m",
                "exemplar_ids": ["a", "b"],
            }
            for s in range(rows_per_round)
        ]
        rejects = [
            {
                "id": "x",
                "round": r,
                "slot": 9,
                "stage": "generate",
                "reason": "too_short",
                "text": "hi",
                "raw": "hi",
                "weakness": f"weakness {r}",
                "model": "m",
            }
        ]
        last = store.last
        rev = Revision(
            round=r,
            mode="advisor",
            shard=None,
            rows=0,
            sha256=None,
            rejects_shard=None,
            rejects=0,
            rejects_sha256=None,
            card="",
            summary_before=last.summary_after,
            summary_after=[*last.summary_after, f"weakness {r}"],
            weakness=f"weakness {r}",
            pool_size=0,
            config_hash=store.info.config_hash,
            model="m",
            started_at="t",
            finished_at="t",
        )
        text = card.render(
            store.info, rev, [*store.index, RevisionIndex.of(rev)], rounds_planned=rounds, ledger_total=Ledger()
        )
        store.commit_round(rev, rows, rejects, text)
    return store


def test_rounds_are_append_only(tmp_path):
    run = tmp_path / "run"
    _make_run(run, 2)
    before = tree(run)
    mtimes = {p: os.stat(run / p).st_mtime_ns for p in before}
    store = RunStore.open(run)
    _append(store, 3)
    after = tree(run)
    for path, data in before.items():
        if path == "README.md":
            continue  # the current card moves with the latest round
        assert after[path] == data, f"{path} was rewritten"
        assert os.stat(run / path).st_mtime_ns == mtimes[path]
    assert "data/round-00003.parquet" in after and "revisions/round-00003.json" in after


def _append(store: RunStore, r: int) -> None:
    last = store.last
    rev = last.model_copy(update={"round": r, "weakness": f"w{r}"})
    row = {
        "id": f"id-{r}",
        "round": r,
        "slot": 0,
        "prompt": f"new query {r}",
        "weakness": f"w{r}",
        "source": "advisor",
        "model": "m",
        "exemplar_ids": [],
    }
    store.commit_round(rev, [row], [], "card\n")


def test_load_run_by_round_and_plain_load_dataset(tmp_path):
    run = tmp_path / "run"
    _make_run(run, 3)
    ds = hfadvisor.load_run(run, round=1)
    assert ds.num_rows == 10 + 3 and set(ds["round"]) == {0, 1}
    assert ds.features["round"] == datasets.Value("int32")
    assert hfadvisor.load_run(run).num_rows == 10 + 9
    with pytest.raises(RunStateError, match="round 7 does not exist"):
        hfadvisor.load_run(run, round=7)
    plain = datasets.load_dataset(str(run), split="train", cache_dir=str(tmp_path / "cache"))
    assert plain.num_rows == 19 and plain.features == ds.features
    rejects = datasets.load_dataset(str(run), "rejects", split="train", cache_dir=str(tmp_path / "cache"))
    assert rejects.num_rows == 3 and set(rejects["reason"]) == {"too_short"}


def test_unfinished_round_leftovers_are_removed(tmp_path):
    run = tmp_path / "run"
    _make_run(run, 2)
    # a crash after writing round 3's shard but before its revision record
    (run / "data" / "round-00003.parquet").write_bytes(b"partial")
    (run / "cards" / "round-00003.md").write_text("partial")
    (run / "data" / ".round-00004.parquet.tmp123").write_bytes(b"tmp")
    store = RunStore.open(run)
    assert store.rounds_done == 3
    assert not (run / "data" / "round-00003.parquet").exists()
    assert not (run / "data" / ".round-00004.parquet.tmp123").exists()
    assert hfadvisor.load_run(run).num_rows == 16


def test_torn_shard_is_detected_and_quarantined(tmp_path):
    run = tmp_path / "run"
    _make_run(run, 3)
    shard = run / "data" / "round-00002.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # torn write
    with pytest.raises(RunStateError, match="does not match its recorded sha256"):
        RunStore.open(run, repair=False)
    store = RunStore.open(run)  # repair: rounds 2.. moved aside, rounds 0-1 intact
    assert store.rounds_done == 2
    quarantined = list((run / ".corrupt").rglob("*.parquet"))
    assert {p.name for p in quarantined} >= {"round-00002.parquet", "round-00003.parquet"}
    assert hfadvisor.load_run(run).num_rows == 13


def test_readme_left_behind_by_a_kill_is_brought_up_to_date(tmp_path):
    """README.md is copied after the revision record: a kill in between leaves the previous card."""
    out = tmp_path / "run"
    _make_run(out, 3)
    last, previous = (out / "cards" / "round-00003.md").read_bytes(), (out / "cards" / "round-00002.md").read_bytes()
    (out / "README.md").write_bytes(previous)
    RunStore.open(out)
    assert (out / "README.md").read_bytes() == last
    (out / "README.md").unlink()
    RunStore.open(out)
    assert (out / "README.md").read_bytes() == last
    (out / "README.md").write_bytes(last + b"\n## Human labels\n")  # refreshed later (label pull): kept
    RunStore.open(out)
    assert (out / "README.md").read_bytes().endswith(b"## Human labels\n")
    (out / "README.md").write_bytes(previous)
    RunStore.open(out, repair=False)  # read-only opens never write
    assert (out / "README.md").read_bytes() == previous
