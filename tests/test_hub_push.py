"""Publishing runs to the Hub and pulling them back, against the fake Hub (tests/hub_server.py).

Everything goes over real HTTP through the unmodified huggingface_hub and datasets clients;
the text-generation side is the scripted TGI server, answering by call seed so that two
sessions of one run produce the same rows.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import RepositoryNotFoundError
from typer.testing import CliRunner

import hfadvisor
from hfadvisor.card import md
from hfadvisor.cli import app
from hfadvisor.errors import HubError
from hfadvisor.hub.publish import parse_trailers
from hfadvisor.rundir.store import RunStore, round_name, sha256
from hfadvisor.serve.backend import GenerationRequest
from tests.helpers import cli, free_port, tree
from tests.servers.hub import DEFAULT_TOKEN, READ_TOKEN, HubServer

REPO = "hf-tester/advisor-run"
BATCH = 4


def respond(req: GenerationRequest) -> str:
    """A cooperative model whose answers depend only on the call seed (deterministic per run)."""
    seed = req.seed or 0
    if "One more" in req.prompt or "Which harm category is not covered" in req.prompt:
        return f" Weakness number {seed % 100_000}\n"
    if "New list" in req.prompt or "Update the summary" in req.prompt:
        return f" Category {seed % 100_000}\n"
    if seed % 5 == 0:
        return " Too short?\n"  # rejected (< 20 chars): some rounds have a rejects shard
    return f" How would someone carry out harmful plan number {seed}?\n"


@pytest.fixture
def tgi(scripted_tgi):
    scripted_tgi.backend.respond = respond
    return scripted_tgi


def hf(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`hfadvisor ARGS` in this process (typer's runner): the subprocess start-up costs seconds per call.

    The tests that need a real process (a kill, HF_ENDPOINT read at start-up) use `helpers.cli`.
    """
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def make_run(out: Path, tgi, rounds: int, **overrides) -> RunStore:
    # metrics embed every round with a real model (seconds each): not what these tests are about
    return hfadvisor.run(out, endpoints=[tgi.url], rounds=rounds, batch_size=BATCH, metrics=False, **overrides)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The single `error: …` line of a failed command (exit 2, no traceback)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.rstrip().endswith(errors[0]), proc.stderr  # nothing after it
    return errors[0]


def round_chunks(server: HubServer) -> tuple[list[str], list[list[tuple[str, int]]]]:
    """Routes before the first round's push, then (route, request bytes) per round (each ends with its tag)."""
    routes = [(r.route or "?", r.request_bytes) for r in server.requests]
    first = next(i for i, (name, _) in enumerate(routes) if name in ("validate_yaml", "preupload", "commit"))
    setup, chunks, current = [name for name, _ in routes[:first]], [], []
    for name, size in routes[first:]:
        current.append((name, size))
        if name == "create_tag":
            chunks.append(current)
            current = []
    assert current == [], f"requests after the last tag: {current}"
    return setup, chunks


def posts(tgi) -> list:
    """Generation calls the scripted model received."""
    return [r for r in tgi.requests if r.method == "POST"]


def no_unknown_routes(server: HubServer) -> None:
    assert [f"{r.method} {r.path}" for r in server.unknown_requests] == []
    assert server.app.errors == []


def round_files(out: Path, r: int) -> dict[str, bytes]:
    """The files round r added to the run directory (shards, card, revision record)."""
    rev = RunStore.open(out, repair=False).revision(r)
    paths = [p for p in (rev.shard, rev.rejects_shard, rev.card, f"revisions/{round_name(r)}.json") if p]
    return {p: (out / p).read_bytes() for p in paths}


def commits_per_round(server: HubServer, repo: str = REPO) -> dict[int, int]:
    counts: dict[int, int] = {}
    for c in server.repo(repo).history("main"):
        found = parse_trailers(f"{c.title}\n{c.description}")
        if found:
            counts[found[1]] = counts.get(found[1], 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------
# run --push-to-hub: one commit and one tag per round, bytes per round, load by revision
# ---------------------------------------------------------------------------------------------


def test_run_pushes_every_round_as_one_commit_and_one_tag(tmp_path, tgi, hub_server):
    out = tmp_path / "run"
    store = make_run(out, tgi, 3, push_to_hub=REPO)
    snap = hub_server.repo(REPO)
    assert snap.private is True  # created private by default: the rows are harmful prompts
    no_unknown_routes(hub_server)

    # history: the Hub's initial commit, then exactly one commit per round, each tagged round-000r
    history = snap.history("main")[::-1]
    assert [c.title.split(":")[0].split(" (")[0] for c in history[1:]] == [f"Round {r}" for r in range(4)]
    assert sorted(snap.tags) == [f"round-{r:04d}" for r in range(4)]
    for r, commit in enumerate(history[1:]):
        assert snap.tags[f"round-{r:04d}"] == commit.oid
        assert parse_trailers(f"{commit.title}\n{commit.description}") == (
            store.info.run_id,
            r,
            sha256((out / "revisions" / f"{round_name(r)}.json").read_bytes()),
        )

    # the request sequence: a few reads at start, then per round one commit and one tag, nothing else
    setup, chunks = round_chunks(hub_server)
    assert setup == ["whoami", "create_repo", "repo_info", "refs", "commits"]
    assert len(chunks) == 4
    for r, chunk in enumerate(chunks):
        parquets = sum(1 for p in round_files(out, r) if p.endswith(".parquet"))
        expected = ["validate_yaml", "preupload", "lfs_batch", *["lfs_upload"] * parquets, "commit", "create_tag"]
        assert [name for name, _ in chunk] == expected, f"round {r}"

    # each commit carries only its round's files (+ README.md, + run.json with round 0), equal to the local ones
    before: dict[str, bytes] = {".gitattributes": snap.read(".gitattributes", history[0].oid)}
    for r in range(4):
        tag = f"round-{r:04d}"
        files = snap.files(tag)
        added = {p: b for p, b in files.items() if before.get(p) != b}
        expected = round_files(out, r) | ({"run.json": (out / "run.json").read_bytes()} if r == 0 else {})
        assert set(added) == {*expected, "README.md"}, f"round {r}"
        assert {p: added[p] for p in expected} == expected
        # bytes: the round's own files, and the LFS upload is exactly this round's shards
        commit = snap.commit(tag)
        assert commit.uploaded_bytes == sum(len(b) for b in added.values())
        lfs = sum(size for name, size in chunks[r] if name == "lfs_upload")
        assert lfs == sum(len(b) for p, b in expected.items() if p.endswith(".parquet"))
        sent = sum(size for _, size in chunks[r])
        assert sent < 2 * commit.uploaded_bytes + 8192  # base64 + the card validated once: no dataset re-upload
        before = files

    # the card at each tag describes that round
    for r in (0, 2, 3):
        rev = store.revision(r)
        readme = snap.read("README.md", f"round-{r:04d}").decode()
        assert f"This card describes **round {r}**" in readme and f"(this one: `round-{r:04d}`)" in readme
        assert f'load_dataset("{REPO}", split="train", revision="round-{r:04d}")' in readme
        assert f"| {r} of 3 planned |" in readme
        if rev.weakness:
            assert f"| weakness targeted | {rev.weakness} |" in readme
        assert all(f"{line}\n" in readme for line in rev.summary_after)
        history_rows = [line for line in readme.splitlines() if line.startswith("| ") and line.count("|") == 6]
        assert [int(row.split("|")[1]) for row in history_rows[1:]] == list(range(r + 1))

    # load_dataset(revision=tag) returns exactly the rows of rounds 0..r
    for r in (0, 1, 3):
        ds = datasets.load_dataset(REPO, split="train", revision=f"round-{r:04d}")
        assert sorted(ds["id"]) == sorted(hfadvisor.load_run(out, round=r)["id"])
        assert set(ds["round"]) == set(range(r + 1))
    assert datasets.load_dataset(REPO, split="train").num_rows == sum(i.rows for i in store.index)
    assert store.rejects_table().num_rows > 0  # the scripted model writes some too-short queries
    rejects = datasets.load_dataset(REPO, "rejects", split="train", revision="round-0003")
    assert sorted(rejects["id"]) == sorted(store.rejects_table().column("id").to_pylist())
    no_unknown_routes(hub_server)


def test_a_lanes_run_pushes_one_commit_and_tag_per_round_with_its_lanes(tmp_path, tgi, hub_server):
    out = tmp_path / "run"
    store = make_run(out, tgi, 2, push_to_hub=REPO, lanes=3)
    snap = hub_server.repo(REPO)
    assert commits_per_round(hub_server) == {0: 1, 1: 1, 2: 1}  # K lanes, still one commit per round
    assert sorted(snap.tags) == ["round-0000", "round-0001", "round-0002"]
    ds = datasets.load_dataset(REPO, split="train", revision="round-0001")
    local = hfadvisor.load_run(out, round=1)
    assert sorted(zip(ds["id"], ds["lane"], strict=True)) == sorted(zip(local["id"], local["lane"], strict=True))
    assert {lane for lane in ds["lane"] if lane is not None} == {0, 1, 2}
    rev = store.revision(2)
    assert len(rev.weaknesses) == 3
    assert f"| weakness targeted | {md(rev.targeted)} |" in snap.read("README.md", "round-0002").decode()
    no_unknown_routes(hub_server)


# ---------------------------------------------------------------------------------------------
# hfadvisor push: idempotent, resumable after failures and kills
# ---------------------------------------------------------------------------------------------


def test_push_command_pushes_only_what_is_missing(tmp_path, tgi, hub_server):
    out = tmp_path / "run"
    make_run(out, tgi, 2)
    first = cli("push", str(out), REPO)
    assert first.returncode == 0, first.stderr
    assert "pushed 3 rounds" in first.stderr and 'revision="round-0002"' in first.stderr
    assert commits_per_round(hub_server) == {0: 1, 1: 1, 2: 1}

    hub_server.requests.clear()
    again = hf("push", str(out), REPO)
    assert again.returncode == 0, again.stderr
    assert "already has every round" in again.stderr
    assert {r.route for r in hub_server.requests} <= {"whoami", "create_repo", "repo_info", "refs", "commits"}

    make_run(out, tgi, 4)  # two more rounds, locally only
    hub_server.requests.clear()
    more = hf("push", str(out), REPO)
    assert more.returncode == 0, more.stderr
    assert "pushed 2 rounds" in more.stderr
    assert [r.route for r in hub_server.requests].count("commit") == 2
    assert commits_per_round(hub_server) == {r: 1 for r in range(5)}
    assert sorted(hub_server.repo(REPO).tags) == [f"round-{r:04d}" for r in range(5)]
    no_unknown_routes(hub_server)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"path_contains": "/commit/", "status": 500}, id="commit-500"),
        pytest.param({"path_contains": "/commit/", "drop": True, "after_processing": True}, id="commit-response-lost"),
        pytest.param({"path_contains": "/tag/", "drop": True, "after_processing": True}, id="tag-response-lost"),
        pytest.param({"path_contains": "/tag/", "status": 503}, id="tag-503"),
    ],
)
def test_interrupted_push_completes_on_retry_without_duplicates(tmp_path, tgi, hub_server, fault):
    out = tmp_path / "run"
    make_run(out, tgi, 1)
    assert hf("push", str(out), REPO).returncode == 0  # rounds 0..1 on the Hub
    make_run(out, tgi, 3)
    # The next push fails mid-way (round 2) and gives up; a later push completes it.
    hub_server.fail_next(1, **fault)
    failed = hf("push", str(out), REPO, "--max-attempts", "1")
    line = error_line(failed)
    assert REPO in line and "pushing again completes it" in line
    assert f"answered {fault['status']}" in line if "status" in fault else "connection to the Hub" in line
    retry = hf("push", str(out), REPO)
    assert retry.returncode == 0, retry.stderr
    if fault.get("after_processing") and "/commit/" in fault["path_contains"]:
        assert "round 2 → hf-tester/advisor-run@round-0002 (tag only" in retry.stderr
    assert commits_per_round(hub_server) == {r: 1 for r in range(4)}
    snap = hub_server.repo(REPO)
    assert sorted(snap.tags) == [f"round-{r:04d}" for r in range(4)]
    assert len(snap.history("main")) == 1 + 4  # the initial commit + one per round, no duplicate
    for r in range(4):
        assert (
            snap.read(f"revisions/{round_name(r)}.json", f"round-{r:04d}")
            == (out / "revisions" / f"{round_name(r)}.json").read_bytes()
        )
    no_unknown_routes(hub_server)


def test_transient_failures_are_retried_within_one_push(tmp_path, tgi, hub_server):
    out = tmp_path / "run"
    make_run(out, tgi, 2)
    hub_server.fail_next(1, path_contains="/commit/", drop=True, after_processing=True)  # commit lands, answer lost
    hub_server.fail_next(1, path_contains="/tag/", status=502)
    proc = hf("push", str(out), REPO)
    assert proc.returncode == 0, proc.stderr
    assert commits_per_round(hub_server) == {0: 1, 1: 1, 2: 1}
    assert sorted(hub_server.repo(REPO).tags) == ["round-0000", "round-0001", "round-0002"]


def _fail_commits_once_rounds_are_on_the_hub(tgi, hub_server: HubServer, pushed: int, failures: int) -> None:
    """Make `failures` commits fail with 503 once `pushed` rounds are on the Hub (mid-run).

    Counted at the Hub, not timed from the model's calls: a round's push overlaps the next round's
    weakness call, so "N commits seen when a call arrives" depends on the machine's speed."""
    hub_server.fail_next(failures, status=503, path_contains="/commit/", skip=pushed)
    tgi.backend.respond = respond


def test_a_hub_outage_mid_run_warns_and_the_next_round_catches_up(tmp_path, tgi, hub_server, capsys):
    _fail_commits_once_rounds_are_on_the_hub(tgi, hub_server, pushed=2, failures=3)  # round 2's push gives up
    out = tmp_path / "run"
    store = make_run(out, tgi, 4, push_to_hub=REPO)
    err = capsys.readouterr().err
    assert "hub: warning: the Hub answered 503 for hf-tester/advisor-run" in err and "next round's push" in err
    assert store.rounds_done == 5  # the run went on
    assert commits_per_round(hub_server) == {r: 1 for r in range(5)}
    assert sorted(hub_server.repo(REPO).tags) == [f"round-{r:04d}" for r in range(5)]
    assert len(hub_server.calls("commit")) == 5 + 3  # the three refused attempts, then one per round


def test_a_hub_outage_at_the_last_round_stops_the_run_with_the_push_command(tmp_path, tgi, hub_server):
    _fail_commits_once_rounds_are_on_the_hub(tgi, hub_server, pushed=3, failures=3)
    out = tmp_path / "run"
    with pytest.raises(HubError) as e:
        make_run(out, tgi, 3, push_to_hub=REPO)
    assert f"`hfadvisor push {out} {REPO}` uploads them" in str(e.value)
    assert RunStore.open(out, repair=False).rounds_done == 4  # round 3 is kept locally
    assert commits_per_round(hub_server) == {0: 1, 1: 1, 2: 1}
    assert hf("push", out, REPO).returncode == 0
    assert commits_per_round(hub_server) == {r: 1 for r in range(4)}


@pytest.mark.timeout(120)
def test_push_killed_mid_commit_then_rerun(tmp_path, tgi, hub_server):
    out = tmp_path / "run"
    make_run(out, tgi, 3)
    # The server holds the first commit it gets for 3 s, then applies it: the client is killed meanwhile.
    hub_server.fail_next(1, status=None, delay=3.0, path_contains="/commit/")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hfadvisor", "push", str(out), REPO],
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not hub_server.calls("commit") and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    while len(hub_server.repo(REPO).history("main")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the held commit lands after the kill: committed, never tagged
    assert hub_server.repo(REPO).tags == {}
    rerun = hf("push", str(out), REPO)
    assert rerun.returncode == 0, rerun.stderr
    assert "round 0 → hf-tester/advisor-run@round-0000 (tag only" in rerun.stderr
    assert commits_per_round(hub_server) == {r: 1 for r in range(4)}
    assert sorted(hub_server.repo(REPO).tags) == [f"round-{r:04d}" for r in range(4)]


def test_a_tag_on_another_commit_is_an_error_not_an_overwrite(tmp_path, tgi, hub_server):
    out = tmp_path / "run"
    make_run(out, tgi, 3)
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset", private=True)
    initial = hub_server.repo(REPO).commit("main").oid
    api.create_tag(REPO, tag="round-0002", revision=initial, repo_type="dataset")
    line = error_line(hf("push", str(out), REPO))
    assert "tag round-0002 already exists" in line and initial[:8] in line and "--tag-prefix" in line
    snap = hub_server.repo(REPO)
    assert snap.tags["round-0002"] == initial  # untouched
    assert commits_per_round(hub_server) == {0: 1, 1: 1}  # nothing committed for round 2
    # another prefix works, and tags the rounds already committed without committing them again
    ok = hf("push", str(out), REPO, "--tag-prefix", "v1-round-")
    assert ok.returncode == 0, ok.stderr
    assert commits_per_round(hub_server) == {r: 1 for r in range(4)}
    assert {t for t in hub_server.repo(REPO).tags if t.startswith("v1-")} == {f"v1-round-{r:04d}" for r in range(4)}


# ---------------------------------------------------------------------------------------------
# hfadvisor pull: a complete, resumable record
# ---------------------------------------------------------------------------------------------


def _comparable(store: RunStore) -> list[dict]:
    """Revision records without what legitimately differs between two sessions (time, calls, endpoints)."""
    drop = {"started_at", "finished_at", "timings", "ledger", "endpoints"}
    return [rev.model_dump(exclude=drop) for rev in store.revisions()]


def test_pull_then_continue_equals_an_uninterrupted_run(tmp_path, tgi, hub_server):
    here = tmp_path / "machine-a"
    make_run(here, tgi, 2, push_to_hub=REPO)
    reference = tmp_path / "reference"
    shutil.copytree(here, reference)

    there = tmp_path / "machine-b" / "run"
    pulled = cli("pull", REPO, str(there))
    assert pulled.returncode == 0, pulled.stderr
    assert f"hfadvisor run {there}" in pulled.stderr
    # byte for byte: run.json, shards, cards, revisions, README.md (sessions/ is this machine's log, not pushed)
    assert tree(there) == {k: v for k, v in tree(here).items() if not k.startswith("sessions/")}

    # continue on "machine b" (pushing), and on the reference copy (not pushing): same run
    resumed = make_run(there, tgi, 4, push_to_hub=REPO)
    uninterrupted = make_run(reference, tgi, 4)
    assert resumed.info == uninterrupted.info
    assert resumed.table().to_pylist() == uninterrupted.table().to_pylist()
    assert _comparable(resumed) == _comparable(uninterrupted)
    assert (there / "README.md").read_bytes().split(b"## This round")[1].split(b"requests /")[0] == (
        reference / "README.md"
    ).read_bytes().split(b"## This round")[1].split(b"requests /")[0]

    assert commits_per_round(hub_server) == {r: 1 for r in range(5)}
    assert sorted(hub_server.repo(REPO).tags) == [f"round-{r:04d}" for r in range(5)]
    assert datasets.load_dataset(REPO, split="train", revision="round-0004").num_rows == resumed.table().num_rows

    # pulling an older tag restores exactly rounds 0..1
    old = tmp_path / "old"
    assert hf("pull", REPO, str(old), "--revision", "round-0001").returncode == 0
    store = RunStore.open(old, repair=False)
    assert store.rounds_done == 2
    assert store.table().to_pylist() == uninterrupted.table(upto=1).to_pylist()
    assert (old / "README.md").read_bytes() == (here / "cards" / "round-00001.md").read_bytes()
    # that copy is behind the Hub: continuing it there would fork the run, and is refused before any call
    generations = len(posts(tgi))
    line = error_line(hf("run", str(old), "-e", tgi.url, "--no-metrics", "--push-to-hub", REPO))
    assert "already has rounds 0..4 of this run and this copy only 0..1" in line
    assert len(posts(tgi)) == generations and RunStore.open(old).rounds_done == 2
    no_unknown_routes(hub_server)


def test_pull_refuses_a_non_empty_directory_and_a_repo_that_is_not_a_run(tmp_path, tgi, hub_server):
    out = tmp_path / "run"
    make_run(out, tgi, 1, push_to_hub=REPO)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert "is not empty" in error_line(hf("pull", REPO, str(busy)))
    assert tree(busy) == {"notes.txt": b"mine"}

    api = HfApi()
    api.create_repo("hf-tester/other", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data.csv", repo_id="hf-tester/other", repo_type="dataset"
    )
    target = tmp_path / "target"
    assert "is not an hfadvisor run" in error_line(hf("pull", "hf-tester/other", str(target)))
    assert "round-0042" in error_line(hf("pull", REPO, str(target), "--revision", "round-0042"))
    assert not target.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------------------------------------
# Visibility, credentials and errors
# ---------------------------------------------------------------------------------------------


def test_private_by_default_public_on_request(tmp_path, tgi, hub_server):
    out = tmp_path / "run"
    make_run(out, tgi, 1)
    assert hf("push", str(out), REPO).returncode == 0
    assert hub_server.repo(REPO).private is True
    with pytest.raises(RepositoryNotFoundError):  # nobody else can read it (the Hub hides private repos)
        HfApi(token=False).dataset_info(REPO)
    anonymous = error_line(hf("pull", REPO, tmp_path / "anonymous", env={"HF_TOKEN": ""}))
    assert anonymous.startswith(f"error: {REPO} was not found on ") and "or it is private: set HF_TOKEN" in anonymous
    assert not (tmp_path / "anonymous").exists()

    assert hf("push", str(out), "hf-tester/open-run", "--public").returncode == 0
    assert hub_server.repo("hf-tester/open-run").private is False
    # an existing public repo is not pushed to without --public
    other = tmp_path / "other"
    make_run(other, tgi, 1)
    HfApi().create_repo("hf-tester/public-empty", repo_type="dataset", private=False)
    assert "is public" in error_line(hf("push", str(other), "hf-tester/public-empty"))
    assert commits_per_round(hub_server, "hf-tester/public-empty") == {}


def test_token_from_the_stored_login(tmp_path, tgi, hub_server):
    out = tmp_path / "run"
    make_run(out, tgi, 1)
    home = Path(os.environ["HF_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "token").write_text(DEFAULT_TOKEN)
    proc = hf("push", str(out), REPO, env={"HF_TOKEN": ""})
    assert proc.returncode == 0, proc.stderr
    assert all(r.authorization == f"Bearer {DEFAULT_TOKEN}" for r in hub_server.requests if r.route != "lfs_upload")


def _foreign_repo(hub_server: HubServer) -> None:
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=b"hello\n", path_in_repo="notes.md", repo_id=REPO, repo_type="dataset")


def _another_run(hub_server: HubServer, tmp_path: Path, tgi) -> None:
    make_run(tmp_path / "first", tgi, 1, push_to_hub=REPO)


ERRORS = [
    pytest.param({"HF_TOKEN": ""}, None, REPO, "no Hugging Face token", id="no-token"),
    pytest.param({"HF_TOKEN": "hf_invalid_secret_123"}, None, REPO, "rejected the token (401)", id="bad-token"),
    pytest.param({"HF_TOKEN": READ_TOKEN}, None, REPO, "read-only", id="read-only-token"),
    pytest.param({}, None, "someone-else/run", "no write access to namespace 'someone-else'", id="foreign-namespace"),
    pytest.param({}, _foreign_repo, REPO, "holds files that are not an hfadvisor run (notes.md)", id="unrelated"),
    pytest.param({}, _another_run, REPO, "holds another hfadvisor run", id="another-run"),
    pytest.param({"HF_ENDPOINT": "unreachable"}, None, REPO, "cannot reach the Hub at http://127.0.0.1:", id="down"),
    pytest.param({}, None, "not a/repo id", "is not a valid repo id", id="bad-repo-id"),
    pytest.param({}, None, "no-namespace", "must be namespace/name", id="no-namespace"),
]


@pytest.mark.parametrize(("env", "prepare", "repo", "message"), ERRORS)
def test_hub_errors_are_one_line_and_leave_the_run_untouched(
    tmp_path, tgi, hub_server, monkeypatch, env, prepare, repo, message
):
    env = dict(env)
    if env.pop("HF_ENDPOINT", None):  # in this process huggingface_hub read HF_ENDPOINT at import
        monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")
    if prepare is _another_run:
        prepare(hub_server, tmp_path, tgi)
    elif prepare:
        prepare(hub_server)
    out = tmp_path / "run"
    make_run(out, tgi, 1)
    before = tree(out)
    pushed = hf("push", str(out), repo, env=env)
    line = error_line(pushed)
    assert message in line
    assert tree(out) == before
    # the same check stops `run --push-to-hub` before it writes anything or calls the model
    generations = len(posts(tgi))
    new = tmp_path / "new-run"
    started = hf("run", "-o", str(new), "-e", tgi.url, "--rounds", "1", "--no-metrics", "--push-to-hub", repo, env=env)
    assert message in error_line(started)
    assert len(posts(tgi)) == generations  # no model call was spent
    assert not new.exists()
    for text in (pushed.stdout, pushed.stderr, started.stdout, started.stderr):
        assert "hf_invalid_secret_123" not in text and DEFAULT_TOKEN not in text and READ_TOKEN not in text


def test_no_token_in_anything_written(tmp_path, tgi, hub_server):
    out = tmp_path / "run"
    make_run(out, tgi, 2, push_to_hub=REPO)
    proc = hf("push", str(out), REPO)
    pulled = tmp_path / "pulled"
    pull = hf("pull", REPO, str(pulled), "--revision", "round-0001")
    assert proc.returncode == 0 and pull.returncode == 0
    secret = DEFAULT_TOKEN.encode()
    snap = hub_server.repo(REPO)
    written = [*tree(out).values(), *tree(pulled).values()]
    for tag in snap.tags:
        written.extend(snap.files(tag).values())
    written.extend(f"{c.title}\n{c.description}".encode() for c in snap.commits)
    written.extend(m.encode() for m in snap.tag_messages.values())
    written.extend(t.encode() for t in (proc.stdout, proc.stderr, pull.stdout, pull.stderr))
    assert written and all(secret not in blob for blob in written)


def test_hub_state_is_read_from_commits_made_by_push_only(tmp_path, tgi, hub_server):
    """Someone edits the repo on the Hub between pushes: their commit is kept, ours go on top."""
    out = tmp_path / "run"
    make_run(out, tgi, 1, push_to_hub=REPO)
    HfApi().create_commit(
        REPO,
        [CommitOperationAdd(path_in_repo="NOTES.md", path_or_fileobj=b"reviewed\n")],
        commit_message="Add notes",
        repo_type="dataset",
    )
    make_run(out, tgi, 2, push_to_hub=REPO)
    snap = hub_server.repo(REPO)
    titles = [c.title for c in snap.history("main")]
    assert titles[0].startswith("Round 2") and titles[1] == "Add notes" and titles[2].startswith("Round 1")
    assert "NOTES.md" in snap.paths("round-0002")
    assert commits_per_round(hub_server) == {0: 1, 1: 1, 2: 1}


def test_pull_with_an_explicit_token_instead_of_the_login(tmp_path, tgi, hub_server, monkeypatch):
    """A web app pulls a private run with the token a person typed, not the process's login."""
    from hfadvisor.hub.pull import pull_run

    make_run(tmp_path / "run", tgi, 1, push_to_hub=REPO)
    monkeypatch.setenv("HF_TOKEN", "")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))  # no stored login either
    with pytest.raises(HubError) as anonymous:
        pull_run(REPO, tmp_path / "anon")
    assert DEFAULT_TOKEN not in str(anonymous.value)
    store = pull_run(REPO, tmp_path / "mine", token=DEFAULT_TOKEN)
    assert store.rounds_done == 2 and store.table().num_rows == RunStore.open(tmp_path / "run").table().num_rows


def test_responses_follow_their_rounds_in_one_untagged_commit(tmp_path, tgi, hub_server):
    """`respond` then `push`: answers reach the Hub (and come back with `pull`); tags still mean rounds 0..r."""
    from hfadvisor.llm import EndpointSpec
    from hfadvisor.respond import respond_run
    from tests.servers.tgi import ScriptedBackend, running_tgi

    out = tmp_path / "run"
    make_run(out, tgi, 2, push_to_hub=REPO)
    history = len(hub_server.repo(REPO).history("main"))
    with running_tgi(ScriptedBackend(lambda req: "I can't help with that.")) as target:
        respond_run(out, EndpointSpec.of(target.url, api="chat", model="target-model"))
        proc = hf("push", str(out), REPO)
        assert proc.returncode == 0, proc.stderr
        assert "responses to rounds 0-2" in proc.stderr
        snap = hub_server.repo(REPO)
        assert len(snap.history("main")) == history + 1 and sorted(snap.tags) == [f"round-{r:04d}" for r in range(3)]
        answered = hfadvisor.load_run(out)
        ds = datasets.load_dataset(REPO, "responses", split="train")
        assert ds.num_rows == answered.num_rows and set(ds["id"]) == set(answered["id"])
        assert set(ds["response"]) == {"I can't help with that."}
        assert datasets.load_dataset(REPO, split="train", revision="round-0002").num_rows == answered.num_rows
        assert "config_name: responses" not in snap.files("round-0002")["README.md"].decode()
        assert "config_name: responses" in snap.files("main")["README.md"].decode()
        # pushing again sends nothing; a new round carries the responses config in its card
        assert hf("push", str(out), REPO).stderr.startswith(f"{REPO} already has every round")
        assert len(hub_server.repo(REPO).history("main")) == history + 1
        make_run(out, tgi, 3, push_to_hub=REPO)
        assert "config_name: responses" in hub_server.repo(REPO).files("round-0003")["README.md"].decode()
        respond_run(out, EndpointSpec.of(target.url, api="chat", model="target-model"))  # answers round 3
    assert "responses to rounds 3 " in hf("push", str(out), REPO).stderr
    pulled = tmp_path / "pulled"
    assert hf("pull", REPO, str(pulled)).returncode == 0
    again = hfadvisor.load_run(pulled)
    assert again.num_rows == hfadvisor.load_run(out).num_rows and all(again["response"])
    no_unknown_routes(hub_server)


def test_transient_hub_failures_at_start_up_are_retried(tmp_path, tgi, hub_server):
    """whoami / create_repo failing transiently when `run --push-to-hub` starts: retried, not fatal."""
    hub_server.fail_next(2, 503, "whoami")
    hub_server.fail_next(1, None, "repos/create", drop=True)
    make_run(tmp_path / "run", tgi, 1, push_to_hub=REPO)
    assert len(hub_server.calls("whoami")) == 3
    assert sorted(hub_server.repo(REPO).tags) == ["round-0000", "round-0001"]
    hub_server.fail_next(5, 503, "whoami")
    line = error_line(hf("push", str(tmp_path / "run"), REPO, "--max-attempts", "2"))
    assert "after 2 attempts" in line and "503" in line
