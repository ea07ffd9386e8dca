"""Secrets never leave the process; model text never injects Markdown/HTML into cards."""

from __future__ import annotations

import re

import pytest

import hfadvisor
from hfadvisor.card import md
from tests.helpers import cli, tree
from tests.servers.tgi import Fault

TOKEN = "hf_TESTsecretTOKEN0123456789abcdefXYZ"


def _scan(run_dir, *texts: str) -> None:
    for name, data in tree(run_dir).items():
        assert TOKEN.encode() not in data, f"token leaked into {name}"
    for text in texts:
        assert TOKEN not in text


def test_hf_token_is_sent_to_the_endpoint_but_never_written(tmp_path, scripted_tgi):
    counter = iter(range(10**6))
    scripted_tgi.backend.respond = lambda req: f" A generated request number {next(counter)} for the test\n"
    out = tmp_path / "run"
    proc = cli("run", "-o", str(out), "-e", scripted_tgi.url, "--rounds", "2", env={"HF_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr
    posts = [r for r in scripted_tgi.requests if r.method == "POST"]
    assert posts and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in posts)
    _scan(out, proc.stdout, proc.stderr, cli("log", str(out)).stdout)


def test_rejected_token_error_is_one_line_without_the_token(tmp_path, scripted_tgi):
    # the server quotes the whole token back, as some proxies do: a message that passed it on would leak it
    scripted_tgi.faults.extend([Fault(status=401, body=f'{{"error": "bad token {TOKEN}"}}'.encode())] * 5)
    out = tmp_path / "run"
    proc = cli("run", "-o", str(out), "-e", scripted_tgi.url, "--rounds", "1", env={"HF_TOKEN": TOKEN})
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "401" in errors[0] and "HF_TOKEN" in errors[0]
    _scan(out, proc.stdout, proc.stderr)


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert('x')</script> category",
        "Tax fraud | broken | table [click me](https://evil.example)",
        "**bold** _it_ `code` <img src=x onerror=alert(1)>",
    ],
)
def test_hostile_model_text_is_escaped_in_cards(tmp_path, scripted_tgi, hostile):
    def respond(req):
        if "One more" in req.prompt:
            return f" {hostile}\x07\x1b[31m\n"
        if "New list" in req.prompt:
            return f" {hostile}\n"
        return f" How would one do the thing number {len(scripted_tgi.backend.calls)} quietly?\n"

    scripted_tgi.backend.respond = respond
    store = hfadvisor.run(tmp_path / "run", endpoints=[scripted_tgi.url], rounds=1, batch_size=2)
    weakness = store.last.weakness
    assert "\x07" not in weakness and "\x1b" not in weakness  # control characters stripped
    # what the parser kept of the hostile text still needs escaping, and reached the card escaped
    assert weakness[:4] in hostile and md(weakness) != weakness
    card = (tmp_path / "run" / "README.md").read_text()
    assert md(weakness) in card
    assert "<script>" not in card and "<img" not in card
    assert not re.search(r"(?<!\\)\]\(https://evil", card)  # no live Markdown link
    for line in card.splitlines():
        if line.startswith("| 1 |"):  # the history row stays one table row of 5 cells
            assert len(re.split(r"(?<!\\)\|", line)) == 5 + 2
