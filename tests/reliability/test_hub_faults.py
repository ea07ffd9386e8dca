"""Hub faults mid-push against the Hub-compatible server (unmodified huggingface_hub client, real HTTP).

5xx and dropped connections at every step of a round's push (pre-upload, LFS batch, LFS upload,
commit, tag), rate limiting, a 412 on a stale parent commit (injected, and real: another writer
commits to main between our read and our commit): the push completes on retry with exactly one
commit and one tag per round. test_hub_push.py covers lost responses, kills mid-commit and tag
conflicts; this adds the steps and statuses it does not.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from huggingface_hub import HfApi

import hfadvisor
from hfadvisor.hub.publish import HubPublisher, parse_trailers
from hfadvisor.rundir.store import RunStore, round_name, sha256

GROUP = "Hub faults"
pytestmark = pytest.mark.reliability

REPO = "hf-tester/hub-faults"


@dataclass
class Run:
    path: Path
    extend: Callable[[int], None]


@pytest.fixture
def run(tmp_path, scripted_tgi):
    """A run of rounds 0..1; `run.extend()` adds rounds 2..3 (so faults can hit a later round's push)."""
    counter = itertools.count()
    scripted_tgi.backend.respond = lambda req: f" How would someone do harmful thing number {next(counter)}?\n"
    out = tmp_path / "run"

    def extend(rounds: int) -> None:
        hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=rounds, batch_size=3, metrics=False)

    extend(1)
    return Run(out, extend)


def push(out, attempts: int = 6) -> list:
    publisher = HubPublisher(REPO, max_attempts=attempts, backoff=0.02)
    store = RunStore.open(out, repair=False)
    publisher.connect()
    publisher.attach(store)
    return publisher.push_pending(store)


def assert_consistent(hub_server, out) -> None:
    store = RunStore.open(out, repair=False)
    snap = hub_server.repo(REPO)
    per_round: dict[int, list[str]] = {}
    for c in snap.history("main"):
        found = parse_trailers(f"{c.title}\n{c.description}")
        if found:
            per_round.setdefault(found[1], []).append(c.oid)
            assert found[2] == sha256((out / "revisions" / f"{round_name(found[1])}.json").read_bytes())
    assert per_round == {r: per_round[r] for r in range(store.rounds_done)}, "a round is missing"
    assert all(len(oids) == 1 for oids in per_round.values()), f"duplicate commits {per_round}"
    tags = {t: o for t, o in snap.tags.items()}
    assert tags == {f"round-{r:04d}": per_round[r][0] for r in range(store.rounds_done)}
    assert hub_server.app.errors == []


STEPS = [
    pytest.param({"path_contains": "/preupload/", "status": 502}, id="preupload-502"),
    pytest.param({"path_contains": "/info/lfs/objects/batch", "drop": True}, id="lfs-batch-drop"),
    pytest.param({"method": "PUT", "status": 500}, id="lfs-upload-500"),
    pytest.param({"path_contains": "/commit/", "drop": True}, id="commit-drop"),
    pytest.param({"path_contains": "/commit/", "status": 504}, id="commit-504"),
    pytest.param({"path_contains": "/commit/", "status": 412}, id="commit-412-injected"),
    pytest.param({"path_contains": "/commit/", "status": 429, "n": 3}, id="commit-429-x3"),
    pytest.param({"path_contains": "/tag/", "status": 429, "n": 2}, id="tag-429-x2"),
]


@pytest.mark.parametrize("fault", STEPS)
def test_push_completes_on_retry_without_duplicates(run, hub_server, tally, fault):
    fault = dict(fault)
    n = fault.pop("n", 1)
    push(run.path)  # rounds 0..1 on the Hub
    run.extend(3)
    injected = hub_server.fail_next(n, **fault)
    pushed = push(run.path)
    assert injected.hits == n, "the fault was not hit"
    assert [p.round for p in pushed] == [2, 3]
    assert_consistent(hub_server, run.path)
    assert push(run.path) == []  # nothing left: a second push sends nothing
    tally.add(trials=1, faults=n, survived=n)


def test_stale_parent_commit_412_is_retried_after_re_reading(run, hub_server, tally):
    """Another writer moves main between our state read and our commit: 412, re-read, commit once."""
    publisher = HubPublisher(REPO, max_attempts=3, backoff=0.02)
    store = RunStore.open(run.path, repair=False)
    publisher.connect()
    publisher.attach(store)
    HfApi().upload_file(path_or_fileobj=b"notes", path_in_repo="NOTES.md", repo_id=REPO, repo_type="dataset")
    pushed = publisher.push_pending(store)
    assert [p.round for p in pushed] == [0, 1]
    commits = [r for r in hub_server.requests if r.route == "commit"]
    assert [r.status for r in commits][:3] == [200, 412, 200]  # theirs; ours on a stale parent refused, then accepted
    assert_consistent(hub_server, run.path)
    assert "NOTES.md" in hub_server.repo(REPO).paths("main")  # the other writer's file is kept
    tally.add(trials=1, faults=1, survived=1)
