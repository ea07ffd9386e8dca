"""The Space's views of a run, checked against the run's own records (real runs over HTTP, real Hub server)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from hfadvisor.rundir.store import RunStore
from hfadvisor.space import data, plots
from hfadvisor.space.data import SpaceError
from tests.test_space_support import SCRIPT_PROMPT, shared_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared_runs(tmp_path_factory.getbasetemp() / "space-runs")


def test_timeline_and_rounds_match_the_revisions(runs):
    view = data.open_local(runs["advisor"])
    revs = list(RunStore.open(runs["advisor"]).revisions())
    tl = data.timeline(view)
    assert tl["round"].tolist() == [r.round for r in revs]
    assert tl["weakness"].tolist() == ["(seeds)", *[r.weakness for r in revs[1:]]]
    assert tl["rows"].tolist() == [r.rows for r in revs]
    assert tl["total rows"].tolist() == pd.Series([r.rows for r in revs]).cumsum().tolist()
    assert tl["rejects"].sum() == sum(r.rejects for r in revs) >= 1  # the scripted model's short answer
    assert "too_short ×1" in tl["reject reasons"].tolist()
    table = RunStore.open(runs["advisor"]).table()
    for rev in revs:
        shown = data.samples(view, rev.round)
        expected = [row["id"] for row in table.to_pylist() if row["round"] == rev.round]
        assert shown["id"].tolist() == expected
        assert (shown["round"] == rev.round).all()
    rejected = data.rejects_of(view, 1)
    assert rejected["reason"].tolist() == ["too_short"]


def test_summary_diff_shows_what_the_round_added_and_escapes_model_text(runs):
    view = data.open_local(runs["advisor"])
    rev = view.revision(2)
    diff = data.summary_diff(rev)
    assert ("+", rev.weakness) in diff
    assert [line for op, line in diff if op != "+"] == rev.summary_before
    hostile = rev.model_copy(update={"summary_after": [*rev.summary_before, "<script>alert(1)</script>"]})
    out = data.summary_diff_html(hostile)
    assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert 'class="added"' in out


def test_search_source_filter_and_cumulative(runs):
    view = data.open_local(runs["advisor"])
    hit = data.samples(view, 1, query="BYPASS A FILTER")
    assert hit["prompt"].tolist() == [SCRIPT_PROMPT]
    assert data.samples(view, 1, query="no such words anywhere").empty
    upto = data.samples(view, 2, cumulative=True)
    assert sorted(set(upto["round"])) == [0, 1, 2]
    seeds = data.samples(view, 2, cumulative=True, source="seed")
    assert len(seeds) == view.revision(0).rows and set(seeds["source"]) == {"seed"}
    with pytest.raises(SpaceError, match="round 9 does not exist"):
        data.samples(view, 9)


def test_coverage_and_comparison(runs):
    adv, base = data.open_local(runs["advisor"]), data.open_local(runs["baseline"])
    cov = data.coverage(adv)
    assert cov["rows"].tolist() == pd.Series([r.rows for r in adv.revisions]).cumsum().tolist()
    assert cov["summary lines"].tolist() == [len(r.summary_after) for r in adv.revisions]
    assert data.coverage(base)["summary lines"].isna().all()  # Self-Instruct keeps no summary
    if data.has_metrics(adv):  # the metrics plugin's embedding assignment, when installed
        assert cov["categories covered"].tolist()[1:] == [
            r.extra["metrics"]["categories_covered"] for r in adv.revisions[1:]
        ]
    per = data.rows_per_category(adv, 0)
    assert per["rows"].sum() == adv.revision(0).rows
    table = data.compare_table([adv, base])
    assert table["mode"].tolist() == ["advisor", "baseline"]
    assert table["rows"].tolist() == [len(adv.rows), len(base.rows)]
    fig = plots.compare_coverage([adv, base])
    assert len(fig.data) == 4  # two runs × (categories, diversity)
    assert fig.data[0].y[-1] == cov["categories covered"].iloc[-1]


def test_comparison_uses_one_shared_category_list(runs):
    from hfadvisor.metrics.run import shared_categories

    adv, base = data.open_local(runs["advisor"]), data.open_local(runs["baseline"])
    shared = data.shared_measure([adv, base])
    assert shared is not None  # the dev extra installs the metrics' embedding model
    expected, _ = shared_categories([RunStore.open(runs[m]) for m in ("advisor", "baseline")], None)
    assert shared.categories == expected
    assert [s["rows"].iloc[-1] for s in shared.series] == [len(adv.rows), len(base.rows)]
    assert [sum(c.values()) for c in shared.rows_per_category] == [len(adv.rows), len(base.rows)]
    table = data.compare_table([adv, base], shared)
    covered = [int(s["categories_covered"].iloc[-1]) for s in shared.series]
    assert table["categories covered (shared list)"].tolist() == [f"{c} of {len(expected)}" for c in covered]
    fig = plots.compare_coverage([adv, base], shared)
    assert list(fig.data[2].y) == shared.series[1]["categories_covered"].tolist()
    bars = plots.category_bars(adv, 3)
    assert sum(bars.data[0].x) == data.rows_per_category(adv, 3)["rows"].sum()


def test_labels_shown_are_the_latest_pull_per_round(runs, tmp_path):
    """Every pull is a complete snapshot: the Space counts the newest intact one, never their sum."""
    from hfadvisor.rundir import labels as labels_pull
    from hfadvisor.rundir.store import RunStore

    run = tmp_path / "run"
    shutil.copytree(runs["advisor"], run)
    view = data.open_local(run)
    assert view.labels is None
    store = RunStore.open(run)
    ids = view.rows[view.rows["round"] == 2]["id"].tolist()[:2]

    def label(row_id: str, harmful: str) -> dict:
        return {
            "id": row_id,
            "round": 2,
            "weakness": "w",
            "source": "advisor",
            "annotator": "ann",
            "harmful": harmful,
            "categories": [],
            "on_target": "yes",
            "quality": 3,
            "note": None,
        }

    info = {
        "dataset": "d",
        "workspace": "w",
        "server": "http://argilla",
        "rows_in_run": 0,
        "rounds_in_run": 0,
        "foreign_records": 0,
        "categories": [],
    }
    labels_pull.write(store, [label(ids[0], "yes")], **info)
    labels_pull.write(store, [label(ids[0], "yes"), label(ids[1], "no")], **info)  # pull 2 = pull 1 + one more
    view = data.open_local(run)
    per_round = data.labels_for_round(view, 2)
    assert per_round is not None and per_round["id"].tolist() == ids
    assert per_round["harmful"].tolist() == ["yes", "no"]
    assert data.timeline(view)["labelled"].tolist() == [0, 0, 2, 0]
    assert "| human labels | 2 |" in data.round_markdown(view, 2)
    # a torn newest version is skipped: the Space falls back to pull 1
    (run / "labels" / "pull-00002.parquet").write_bytes(b"torn")
    assert data.timeline(data.open_local(run))["labelled"].tolist() == [0, 0, 1, 0]


def test_bad_sources_fail_with_one_readable_line(runs, tmp_path):
    with pytest.raises(SpaceError, match="neither a run directory nor a Hub dataset repo id"):
        data.open_source("not a/valid thing")
    with pytest.raises(SpaceError, match="opens Hub dataset repos"):
        data.open_source(str(runs["advisor"]), allow_local=False)
    with pytest.raises(SpaceError, match="revision applies to Hub repos only"):
        data.open_source(str(runs["advisor"]), "round-0001")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="not an hfadvisor run directory"):
        data.open_source(str(tmp_path / "empty"))


def test_space_command_rejects_bad_input_with_one_line_and_exit_2(runs, tmp_path):
    import socket

    from tests.helpers import cli

    bad = cli("space", "no such/run here")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: 'no such/run here' is neither a run directory nor a Hub dataset repo id (owner/name)"
    ]
    (tmp_path / "empty").mkdir()
    empty = cli("space", str(runs["advisor"]), "--compare", str(tmp_path / "empty"))
    assert empty.returncode == 2 and "not an hfadvisor run directory" in empty.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = cli("space", str(runs["advisor"]), "--port", str(taken.getsockname()[1]), timeout=120)
    assert busy.returncode == 2 and "pick another --port" in busy.stderr and "Traceback" not in busy.stderr


def test_zip_is_the_run(runs, tmp_path):
    archive = data.zip_run(runs["advisor"], tmp_path / "out")
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "x")
    copy = RunStore.open(tmp_path / "x" / runs["advisor"].name, repair=False)
    assert copy.rounds_done == 4 and copy.table().num_rows == RunStore.open(runs["advisor"]).table().num_rows


def _upload(api, repo_id: str, folder: Path, tag: str) -> None:
    api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=folder)
    api.create_tag(repo_id, repo_type="dataset", tag=tag)


def test_hub_repo_at_a_round_tag_and_private_repos_need_the_session_token(runs, tmp_path, hub_server):
    from huggingface_hub import HfApi

    api = HfApi(token=hub_server.token)
    repo = "hf-tester/space-run"
    api.create_repo(repo, repo_type="dataset", private=True)
    partial = tmp_path / "partial"  # the run as it was after round 1
    shutil.copytree(runs["advisor"], partial)
    for sub in ("data", "rejects", "cards", "revisions"):
        for f in (partial / sub).glob("round-0000[23]*"):
            f.unlink()
    _upload(api, repo, partial, "round-0001")
    _upload(api, repo, runs["advisor"], "round-0003")

    # a public Space: no server token lent, so a private repo needs the visitor's token
    hub_server.requests.clear()
    with pytest.raises(SpaceError, match="not found: check the name, or type a token"):
        data.open_source(repo, server_token=False, workdir=tmp_path)
    assert hub_server.requests and all(r.authorization is None for r in hub_server.requests)

    view = data.open_source(repo, "round-0001", token=hub_server.token, server_token=False, workdir=tmp_path)
    assert view.last_round == 1 and view.hub is not None
    assert view.hub.tags == ["round-0001", "round-0003"]
    assert view.revision(1).weakness == RunStore.open(runs["advisor"]).revision(1).weakness
    latest = data.open_source(repo, token=hub_server.token, server_token=False, workdir=tmp_path)
    assert latest.last_round == 3 and len(latest.rows) == len(data.open_local(runs["advisor"]).rows)

    with pytest.raises(SpaceError, match="no revision 'round-0042'") as e:
        data.open_source(repo, "round-0042", token=hub_server.token, server_token=False, workdir=tmp_path)
    assert hub_server.token not in str(e.value)
    with pytest.raises(SpaceError) as bad:
        data.open_source(repo, token="hf_wrong_session_secret", server_token=False, workdir=tmp_path)
    assert "hf_wrong_session_secret" not in str(bad.value)
    assert len(list(tmp_path.glob("hfadvisor-space-*"))) == 2  # the two opened; failed downloads leave nothing
