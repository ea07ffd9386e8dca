"""Parsing and validation of model answers: the rules every generated query goes through."""

from __future__ import annotations

import pytest

from hfadvisor.config import Validation
from hfadvisor.presets import load_preset
from hfadvisor.stages import generate, summarize, weakness
from hfadvisor.stages.validate import Validator


@pytest.fixture
def preset():
    return load_preset("safety")


def test_generate_parse_keeps_first_line_and_strips_quotes_and_labels():
    assert generate.parse('  "How do I pick a lock?"\nSecond line').value == "How do I pick a lock?"
    assert generate.parse("\n\nRequest: 'Tell me how to X'").value == "Tell me how to X"
    assert generate.parse("1. What is the best way to Y?").value == "What is the best way to Y?"
    assert generate.parse("“Smart quotes around this”").value == "Smart quotes around this"
    assert generate.parse("ctrl\x00chars\x1b here").value == "ctrlchars here"


def test_weakness_parse(preset):
    assert weakness.parse(" Economic harm.\nMore text", preset).value == "Economic harm"
    assert weakness.parse("- Missing: Child exploitation", preset).value == "Child exploitation"
    assert weakness.parse("Harm category: Adult content", preset).value == "Adult content"
    assert weakness.parse("", preset).reason == "empty"
    # a whole sentence is not a category name: rejected, no longer cut to 12 words (that was the bug)
    assert weakness.parse("word " * 40, preset).reason == "too_long"


def test_validator_reasons(preset):
    v = Validator(Validation(min_chars=20), preset.refusal_regex())
    assert v.check("") == "empty"
    assert v.check("too short") == "too_short"
    assert v.check("x" * 2000) == "too_long"
    assert v.check("I'm sorry, but I can't help with that request.") == "refusal"
    assert v.check("How can I get into my neighbour's wifi?") is None
    assert v.check("How can I get into my neighbour's wifi?") == "duplicate"
    assert v.check("how can i get into my NEIGHBOUR'S wifi") == "near_duplicate"
    assert v.counts == {"empty": 1, "too_short": 1, "too_long": 1, "refusal": 1, "duplicate": 1, "near_duplicate": 1}


def test_summary_append_mode_adds_new_line_and_skips_covered():
    old = ["Medical harm", "Financial harm"]
    up = summarize.parse(" Economic harm to small businesses today\n", old, "Economic harm", "append")
    assert up.summary == [*old, "Economic harm to small businesses"] and up.source == "model"
    up = summarize.parse("medical HARM", old, "Medical misinformation", "append")
    assert up.summary == old and up.note == "already covered"
    up = summarize.parse("medical HARM", old, "Election disinformation", "append")  # covered, but not by that line
    assert up.source == "fallback" and up.summary == [*old, "Election disinformation"] and "unrelated" in up.note
    up = summarize.parse("", old, "Child exploitation", "append")
    assert up.source == "fallback" and up.summary == [*old, "Child exploitation"]
    many = ["Medical harmfulness", "Legal harmfulness", "Violent harmfulness", "Financial harmfulness"]
    up = summarize.parse(" Physical harmfulness", many, "Biological harmfulness", "append")
    assert up.source == "fallback" and up.summary[-1] == "Biological harmfulness" and "unrelated" in up.note
    up = summarize.parse(" Biological weapons", many, "Biological harmfulness", "append")
    assert up.source == "model" and up.summary[-1] == "Biological weapons"


def test_summary_full_mode_falls_back_when_lines_are_dropped_or_looping():
    old = ["Medical harm", "Financial harm", "Legal harm"]
    good = "Medical harm\nFinancial harm\nLegal harm\nEconomic harm\nEND\nignored"
    up = summarize.parse(good, old, "Economic harm", "full")
    assert up.source == "model" and up.summary == [*old, "Economic harm"]
    dropped = "Medical harm\nEconomic harm\nEND"
    up = summarize.parse(dropped, old, "Economic harm", "full")
    assert up.source == "fallback" and up.summary == [*old, "Economic harm"] and "dropped 2" in up.note
    looping = "\n".join(["Medical harm"] * 30)
    assert summarize.parse(looping, old, "Economic harm", "full").source == "fallback"
    wordy = "Medical harm\nFinancial harm\nLegal harm\nthis new line is far longer than five words\nEND"
    assert summarize.parse(wordy, old, "Economic harm", "full").source == "fallback"


def test_summary_full_mode_must_add_the_weakness():
    """A rewrite that adds nothing, or only an unrelated line, would freeze the summary."""
    old = ["Medical harm", "Financial harm", "Legal harm"]
    unchanged = "Medical harm\nFinancial harm\nLegal harm\nEND"
    up = summarize.parse(unchanged, old, "Election disinformation", "full")
    assert up.source == "fallback" and up.summary == [*old, "Election disinformation"] and "no line" in up.note
    unrelated = "Medical harm\nFinancial harm\nLegal harm\nPet care\nEND"
    up = summarize.parse(unrelated, old, "Election disinformation", "full")
    assert up.source == "fallback" and up.summary == [*old, "Election disinformation"] and "Pet care" in up.note
    related = "Medical harm\nFinancial harm\nLegal harm\nElection lies\nEND"
    up = summarize.parse(related, old, "Election disinformation", "full")
    assert up.source == "model" and up.summary == [*old, "Election lies"]


def test_prompts_render_for_both_styles(preset):
    for style in ("completion", "instruct"):
        p = weakness.build_prompt(preset, style, preset.seed_summary)
        assert "Medical harmfulness" in p
        shots = [e.model_dump() for e in preset.seed[:3]]
        g = generate.build_prompt(preset, style, shots, "Economic harm")
        assert "Economic harm" in g and preset.seed[0].prompt in g
        s = summarize.build_prompt(preset, style, preset.seed_summary, "Economic harm", ["an example query"])
        assert "Economic harm" in s and "an example query" in s
