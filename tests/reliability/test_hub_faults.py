"""Hub faults mid-push against the Hub-compatible server (unmodified huggingface_hub client, real HTTP).

5xx and dropped connections at every step of a round's push (pre-upload, LFS batch, LFS upload,
commit, tag), rate limiting, a 412 on a stale parent commit (injected, and real: another writer
commits to main between our read and our commit): the push completes on retry with exactly one
commit and one tag per round. test_hub_push.py covers lost responses, kills mid-commit and tag
conflicts; this adds the steps and statuses it does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from huggingface_hub import HfApi

import hfadvisor
from hfadvisor.hub.publish import HubPublisher, parse_trailers
from hfadvisor.rundir.store import RunStore
from tests.reliability.disk import committed
from tests.test_loop import Script

GROUP = "Hub faults"
UNITS = ("a push of pending rounds", "one Hub request the server failed (status, dropped connection or stale parent)")
pytestmark = pytest.mark.reliability

REPO = "hf-tester/hub-faults"


@dataclass
class Run:
    path: Path
    extend: Callable[[int], None]


@pytest.fixture
def run(tmp_path, scripted_tgi):
    """A run of rounds 0..1; `run.extend()` adds rounds 2..3 (so faults can hit a later round's push)."""
    scripted_tgi.backend.respond = Script()  # answers each stage in its own form
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


def hub_problems(hub_server, out) -> list[str]:
    """The Hub repo against the run's revision records read from disk: one commit and one tag per round,
    each commit naming the sha256 of that round's revision file (hashed here)."""
    rounds = committed(out)
    snap = hub_server.repo(REPO)
    per_round: dict[int, list[str]] = {}
    problems = []
    for c in snap.history("main"):
        found = parse_trailers(f"{c.title}\n{c.description}")
        if found:
            per_round.setdefault(found[1], []).append(c.oid)
            if found[1] not in rounds or found[2] != rounds[found[1]].revision_sha256:
                problems.append(f"round {found[1]}: the commit names another revision")
    if sorted(per_round) != sorted(rounds):
        problems.append(f"rounds on the Hub {sorted(per_round)}, on disk {sorted(rounds)}")
    problems += [f"round {r}: {len(o)} commits" for r, o in per_round.items() if len(o) != 1]
    tags = dict(snap.tags)
    if tags != {f"round-{r:04d}": oids[0] for r, oids in per_round.items()}:
        problems.append(f"tags {sorted(tags)} are not one per round commit")
    return problems + [f"server error: {e}" for e in hub_server.app.errors]


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
    problems = hub_problems(hub_server, run.path)
    tally.trial()
    tally.fault(survived=not problems and [p.round for p in pushed] == [2, 3], n=injected.hits)
    assert injected.hits == n, "the fault was not hit"
    assert [p.round for p in pushed] == [2, 3] and problems == []
    assert push(run.path) == []  # nothing left: a second push sends nothing


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
    stale = sum(1 for r in commits if r.status == 412)
    problems = hub_problems(hub_server, run.path)
    kept = "NOTES.md" in hub_server.repo(REPO).paths("main")  # the other writer's file is kept
    tally.trial()
    tally.fault(survived=not problems and kept and [p.round for p in pushed] == [0, 1], n=stale)
    assert [r.status for r in commits][:3] == [200, 412, 200]  # theirs; ours on a stale parent refused, then accepted
    assert problems == [] and kept and stale == 1
