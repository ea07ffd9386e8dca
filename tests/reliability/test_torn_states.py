"""The states a kill can leave at the edges of a run, built exactly and resumed through the CLI.

The random kills of test_kill_anywhere hit these windows only sometimes (they are milliseconds
wide): the run directory right after `run.json` and before round 0's revision, a temp file of
`run.json` itself, a torn shard, a torn or half-renamed revision record, a stale README.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

import hfadvisor
from hfadvisor.rundir.store import round_name
from tests.helpers import cli
from tests.reliability.disk import Round, check, committed

GROUP = "Kill anywhere (SIGKILL + resume, Hub push)"
UNITS = ("a session killed (or a torn state built), then resumed", "one SIGKILL, or one exact torn state")
pytestmark = pytest.mark.reliability


@pytest.fixture
def model(scripted_tgi):
    counter = itertools.count()
    scripted_tgi.backend.respond = lambda req: f" Generated request number {next(counter)} for torn states\n"
    return scripted_tgi


def _run(path: Path, url: str, *extra: str):
    return cli("run", str(path), "-e", url, "--batch-size", "3", "--no-metrics", *extra)


def _survived(path: Path, rounds: int, before: dict[int, Round], proc) -> tuple[bool, int]:
    """(survived, rows lost): the rerun exited 0 with rounds 0..`rounds` committed, and every round of
    the test's record taken before the rerun is still there byte for byte (read without hfadvisor)."""
    problems, lost = check(path, before)
    return proc.returncode == 0 and not problems and len(committed(path)) == rounds + 1, lost


def test_killed_before_round_0_then_resumed(tmp_path, model, tally):
    """run.json written, round 0 not: the rerun writes round 0 and goes on (was an AssertionError traceback)."""
    full = tmp_path / "full"
    hfadvisor.run(full, endpoints=[model.url], rounds=1, batch_size=3, metrics=False)
    torn = tmp_path / "torn"
    torn.mkdir()
    shutil.copy(full / "run.json", torn / "run.json")
    (torn / "data").mkdir()
    shutil.copy(full / "data" / "round-00000.parquet", torn / "data" / "round-00000.parquet")  # no revision yet
    before = committed(torn)
    assert before == {}  # nothing committed yet: the rerun has nothing to keep but run.json's identity
    proc = _run(torn, model.url, "--rounds", "2")
    ok, lost = _survived(torn, 2, before, proc)
    same_run = (
        json.loads((torn / "run.json").read_bytes())["run_id"] == json.loads((full / "run.json").read_bytes())["run_id"]
    )
    tally.trial()
    tally.fault(survived=ok and same_run)
    tally.lost(lost)
    assert ok and same_run, proc.stderr  # the same run resumed, not a new one


def test_killed_while_writing_run_json_then_rerun(tmp_path, model, tally):
    """Only a temp file of run.json: the directory is still usable for the same command."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".run.json.tmp4242").write_text('{"format": 1, "run_')
    proc = _run(out, model.url, "--rounds", "1")
    ok, lost = _survived(out, 1, {}, proc)
    ok = ok and not list(out.glob(".*tmp*"))
    tally.trial()
    tally.fault(survived=ok)
    tally.lost(lost)
    assert ok, proc.stderr


def test_torn_files_of_the_last_round_are_detected_and_the_round_redone(tmp_path, model, tally):
    """A shard cut short or a revision half-written: detected by sha256 / parsing, set aside, the round redone."""
    out = tmp_path / "run"
    hfadvisor.run(out, endpoints=[model.url], rounds=3, batch_size=3, metrics=False)
    before = committed(out)
    before.pop(3)  # round 3's files get torn below: rounds 0..2 must survive, round 3 be redone
    shard = out / "data" / f"{round_name(3)}.parquet"
    shard.write_bytes(shard.read_bytes()[: len(shard.read_bytes()) // 2])  # torn by a crash without fsync
    proc = _run(out, model.url)
    ok, lost = _survived(out, 3, before, proc)
    ok = ok and bool(list((out / ".corrupt").rglob(shard.name)))  # the torn shard is kept aside, not deleted
    tally.trial()
    tally.fault(survived=ok)
    tally.lost(lost)
    assert ok, proc.stderr
    rev = out / "revisions" / f"{round_name(3)}.json"
    rev.write_text(rev.read_text()[:40])  # a torn manifest record (e.g. a copy interrupted)
    proc = _run(out, model.url)
    ok, lost = _survived(out, 3, before, proc)
    tally.trial()
    tally.fault(survived=ok)
    tally.lost(lost)
    assert ok, proc.stderr
