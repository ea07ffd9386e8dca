"""The fake Hub (tests/hub_server.py) against the unmodified huggingface_hub and datasets clients.

Everything goes over real HTTP; the ``hub_server`` fixture points the clients at the server.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import datasets
import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    HfFileSystem,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from tests.servers.hub import HubServer

REPO = "hf-tester/rounds"


def _parquet(rows: dict[str, list]) -> bytes:
    """Parquet bytes for a column dict."""
    buf = io.BytesIO()
    pq.write_table(pa.table(rows), buf)
    return buf.getvalue()


def _card(api: HfApi, repo_id: str, revision: str | None = None) -> dict[str, Any]:
    """``dataset_info(revision).card_data`` as a dict (fails if the server sent no cardData)."""
    card = api.dataset_info(repo_id, revision=revision).card_data
    assert card is not None
    return card.to_dict()


def _no_unknown_routes(server: HubServer) -> None:
    """Every request hit an implemented route and no handler crashed."""
    unknown = [f"{r.method} {r.path}" for r in server.unknown_requests]
    assert unknown == [], f"clients called routes the fake Hub does not implement: {unknown}"
    assert server.app.errors == []


def test_create_private_repo_and_visibility(hub_server: HubServer) -> None:
    """create_repo(private=True) is recorded; 409/exist_ok; anonymous reads 404; delete."""
    api = HfApi()
    url = api.create_repo(REPO, repo_type="dataset", private=True)
    assert url.repo_id == REPO and url.repo_type == "dataset"
    assert hub_server.repo(REPO).private is True
    assert api.dataset_info(REPO).private is True
    # Existing repo: 409 carries the url, exist_ok turns it into a no-op.
    assert api.create_repo(REPO, repo_type="dataset", exist_ok=True).repo_id == REPO
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(REPO, repo_type="dataset")
    assert exc.value.response.status_code == 409
    # Anonymous read of a private repo looks like a missing repo.
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).dataset_info(REPO)
    # Initial commit, like the Hub: .gitattributes by "system".
    snap = hub_server.repo(REPO)
    assert snap.paths() == [".gitattributes"] and snap.commits[0].author == "system"
    api.update_repo_settings(REPO, repo_type="dataset", private=False)
    assert hub_server.repo(REPO).private is False
    api.delete_repo(REPO, repo_type="dataset")
    assert hub_server.repo_ids() == []
    _no_unknown_routes(hub_server)


def test_upload_file_and_folder(hub_server: HubServer, tmp_path: Path) -> None:
    """upload_file and upload_folder; parquet goes through LFS."""
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    info = api.upload_file(path_or_fileobj=b"hello\n", path_in_repo="notes/a.txt", repo_id=REPO, repo_type="dataset")
    folder = tmp_path / "folder"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "x.parquet").write_bytes(_parquet({"x": [1, 2]}))
    (folder / "meta.json").write_text('{"k": 1}')
    api.upload_folder(folder_path=folder, repo_id=REPO, repo_type="dataset", commit_message="Add folder")

    snap = hub_server.repo(REPO)
    assert snap.files()["notes/a.txt"] == b"hello\n"
    assert snap.commit().title == "Add folder"
    assert snap.history()[1].oid == info.oid
    assert snap.commit().files["data/x.parquet"].is_lfs
    assert not snap.commit().files["meta.json"].is_lfs
    assert pq.read_table(io.BytesIO(snap.read("data/x.parquet")))["x"].to_pylist() == [1, 2]
    assert len(hub_server.calls("lfs_upload")) == 1
    _no_unknown_routes(hub_server)


def test_create_commit_with_lfs_and_deletions(hub_server: HubServer) -> None:
    """Multi-operation commits; LFS objects are not re-uploaded; bytes per commit."""
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    shard = _parquet({"prompt": ["a", "b", "c"]})
    api.create_commit(
        REPO,
        repo_type="dataset",
        commit_message="Round 1",
        commit_description="three prompts",
        operations=[
            CommitOperationAdd("data/train.parquet", shard),
            CommitOperationAdd("README.md", b"---\nlicense: mit\n---\n# Rounds\n"),
            CommitOperationAdd("old/a.txt", b"a"),
            CommitOperationAdd("old/b.txt", b"b"),
            CommitOperationAdd("tmp.txt", b"t"),
        ],
    )
    first = hub_server.repo(REPO).commit()
    assert first.description == "three prompts"
    assert first.uploaded_bytes == len(shard) + len(b"---\nlicense: mit\n---\n# Rounds\n") + 3
    # Same parquet again: the server already has the LFS object, nothing is re-uploaded.
    api.create_commit(
        REPO,
        repo_type="dataset",
        commit_message="Round 2",
        operations=[
            CommitOperationAdd("data/copy.parquet", shard),
            CommitOperationDelete("old/"),
            CommitOperationDelete("tmp.txt"),
        ],
    )
    snap = hub_server.repo(REPO)
    assert snap.paths() == [".gitattributes", "README.md", "data/copy.parquet", "data/train.parquet"]
    assert snap.read("data/copy.parquet") == shard
    assert snap.commit().uploaded_bytes == 0
    assert len(hub_server.calls("lfs_upload")) == 1
    assert [c.title for c in snap.history()] == ["Round 2", "Round 1", "initial commit"]
    _no_unknown_routes(hub_server)


def test_tags_branches_refs_history_and_downloads(hub_server: HubServer) -> None:
    """Tags (409 on duplicates), branches from tags, refs, history and downloads by tag."""
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    c1 = api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id=REPO, repo_type="dataset")
    api.create_tag(REPO, tag="round-1", repo_type="dataset", tag_message="first round")
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_tag(REPO, tag="round-1", repo_type="dataset")
    assert exc.value.response.status_code == 409
    api.create_tag(REPO, tag="round-1", repo_type="dataset", exist_ok=True)
    c2 = api.upload_file(path_or_fileobj=b"v2", path_in_repo="f.txt", repo_id=REPO, repo_type="dataset")
    api.create_branch(REPO, branch="from-round-1", revision="round-1", repo_type="dataset")

    refs = api.list_repo_refs(REPO, repo_type="dataset")
    assert {b.name: b.target_commit for b in refs.branches} == {"main": c2.oid, "from-round-1": c1.oid}
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("round-1", "refs/tags/round-1", c1.oid)]
    assert hub_server.repo(REPO).tag_messages == {"round-1": "first round"}

    history = api.list_repo_commits(REPO, repo_type="dataset", revision="round-1")
    assert [c.commit_id for c in history][:1] == [c1.oid] and len(history) == 2
    assert history[-1].title == "initial commit"

    path = hf_hub_download(REPO, "f.txt", repo_type="dataset", revision="round-1")
    assert Path(path).read_bytes() == b"v1"
    assert Path(hf_hub_download(REPO, "f.txt", repo_type="dataset")).read_bytes() == b"v2"
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "f.txt", repo_type="dataset", revision="no-such-tag")

    api.delete_tag(REPO, tag="round-1", repo_type="dataset")
    api.delete_branch(REPO, branch="from-round-1", repo_type="dataset")
    snap = hub_server.repo(REPO)
    assert snap.tags == {} and list(snap.branches) == ["main"]
    _no_unknown_routes(hub_server)


def test_card_data_tree_paths_info_and_ranges(hub_server: HubServer) -> None:
    """cardData per revision, tree listings, paths-info, resolve headers and Range."""
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    payload = bytes(range(256)) * 40
    api.create_commit(
        REPO,
        repo_type="dataset",
        commit_message="card",
        operations=[
            CommitOperationAdd("README.md", b"---\nlicense: apache-2.0\ntags: [safety]\n---\nhi\n"),
            CommitOperationAdd("data/sub/blob.bin", payload),
            CommitOperationAdd("data/a.txt", b"aaa"),
        ],
    )
    api.create_tag(REPO, tag="v1", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"---\nlicense: mit\n---\n", path_in_repo="README.md", repo_id=REPO, repo_type="dataset"
    )

    assert _card(api, REPO, "v1")["license"] == "apache-2.0"
    assert _card(api, REPO)["license"] == "mit"
    info = api.dataset_info(REPO, files_metadata=True)
    blob = next(s for s in info.siblings or [] if s.rfilename == "data/sub/blob.bin")
    assert blob.size == len(payload) and blob.lfs is not None

    top = {e.path: type(e).__name__ for e in api.list_repo_tree(REPO, repo_type="dataset")}
    assert top == {".gitattributes": "RepoFile", "README.md": "RepoFile", "data": "RepoFolder"}
    deep = [e.path for e in api.list_repo_tree(REPO, path_in_repo="data", repo_type="dataset", recursive=True)]
    assert sorted(deep) == ["data/a.txt", "data/sub", "data/sub/blob.bin"]
    expanded = list(api.list_repo_tree(REPO, path_in_repo="data/sub", repo_type="dataset", expand=True))
    assert expanded[0].last_commit is not None and expanded[0].last_commit.title == "card"
    infos = api.get_paths_info(REPO, ["data/a.txt", "data/sub", "missing"], repo_type="dataset", revision="v1")
    assert sorted(i.path for i in infos) == ["data/a.txt", "data/sub"]

    # Resolve headers and Range requests, as the clients see them.
    url = f"{hub_server.url}/datasets/{REPO}/resolve/v1/data/sub/blob.bin"
    head = httpx2.head(url)
    assert head.headers["X-Repo-Commit"] == hub_server.repo(REPO).resolve("v1")
    assert head.headers["X-Linked-Size"] == str(len(payload)) and head.headers["ETag"].strip('"') == blob.lfs.sha256
    part = httpx2.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == payload[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(payload)}"
    assert httpx2.get(url, headers={"Range": f"bytes={len(payload)}-"}).status_code == 416
    with HfFileSystem().open(f"datasets/{REPO}@v1/data/sub/blob.bin", "rb", block_size=1024) as f:
        f.seek(5000)
        assert f.read(100) == payload[5000:5100]
    _no_unknown_routes(hub_server)


def test_push_to_hub_rounds_and_load_dataset_by_tag(hub_server: HubServer) -> None:
    """Dataset.push_to_hub twice with tags, then load_dataset at each round."""
    api = HfApi()
    datasets.Dataset.from_dict({"prompt": ["p1", "p2"], "round": [1, 1]}).push_to_hub(REPO, private=True)
    api.create_tag(REPO, tag="round-1", repo_type="dataset")
    datasets.Dataset.from_dict({"prompt": ["p3", "p4", "p5"], "round": [2, 2, 2]}).push_to_hub(REPO)
    api.create_tag(REPO, tag="round-2", repo_type="dataset")

    snap = hub_server.repo(REPO)
    assert snap.private and set(snap.tags) == {"round-1", "round-2"}
    assert snap.tags["round-2"] == snap.branches["main"] != snap.tags["round-1"]
    assert any(p.endswith(".parquet") and snap.commit("round-1").files[p].is_lfs for p in snap.paths("round-1"))

    first = datasets.load_dataset(REPO, revision="round-1", split="train")
    assert first["prompt"] == ["p1", "p2"]
    latest = datasets.load_dataset(REPO, split="train")
    assert latest["prompt"] == ["p3", "p4", "p5"]
    assert _card(api, REPO, "round-1")["dataset_info"]["splits"][0]["num_examples"] == 2
    _no_unknown_routes(hub_server)


def test_readme_configs_with_data_files_and_tagged_load(hub_server: HubServer) -> None:
    """README ``configs:`` data_files are honoured by load_dataset at a tag."""
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    readme = (
        b"---\nconfigs:\n- config_name: alpha\n  data_files:\n  - split: train\n    path: alpha/*.csv\n"
        b"- config_name: beta\n  data_files: beta/rows.csv\n---\n# Two configs\n"
    )
    api.create_commit(
        REPO,
        repo_type="dataset",
        commit_message="v1",
        operations=[
            CommitOperationAdd("README.md", readme),
            CommitOperationAdd("alpha/part-0.csv", b"text,label\nhello,0\n"),
            CommitOperationAdd("alpha/part-1.csv", b"text,label\nworld,1\n"),
            CommitOperationAdd("beta/rows.csv", b"text,label\nold,0\n"),
            CommitOperationAdd("ignored/other.csv", b"text,label\nnope,9\n"),
        ],
    )
    api.create_tag(REPO, tag="v1", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"text,label\nnew,1\n", path_in_repo="beta/rows.csv", repo_id=REPO, repo_type="dataset"
    )

    alpha = datasets.load_dataset(REPO, "alpha", revision="v1", split="train")
    assert sorted(alpha["text"]) == ["hello", "world"]
    assert datasets.load_dataset(REPO, "beta", revision="v1", split="train")["text"] == ["old"]
    assert datasets.load_dataset(REPO, "beta", split="train")["text"] == ["new"]
    _no_unknown_routes(hub_server)


def test_stale_parent_commit_is_rejected(hub_server: HubServer) -> None:
    """A stale parent_commit gets 412 and no commit."""
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    parent = api.dataset_info(REPO).sha
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(
            REPO,
            repo_type="dataset",
            commit_message="stale",
            operations=[CommitOperationAdd("b.txt", b"2")],
            parent_commit=parent,
        )
    assert exc.value.response.status_code == 412
    assert hub_server.repo(REPO).paths() == [".gitattributes", "a.txt"]


def test_tokens_401_and_403(hub_server: HubServer) -> None:
    """Invalid/missing tokens get 401, read-only tokens and foreign namespaces 403."""
    bad = HfApi(token="hf_not_a_valid_token")
    with pytest.raises(HfHubHTTPError) as exc:
        bad.create_repo(REPO, repo_type="dataset")
    assert exc.value.response.status_code == 401
    assert exc.value.response.json()["error"] == exc.value.response.headers["X-Error-Message"]
    with pytest.raises(HfHubHTTPError, match="Invalid user token"):
        bad.whoami()
    anonymous = HfApi(token=False)
    with pytest.raises(HfHubHTTPError) as exc:
        anonymous.create_repo(REPO, repo_type="dataset")
    assert exc.value.response.status_code == 401

    reader = HfApi(token=hub_server.read_token)
    assert reader.whoami()["auth"]["accessToken"]["role"] == "read"
    with pytest.raises(HfHubHTTPError) as exc:
        reader.create_repo(REPO, repo_type="dataset")
    assert exc.value.response.status_code == 403
    HfApi().create_repo(REPO, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as exc:
        reader.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, repo_type="dataset")
    assert exc.value.response.status_code == 403
    assert reader.dataset_info(REPO).id == REPO
    # Writing in a namespace the user does not belong to.
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi().create_repo("someone-else/repo", repo_type="dataset")
    assert exc.value.response.status_code == 403
    whoami = HfApi().whoami()
    assert whoami["name"] == hub_server.user and [o["name"] for o in whoami["orgs"]] == hub_server.orgs


def test_fault_injection_and_retry(hub_server: HubServer) -> None:
    """fail_next: error status, dropped connection, lost response, client-side retries."""
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    ops = [CommitOperationAdd("a.txt", b"a")]

    fault = hub_server.fail_next(1, status=500, path_contains="/commit/")
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(REPO, repo_type="dataset", operations=ops, commit_message="try 1")
    assert exc.value.response.status_code == 500 and fault.hits == 1
    api.create_commit(REPO, repo_type="dataset", operations=[CommitOperationAdd("a.txt", b"a")], commit_message="try 2")
    assert hub_server.repo(REPO).commit().title == "try 2"

    hub_server.fail_next(1, path_contains="/commit/", drop=True)
    with pytest.raises(httpx2.TransportError):
        api.create_commit(REPO, repo_type="dataset", operations=[CommitOperationAdd("b.txt", b"b")], commit_message="x")
    assert hub_server.repo(REPO).paths() == [".gitattributes", "a.txt"]

    # Lost response: the commit lands although the client sees an error.
    hub_server.fail_next(1, path_contains="/commit/", drop=True, after_processing=True)
    with pytest.raises(httpx2.TransportError):
        api.create_commit(REPO, repo_type="dataset", operations=[CommitOperationAdd("c.txt", b"c")], commit_message="y")
    assert hub_server.repo(REPO).commit().title == "y"

    # huggingface_hub retries preupload on 5xx by itself (http_backoff).
    hub_server.fail_next(1, status=503, path_contains="/preupload/", method="POST")
    api.upload_file(path_or_fileobj=b"d", path_in_repo="d.txt", repo_id=REPO, repo_type="dataset")
    preuploads = hub_server.calls("preupload")
    assert [r.status for r in preuploads[-2:]] == [503, 200]
    assert all(r.request_bytes > 0 for r in hub_server.calls("commit"))
    _no_unknown_routes(hub_server)


def test_unknown_routes_are_logged_as_404(hub_server: HubServer) -> None:
    """A route the fake Hub lacks answers 404 and is logged as unknown."""
    api = HfApi()
    api.create_repo(REPO, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as exc:
        api.super_squash_history(REPO, repo_type="dataset")
    assert exc.value.response.status_code == 404
    assert [(r.method, r.route, r.status) for r in hub_server.unknown_requests] == [("POST", None, 404)]
    assert "super-squash" in hub_server.unknown_requests[0].path


def test_quoted_revisions_prs_and_other_repo_types(hub_server: HubServer) -> None:
    """Revisions with slashes, convert refs, PRs, model and space repos, delays."""
    api = HfApi()
    repo = "hf-test-org/quoted"
    api.create_repo(repo, repo_type="dataset")
    name = "dir with space/f #1.txt"
    api.upload_file(path_or_fileobj=b"one", path_in_repo=name, repo_id=repo, repo_type="dataset")
    api.create_tag(repo, tag="rounds/1", repo_type="dataset")
    api.upload_file(path_or_fileobj=b"two", path_in_repo=name, repo_id=repo, repo_type="dataset")
    hub_server.set_ref(repo, "refs/convert/parquet", "rounds/1")
    assert [c.name for c in api.list_repo_refs(repo, repo_type="dataset").converts] == ["parquet"]
    for revision, want in (("rounds/1", b"one"), ("refs/convert/parquet", b"one"), ("refs/heads/main", b"two")):
        assert Path(hf_hub_download(repo, name, repo_type="dataset", revision=revision)).read_bytes() == want
    assert any("resolve/refs%2Fconvert%2Fparquet/" in r.path for r in hub_server.calls("resolve"))
    tree = api.list_repo_tree(repo, repo_type="dataset", revision="refs/convert/parquet", recursive=True)
    assert name in [e.path for e in tree]
    assert (Path(snapshot_download(repo, repo_type="dataset", revision="rounds/1")) / name).read_bytes() == b"one"

    pr = api.upload_file(
        path_or_fileobj=b"pr", path_in_repo="pr.txt", repo_id=repo, repo_type="dataset", create_pr=True
    )
    assert pr.pr_revision == "refs/pr/1"
    assert api.file_exists(repo, "pr.txt", repo_type="dataset", revision="refs/pr/1")
    assert not api.file_exists(repo, "pr.txt", repo_type="dataset")
    assert [d.id for d in api.list_datasets(author="hf-test-org")] == [repo]

    api.create_repo("hf-tester/model")
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="hf-tester/model")
    assert Path(hf_hub_download("hf-tester/model", "config.json")).read_bytes() == b"{}"
    assert api.model_info("hf-tester/model").sha == hub_server.repo("hf-tester/model").commit().oid
    api.create_repo("hf-tester/space", repo_type="space", space_sdk="static")
    assert hub_server.repo("hf-tester/space", "space").repo_type == "space"

    hub_server.fail_next(1, status=None, delay=0.3, path_contains="/refs")  # slow, not failing
    api.list_repo_refs(repo, repo_type="dataset")
    assert hub_server.calls("refs")[-1].status == 200
    _no_unknown_routes(hub_server)
