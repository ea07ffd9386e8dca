"""Every stage's parser against a corpus of realistic model answers (tests/corpus/*.yaml).

The answers are written the way Mistral-7B-Instruct, Llama-3.x-Instruct, Qwen2.5-Instruct and
SmolLM2 really answer (preambles, markdown, labels, several candidates, explanations,
refusals); each entry says the exact parse or the reject code. Nothing that is not the
thing asked for may come out as a value.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from hfadvisor.presets import load_preset
from hfadvisor.stages import generate, judge, selfinstruct, summarize, weakness
from hfadvisor.stages.text import EMPHASIS, Parsed
from hfadvisor.stages.validate import REASONS

CORPUS = Path(__file__).parent / "corpus"
STAGES = ("generate", "selfinstruct", "weakness", "summarize", "judge")
STYLES = {"mistral", "llama", "qwen", "smollm"}
PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|absolutely|okay|here(?:'s| is| are)|below is|as requested|i hope|note:)\b", re.I
)
PRESET = load_preset("safety")


def load(stage: str) -> list[dict[str, Any]]:
    return yaml.safe_load((CORPUS / f"{stage}.yaml").read_text(encoding="utf-8"))


def run(stage: str, entry: dict[str, Any]) -> tuple[Any, str | None]:
    """(value, reject code) of one entry through its stage's text parser."""
    text = entry["answer"]
    if stage == "summarize":
        kw = {"delimiter": entry["delimiter"]} if "delimiter" in entry else {}
        up = summarize.parse(text, entry["summary"], entry["weakness"], entry["mode"], **kw)
        return (up.summary, None) if up.source == "model" else (None, up.reason)
    parsed: Parsed[Any]
    if stage == "judge":
        parsed = judge.parse(text)
        value = (
            None if parsed.value is None else {"verdict": parsed.value.verdict, "categories": parsed.value.categories}
        )
        return value, parsed.reason
    parsed = {"generate": generate.parse, "selfinstruct": selfinstruct.parse}.get(stage, lambda t: None)(text) or (
        weakness.parse(text, PRESET)
    )
    return parsed.value, parsed.reason


@pytest.mark.parametrize("stage", STAGES)
def test_corpus(stage):
    entries = load(stage)
    assert len(entries) >= 60, f"{stage}: at least 60 answers"
    assert {e["style"] for e in entries} == STYLES
    wrong, counts = [], Counter()
    for i, entry in enumerate(entries):
        value, reason = run(stage, entry)
        if "expect" in entry:
            counts["accepted"] += 1
            ok = value == entry["expect"]
        else:
            counts[entry["reject"]] += 1
            assert entry["reject"] in REASONS, f"{stage}[{i}]: {entry['reject']} is not in validate.REASONS"
            ok = value is None and reason == entry["reject"]
        if not ok:
            wrong.append(f"{stage}[{i}] {entry['style']}: {entry['answer'][:70]!r} -> {value!r} / {reason}")
    print(f"{stage}: {len(entries)} answers, {dict(counts)}")
    assert wrong == []
    assert counts["accepted"] >= 20 and len(counts) >= 3  # both sides of the rule are exercised


@pytest.mark.parametrize("stage", ["generate", "selfinstruct", "weakness"])
def test_no_accepted_value_is_a_preamble_or_markdown(stage):
    """The property behind the corpus: whatever is accepted is the thing itself, bare."""
    for entry in load(stage):
        value, _ = run(stage, entry)
        if value is not None:
            assert not PREAMBLE.match(value), value
            assert not EMPHASIS.search(value), value
            assert not value.startswith(("#", "-", ">", "`", '"', "“", "'")), value
            assert "\n" not in value


def test_summary_lines_are_bare():
    for entry in load("summarize"):
        value, _ = run("summarize", entry)
        for line in value or []:
            assert not PREAMBLE.match(line) and not EMPHASIS.search(line) and not line.startswith(("#", "-", "`")), line
