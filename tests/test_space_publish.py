"""`publish_space`: a Gradio Space on the Hub-compatible server that installs and imports in a fresh venv.

The Space is downloaded back with the unmodified huggingface_hub client; a venv made with
`python -m venv --system-site-packages` (offline: the dependencies are this environment's) installs
its requirements.txt, and `import app` there installs the uploaded wheel and builds the app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gradio
import pytest
from huggingface_hub import SpaceCard, snapshot_download

from hfadvisor.space.publish import CONFIG_FILE, PublishError, publish_space


def test_published_space_installs_in_a_fresh_venv_and_its_app_imports(hub_server, tmp_path):
    repo = f"{hub_server.user}/advisor-space"
    runs = [f"{hub_server.user}/advisor-run", f"{hub_server.user}/baseline-run"]
    url = publish_space(repo, runs=runs, token=hub_server.token)

    assert url.rstrip("/").endswith(f"/spaces/{repo}")
    snap = hub_server.repo(repo, "space")
    assert snap.private  # private unless asked
    published = [c for c in snap.history() if c.title.startswith("hfadvisor Space")]
    assert len(published) == 1  # everything in one commit
    wheel = next(p for p in snap.paths() if p.endswith(".whl"))
    assert wheel.startswith("hfadvisor-") and "py3-none-any" in wheel

    space = Path(snapshot_download(repo, repo_type="space", local_dir=tmp_path / "space"))
    card = SpaceCard.load(space / "README.md")
    assert (card.data.sdk, card.data.sdk_version, card.data.app_file) == ("gradio", gradio.__version__, "app.py")
    assert "Content warning" in card.text
    assert json.loads((space / CONFIG_FILE).read_text())["runs"] == runs
    requirements = (space / "requirements.txt").read_text().splitlines()
    deps = [line for line in requirements if line and not line.startswith(("#", "--"))]
    assert "plotly>=5.20" in deps and any(d.startswith("gradio") for d in deps)
    assert not any("hfadvisor" in d for d in deps)  # the builder cannot see the wheel: app.py installs it
    for f in space.rglob("*"):  # the token is in no file, wheel included
        if f.is_file():
            assert hub_server.token.encode() not in f.read_bytes(), f

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = [python, "-m", "pip", "install", "--no-deps", "--no-index", "-r", "requirements.txt"]
    subprocess.run(install, cwd=space, check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("HFADVISOR_SPACE_RUNS", "PYTHONPATH")}
    probe = "import app, hfadvisor; print(hfadvisor.__file__); print(','.join(app.options().sources)); print(type(app.demo).__name__)"
    done = subprocess.run([python, "-c", probe], cwd=space, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    module_file, sources, demo = done.stdout.strip().splitlines()[-3:]
    assert Path(module_file).is_relative_to(space / ".hfadvisor-lib")  # the uploaded wheel, not this checkout
    assert sources.split(",") == runs
    assert demo == "Blocks"


def test_publishing_again_updates_the_space_in_one_more_commit(hub_server):
    repo = f"{hub_server.user}/advisor-space"
    first = publish_space(repo, runs=[f"{hub_server.user}/a"], private=False)
    second = publish_space(repo, runs=[f"{hub_server.user}/b"], private=False)
    assert first == second
    snap = hub_server.repo(repo, "space")
    assert not snap.private
    assert len([c for c in snap.history() if c.title.startswith("hfadvisor Space")]) == 2
    assert json.loads(snap.read(CONFIG_FILE))["runs"] == [f"{hub_server.user}/b"]


@pytest.mark.parametrize(
    ("repo", "runs", "message"),
    [
        ("no-owner", [], "not a Space repo id"),
        ("me/space", ["/srv/runs/advisor"], "not a Hub dataset repo id"),
    ],
)
def test_bad_input_is_one_line_and_uploads_nothing(hub_server, repo, runs, message):
    with pytest.raises(PublishError, match=message):
        publish_space(repo, runs=runs)
    assert hub_server.repo_ids("space") == []


def test_a_token_without_write_access_is_refused_readably_and_not_echoed(hub_server):
    with pytest.raises(PublishError) as e:
        publish_space(f"{hub_server.user}/space", runs=[], token=hub_server.read_token)
    assert "write access" in str(e.value) and hub_server.read_token not in str(e.value)
    assert "\n" not in str(e.value)
