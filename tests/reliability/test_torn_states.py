"""The states a kill can leave at the edges of a run, built exactly and resumed through the CLI.

The random kills of test_kill_anywhere hit these windows only sometimes (they are milliseconds
wide): the run directory right after `run.json` and before round 0's revision, a temp file of
`run.json` itself, a torn shard, a torn or half-renamed revision record, a stale README.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

import hfadvisor
from hfadvisor.rundir.store import RunStore, round_name
from tests.helpers import cli

GROUP = "Kill anywhere (SIGKILL + resume, Hub push)"
pytestmark = pytest.mark.reliability


@pytest.fixture
def model(scripted_tgi):
    counter = itertools.count()
    scripted_tgi.backend.respond = lambda req: f" Generated request number {next(counter)} for torn states\n"
    return scripted_tgi


def _run(path: Path, url: str, *extra: str):
    return cli("run", str(path), "-e", url, "--batch-size", "3", "--no-metrics", *extra)


def _complete(path: Path, rounds: int) -> None:
    store = RunStore.open(path, repair=False)
    assert store.rounds_done == rounds + 1
    ds = hfadvisor.load_run(path)
    assert len(set(ds["id"])) == ds.num_rows and len(set(ds["prompt"])) == ds.num_rows


def test_killed_before_round_0_then_resumed(tmp_path, model, tally):
    """run.json written, round 0 not: the rerun writes round 0 and goes on (was an AssertionError traceback)."""
    full = tmp_path / "full"
    hfadvisor.run(full, endpoints=[model.url], rounds=1, batch_size=3, metrics=False)
    torn = tmp_path / "torn"
    torn.mkdir()
    shutil.copy(full / "run.json", torn / "run.json")
    (torn / "data").mkdir()
    shutil.copy(full / "data" / "round-00000.parquet", torn / "data" / "round-00000.parquet")  # no revision yet
    proc = _run(torn, model.url, "--rounds", "2")
    assert proc.returncode == 0, proc.stderr
    _complete(torn, 2)
    assert RunStore.open(torn).info.run_id == RunStore.open(full).info.run_id  # the same run, not a new one
    tally.add(trials=1, faults=1, survived=1)


def test_killed_while_writing_run_json_then_rerun(tmp_path, model, tally):
    """Only a temp file of run.json: the directory is still usable for the same command."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".run.json.tmp4242").write_text('{"format": 1, "run_')
    proc = _run(out, model.url, "--rounds", "1")
    assert proc.returncode == 0, proc.stderr
    _complete(out, 1)
    assert not list(out.glob(".*tmp*"))
    tally.add(trials=1, faults=1, survived=1)


def test_torn_files_of_the_last_round_are_detected_and_the_round_redone(tmp_path, model, tally):
    """A shard cut short or a revision half-written: detected by sha256 / parsing, set aside, the round redone."""
    out = tmp_path / "run"
    hfadvisor.run(out, endpoints=[model.url], rounds=3, batch_size=3, metrics=False)
    before = {r: (out / "data" / f"{round_name(r)}.parquet").read_bytes() for r in range(3)}
    shard = out / "data" / f"{round_name(3)}.parquet"
    shard.write_bytes(shard.read_bytes()[: len(shard.read_bytes()) // 2])  # torn by a crash without fsync
    proc = _run(out, model.url)
    assert proc.returncode == 0, proc.stderr
    _complete(out, 3)
    assert list((out / ".corrupt").rglob(shard.name)), "the torn shard is kept aside, not deleted"
    rev = out / "revisions" / f"{round_name(3)}.json"
    rev.write_text(rev.read_text()[:40])  # a torn manifest record (e.g. a copy interrupted)
    proc = _run(out, model.url)
    assert proc.returncode == 0, proc.stderr
    _complete(out, 3)
    for r, data in before.items():
        assert (out / "data" / f"{round_name(r)}.parquet").read_bytes() == data
    tally.add(trials=2, faults=2, survived=2)
