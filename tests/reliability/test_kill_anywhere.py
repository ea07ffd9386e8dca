"""Kill anywhere: SIGKILL a real `hfadvisor run --push-to-hub` process at chosen moments, resume, check.

One run directory and one Hub repo live through all trials: each trial starts the same command
(which resumes the run), waits for the moment it aims at, and SIGKILLs the process there:

* run start: as soon as `run.json` appears (round 0 may or may not be committed);
* generation: after k more calls reached the scripted model (its answers take 20 ms);
* shard write: as soon as a shard/card temp file, or a round's shard without its revision, appears;
* manifest update: as soon as a revision temp file, or a new revision record, appears;
* Hub push: while a commit, tag, pre-upload or LFS request is held by the Hub server (a delay
  fault widens the window), i.e. mid-push.

Where the kill actually landed is classified afterwards from what it left behind (temp files, a
shard without revision, a stale README, rounds not yet tagged on the Hub). After every kill the
test reads what the killed process had committed (revision records, shard sha256, row ids) from
disk itself, before anything reopens the run; a kill is survived when, after the repair the next
session does, every one of those rounds is still there byte for byte (rows lost counts their
rows that are not), no row id or prompt twice, and the Hub repo consistent (at most one
commit per round, each tag on its round's commit, each commit naming the local revision's
sha256). The seed is printed; set HFADVISOR_KILL_SEED to replay a sequence.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import pytest

from hfadvisor.hub.publish import parse_trailers
from hfadvisor.rundir.store import RunStore, round_name, sha256
from tests.helpers import cli
from tests.reliability.disk import Round, check, committed

GROUP = "Kill anywhere (SIGKILL + resume, Hub push)"
UNITS = ("a session killed (or a torn state built), then resumed", "one SIGKILL, or one exact torn state")
pytestmark = pytest.mark.reliability

TRIALS = 50
SEED = int(os.environ.get("HFADVISOR_KILL_SEED", "20241017"))
REPO = "hf-tester/kill-anywhere"
PHASES = ["generation", "shard write", "manifest update", "hub push"]
WAIT = 120.0  # seconds a trial may wait for its moment before the test fails (only when stuck)


def _names(d: Path) -> list[str]:
    try:
        return os.listdir(d)
    except FileNotFoundError:
        return []


def _revisions(out: Path) -> int:
    return sum(1 for n in _names(out / "revisions") if n.startswith("round-") and n.endswith(".json"))


def _tmp(out: Path, *subs: str) -> bool:
    return any(".tmp" in n for sub in subs for n in _names(out / sub))


def _wait(proc: subprocess.Popen, pred: Callable[[], bool], log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not pred():
        if proc.poll() is not None:
            pytest.fail(f"the run exited ({proc.returncode}) before the kill:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the moment never came:\n{log.read_text()[-3000:]}")
        time.sleep(0.0005)


def _aim(phase: str, proc: subprocess.Popen, out: Path, log: Path, backend, after: int, k: int, fault, rng) -> None:
    """Return at the moment `phase` aims at, once the run has `after` complete rounds."""
    if phase == "run start":
        _wait(proc, lambda: (out / "run.json").exists(), log)
    elif phase == "generation":
        _wait(proc, lambda: _revisions(out) >= after, log)
        calls0 = len(backend.calls)
        _wait(proc, lambda: len(backend.calls) >= calls0 + k, log)
    elif phase == "shard write":

        def shard_written() -> bool:
            n = _revisions(out)
            return n >= after and (
                _tmp(out, "data", "rejects", "cards") or (out / "cards" / f"{round_name(n)}.md").exists()
            )

        _wait(proc, shard_written, log)
    elif phase == "manifest update":
        _wait(proc, lambda: _tmp(out, "revisions") or _revisions(out) > after, log)
    else:  # hub push: a request of the push is held by the Hub (the delay fault); kill within it
        _wait(proc, lambda: fault.hits >= 1, log)
        time.sleep(rng.uniform(0, fault.delay))


def _landed(out: Path, tagged: int) -> str:
    """Where the kill landed, from what it left (looked at before the next open repairs anything)."""
    if _tmp(out, "revisions") or any(n.startswith(".README") for n in _names(out)):
        return "manifest update"
    if _tmp(out, "data", "rejects", "cards"):
        return "shard write"
    n = _revisions(out)
    if (out / "cards" / f"{round_name(n)}.md").exists() or (out / "data" / f"{round_name(n)}.parquet").exists():
        return "shard write"  # the round's files are written, its revision record is not
    readme = out / "README.md"
    if n and (not readme.exists() or readme.read_bytes() != (out / "cards" / f"{round_name(n - 1)}.md").read_bytes()):
        return "manifest update"  # the revision is written, the README copy not yet
    if n == 0:
        return "run start"
    if tagged < n:
        return "hub push"
    return "generation"


def _hub_rounds(hub_server, out: Path, local: int) -> int:
    """Check the Hub repo against the local run; returns how many rounds are committed and tagged."""
    snap = hub_server.repo(REPO)
    assert snap.private is True
    commits: dict[int, list[str]] = collections.defaultdict(list)
    for c in snap.history("main"):
        found = parse_trailers(f"{c.title}\n{c.description}")
        if found is None:
            continue
        _, r, digest = found
        commits[r].append(c.oid)
        assert r < local, f"round {r} is on the Hub but not complete locally"
        assert digest == sha256((out / "revisions" / f"{round_name(r)}.json").read_bytes()), f"round {r} differs"
    assert all(len(oids) == 1 for oids in commits.values()), f"duplicate commits: {dict(commits)}"
    assert sorted(commits) == list(range(len(commits))), "Hub rounds are not a prefix of the run"
    tags = {t: oid for t, oid in snap.tags.items() if t.startswith("round-")}
    for tag, oid in tags.items():
        r = int(tag.removeprefix("round-"))
        assert commits.get(r) == [oid], f"{tag} is not on round {r}'s commit"
    assert len(set(tags.values())) == len(tags), "two tags on one commit"
    tagged = 0
    while f"round-{tagged:04d}" in tags:
        tagged += 1
    assert len(tags) == tagged, f"tags are not a prefix: {sorted(tags)}"
    return tagged


def _check_run(out: Path, kept: dict[int, Round]) -> tuple[int, list[str], int]:
    """Repair-open as the next session does, then compare with the test's own record `kept` (what
    every killed process had committed, read from disk before the restart): (rounds, problems, rows lost)."""
    RunStore.open(out)  # what the next session does first: drop leftovers of the killed round
    RunStore.open(out, repair=False)  # nothing left to repair: every shard's sha256 verified
    problems, lost = check(out, kept)
    return len(committed(out)), problems, lost


@pytest.mark.timeout(420)
def test_kill_anywhere_then_resume(tmp_path, scripted_tgi, hub_server, tally, capsys):
    counter = iter(range(10**7))
    scripted_tgi.backend.respond = lambda req: f" Generated request number {next(counter)} for the kill trials\n"
    scripted_tgi.backend.delay = 0.02
    out = tmp_path / "run"
    log = tmp_path / "stderr.log"
    args = [sys.executable, "-m", "hfadvisor", "run", str(out), "-e", scripted_tgi.url, "--batch-size", "4"]
    args += ["--push-to-hub", REPO, "--no-metrics", "--max-attempts", "3"]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    rng = random.Random(SEED)
    with capsys.disabled():
        print(f"\nkill-anywhere seed: {SEED} (HFADVISOR_KILL_SEED replays it)")
    kept: dict[int, Round] = {}
    failures: list[str] = []
    aimed: collections.Counter[str] = collections.Counter()
    landed: collections.Counter[str] = collections.Counter()
    lost_total = 0
    t_start = time.monotonic()
    for trial in range(TRIALS):
        phase = "run start" if trial == 0 else PHASES[(trial - 1) % len(PHASES)]
        aimed[phase] += 1
        hub_server.clear_faults()
        start_rounds = _revisions(out)
        fault = None
        if phase == "hub push":
            route = rng.choice(["/commit/", "/tag/", "/preupload/", "/info/lfs/objects/batch"])
            fault = hub_server.fail_next(1, status=None, path_contains=route, delay=rng.uniform(0.1, 0.4))
        skip = rng.randint(0, 1)  # rounds to let pass before aiming (kills land in later rounds too)
        k = rng.randint(1, 6)
        with log.open("w") as err:
            proc = subprocess.Popen([*args, "--rounds", "10000"], env=env, stdout=subprocess.DEVNULL, stderr=err)
        _aim(phase, proc, out, log, scripted_tgi.backend, start_rounds + skip, k, fault, rng)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if fault is not None:
            time.sleep(fault.delay + 0.05)  # the Hub finishes what it was sent, as a real one would
        kept |= committed(out)  # what the killed process had committed, read before anything reopens the run
        local = _revisions(out)
        tagged = _hub_rounds(hub_server, out, local) if local else 0
        where = _landed(out, tagged)
        landed[where] += 1
        done, problems, lost = _check_run(out, kept)
        if done:
            _hub_rounds(hub_server, out, done)
        tally.trial()
        tally.fault(survived=not problems and lost == 0)
        tally.lost(lost)
        failures += [f"trial {trial} ({where}): {p}" for p in problems]
        lost_total += lost

    # the last session completes the run (one more round) and the Hub catches up with every round
    final = cli(*args[3:], "--rounds", str(_revisions(out)), env={"NO_PROXY": "127.0.0.1,localhost"})
    assert final.returncode == 0, final.stderr
    done, problems, lost = _check_run(out, kept)
    assert (failures, problems, lost_total + lost) == ([], [], 0)
    assert done == len(kept) + 1  # every round committed at any kill, and the one this session added
    assert _hub_rounds(hub_server, out, done) == done
    store = RunStore.open(out, repair=False)
    assert (out / "README.md").read_bytes() == (out / "cards" / f"{round_name(done - 1)}.md").read_bytes()
    assert datasets.load_dataset(REPO, split="train").num_rows == store.table().num_rows
    assert [r.route for r in hub_server.unknown_requests] == [] and hub_server.app.errors == []
    elapsed = time.monotonic() - t_start
    summary = (
        f"seed {SEED}: {TRIALS} kills over {done} rounds in {elapsed:.0f}s; aimed at {dict(aimed)}; "
        f"landed in {dict(landed)}"
    )
    tally.note(summary)
    with capsys.disabled():
        print(summary)
    assert landed["generation"] and landed["hub push"] and landed["shard write"] + landed["manifest update"]
