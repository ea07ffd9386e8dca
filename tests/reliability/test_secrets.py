"""Secrets: the HF token and the Argilla API key never reach logs, cards, Parquet, manifests, exceptions,
the Hub repo, the Argilla records or the Space; harmful datasets are private by default.

One real `hfadvisor run --push-to-hub --label-every 1` session (token and key in the environment,
both actually used), then the failure paths that are most likely to echo a secret: an endpoint
and a Hub that quote the token back in their error bodies, a push without write access, a wrong
Argilla URL. Everything they produced is scanned byte by byte.
"""

from __future__ import annotations

import logging
import os
import uuid

import argilla as rg
import pytest

from hfadvisor.space import data
from tests.helpers import cli, tree
from tests.servers.tgi import Fault
from tests.test_loop import Script

GROUP = "Secrets"
UNITS = ("a session using both secrets, then scanned", "one failure path likely to echo a secret, exercised")
pytestmark = pytest.mark.reliability

REPO = "hf-tester/secret-scan"


def leaks(secrets: list[str], texts: dict[str, str | bytes]) -> list[str]:
    found = []
    for where, text in texts.items():
        blob = text.encode() if isinstance(text, str) else text
        found += [f"{s[:6]}… in {where}" for s in secrets if s.encode() in blob]
    return found


@pytest.mark.timeout(300)
def test_secrets_never_leave_the_process(tmp_path, scripted_tgi, hub_server, argilla_server, tally, caplog):
    caplog.set_level(logging.DEBUG)
    token, key = hub_server.token, argilla_server.owner_key
    secrets = [token, key]
    scripted_tgi.backend.respond = Script()  # answers each stage in its own form
    env = {"ARGILLA_API_URL": argilla_server.url, "ARGILLA_API_KEY": key, "HF_TOKEN": token}
    out = tmp_path / "run"
    dataset = f"secrets-{uuid.uuid4().hex[:8]}"
    texts: dict[str, str | bytes] = {}

    run = cli(
        *("run", "-o", str(out), "-e", scripted_tgi.url, "--rounds", "2", "--batch-size", "3", "--no-metrics"),
        *("--push-to-hub", REPO, "--label-every", "1", "--argilla-dataset", dataset, "--argilla-workspace", "argilla"),
        env=env,
    )
    assert run.returncode == 0, run.stderr
    texts |= {"run stdout": run.stdout, "run stderr": run.stderr}
    posts = [r for r in scripted_tgi.requests if r.method == "POST"]
    assert posts and all(r.headers.get("authorization") == f"Bearer {token}" for r in posts)  # really used
    assert hub_server.repo(REPO).private is True  # harmful rows: private unless --public

    # failure paths that tend to echo secrets
    scripted_tgi.faults.extend([Fault(status=401, body=f'{{"error": "invalid token {token}"}}'.encode())] * 3)
    echo = cli("run", str(out), "-e", scripted_tgi.url, "--rounds", "3", "--no-metrics", env=env)
    hub_server.fail_next(3, status=500, message=f"internal error for token {token}")
    hub_echo = cli("push", str(out), REPO, "--max-attempts", "1", env=env)
    forbidden = cli("push", str(out), "someone-else/repo", env=env)
    wrong_url = cli("label", "push", str(out), "--api-url", f"{argilla_server.url}/nope", env=env)
    paths = {"endpoint echo": echo, "hub echo": hub_echo, "no access": forbidden, "argilla wrong url": wrong_url}
    for name, proc in paths.items():
        texts |= {f"{name} stdout": proc.stdout, f"{name} stderr": proc.stderr}
    texts["log"] = cli("log", str(out)).stdout

    # every file of the run directory, the Hub repo at every commit, the Argilla records, the Space
    texts |= {f"run/{name}": blob for name, blob in tree(out).items()}
    snap = hub_server.repo(REPO)
    for commit in snap.history("main"):
        texts[f"hub commit {commit.oid[:8]} message"] = f"{commit.title}\n{commit.description}"
        texts |= {f"hub {commit.oid[:8]}:{p}": b for p, b in snap.files(commit.oid).items()}
    client = rg.Argilla(api_url=argilla_server.url, api_key=key)
    try:
        records = list(client.datasets(dataset, workspace="argilla").records(with_suggestions=True))
        assert records
        texts["argilla records"] = "\n".join(repr(r.to_dict()) for r in records)
    finally:
        client.http_client.close()
    from hfadvisor.space.tabs.explore import run_header

    view = data.open_local(out)
    texts["space"] = "\n".join(
        [run_header(view), data.timeline(view).to_csv(), data.samples(view, 1).to_csv()]
        + [data.round_markdown(view, r) + data.summary_diff_html(view.revision(r)) for r in range(view.last_round + 1)]
    )
    texts["python logs"] = caplog.text

    found = leaks(secrets, texts)
    tally.trial()
    for name, proc in paths.items():  # a failure path survived: exit 2, one error line, no secret in its output
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        clean = not leaks(secrets, {"out": proc.stdout + proc.stderr})
        tally.fault(survived=proc.returncode == 2 and len(errors) == 1 and clean)
        assert proc.returncode == 2 and len(errors) == 1, (name, proc.returncode, proc.stderr)
    assert found == [], found
    scanned = sum(1 for text in texts.values() if text)
    tally.note(f"{scanned} non-empty outputs scanned (files, commits, records, logs, errors, Space views): 0 secrets")
    assert os.environ.get("HF_TOKEN") == token  # the scan ran while the token was live in the environment
