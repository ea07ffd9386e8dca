"""The Space with the Hub: start a run, push it with the session's token, open it back at a round tag.

Real parts only: the app in a child process, driven through `gradio_client`; the scripted TGI
server; the Hub-compatible server with the unmodified huggingface_hub client on both sides.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from hfadvisor.space import data
from tests.servers.tgi import ScriptedBackend, running_tgi
from tests.test_space_support import ScriptedModel, space_process


def test_push_a_started_run_with_the_session_token_then_open_it_from_the_hub(hub_server, tmp_path):
    token = hub_server.token
    repo = "hf-tester/space-pushed"
    log = tmp_path / "server.log"
    # no login in the app's environment: only the token typed in the session can write
    with (
        running_tgi(ScriptedBackend(ScriptedModel())) as tgi,
        space_process(["--runs-dir", str(tmp_path / "runs")], log, env={"HF_TOKEN": ""}) as url,
    ):
        client = Client(url, verbose=False)
        status, *_ = client.predict("advisor", tgi.url, "tgi", 2, 3, "", api_name="/start_run")
        assert 'data-phase="finished"' in status
        writes = len(hub_server.requests)
        with pytest.raises(AppError, match=r"^type a Hugging Face token with write access to push$"):
            client.predict(repo, False, "", api_name="/push_run")
        assert [r for r in hub_server.requests[writes:] if r.method != "GET"] == []  # nothing sent to the Hub
        said = client.predict(repo, False, token, api_name="/push_run")
        assert said == f"pushed 3 round(s) to {repo} (private); latest tag round-0002"

        remote = hub_server.repo(repo, "dataset")
        assert remote.private and sorted(remote.tags) == ["round-0000", "round-0001", "round-0002"]
        assert len(set(remote.tags.values())) == 3  # one commit per round, each tagged
        timeline = client.predict(repo, "round-0001", token, api_name="/timeline")
        assert [t["round"] for t in timeline] == [0, 1]
        hint = "check the name, or type a token that can read it if it is private"
        with pytest.raises(AppError, match=rf"^Hub dataset repo {repo} not found: {hint}$"):
            client.predict(repo, "", "", api_name="/timeline")

    (run_dir,) = (tmp_path / "runs").iterdir()
    local = data.open_local(run_dir)
    pulled = data.open_source(repo, "round-0002", token=token, server_token=False, workdir=tmp_path)
    assert [r.weakness for r in pulled.revisions] == [r.weakness for r in local.revisions]
    assert pulled.rows["id"].tolist() == local.rows["id"].tolist()
    assert pulled.hub is not None and pulled.hub.tags == ["round-0000", "round-0001", "round-0002"]
    text = Path(log).read_text(errors="replace")
    assert token not in text and "Traceback" not in text
    for f in run_dir.rglob("*"):
        if f.is_file():
            assert token.encode() not in f.read_bytes()
