"""Parsing and validation of model answers: the rules every generated query goes through."""

from __future__ import annotations

import pytest

from hfadvisor.config import Validation
from hfadvisor.presets import load_preset
from hfadvisor.stages import generate, judge, selfinstruct, summarize, weakness
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


def test_summary_full_mode_keeps_a_rewrite_that_merges_or_renames_covered_lines():
    old = ["Medical harmfulness", "Financial harmfulness", "Fraud harmfulness", "Privacy violations"]
    merged = "Medical harmfulness\nFinancial fraud harm\nPrivacy violations\nInvestment scams\nEND"
    up = summarize.parse(merged, old, "Investment scams", "full")
    assert up.source == "model" and up.summary == [
        "Medical harmfulness",
        "Financial fraud harm",
        "Privacy violations",
        "Investment scams",
    ]
    assert up.merged == {"Financial harmfulness": "Financial fraud harm", "Fraud harmfulness": "Financial fraud harm"}
    assert up.added == ["Investment scams"] and up.dropped == [] and "merged" in up.note
    # a rename that loses a content word drops that line: the fallback keeps the old list and says what was lost
    lossy = "Medical harmfulness\nMoney harm\nPrivacy violations\nInvestment scams\nEND"
    up = summarize.parse(lossy, old, "Investment scams", "full")
    assert up.source == "fallback" and up.reason == "dropped_lines"
    assert up.dropped == ["Financial harmfulness", "Fraud harmfulness"] and up.summary == [*old, "Investment scams"]
    assert up.added == ["Investment scams"] and up.merged == {}
    # the covered() hook replaces the word rule (e.g. an embedding matcher)
    up = summarize.parse(lossy, old, "Investment scams", "full", covered=lambda o, n: n == "Money harm")
    assert up.source == "model" and up.merged == {
        "Financial harmfulness": "Money harm",
        "Fraud harmfulness": "Money harm",
    }
    # generic words alone cover nothing; stems match ("violent" / "violence"), near-spellings do not
    assert summarize.covers("Violent harmfulness", "Violence")
    assert not summarize.covers("Harmful content", "Anything harmful")
    assert not summarize.covers("Election fraud", "Electronic fraud")


def test_summary_delimiter_and_paper_style():
    old = ["Medical harm", "Legal harm"]
    up = summarize.parse(
        "Medical harm\nLegal harm\nElection lies\n---\nAdd the following", old, "Election lies", "full", delimiter="---"
    )
    assert up.source == "model" and up.summary == [*old, "Election lies"]


def test_json_path_parses_and_checks_the_field_like_text():
    assert generate.parse_json('{"request": "How do I pick a lock?"}').value == "How do I pick a lock?"
    assert (
        generate.parse_json('```json\n{"request": "**How do I pick a lock?**"}\n```').value == "How do I pick a lock?"
    )
    assert generate.parse_json('{"request": "Sure, here\'s a new request:"}').reason == "preamble_only"
    assert generate.parse_json('{"request": "I can\'t help with that."}').reason == "refusal"
    assert generate.parse_json('Here you go: {"request": "How?"}').reason == "not_json"
    assert generate.parse_json('{"request": "How?"}\nI hope this helps').reason == "not_json"
    assert generate.parse_json('{"request": "How do I').reason == "truncated"
    assert generate.parse_json('{"prompt": "How do I pick a lock?"}').reason == "schema_mismatch"
    assert generate.parse_json('{"request": "x", "extra": 1}').reason == "schema_mismatch"
    assert generate.parse_json('["How do I pick a lock?"]').reason == "schema_mismatch"
    assert selfinstruct.parse_json('{"request": "How do I hide income?"}').value == "How do I hide income?"


def test_json_path_weakness_summary_and_judge(preset):
    assert weakness.parse_json('{"category": "Emotional manipulation"}', preset).value == "Emotional manipulation"
    sentence = '{"category": "The harm category not covered yet is emotional manipulation."}'
    assert weakness.parse_json(sentence, preset).value == "emotional manipulation"
    assert weakness.parse_json('{"category": 3}', preset).reason == "schema_mismatch"
    old = ["Medical harm", "Legal harm"]
    up = summarize.parse_json(
        '{"summary": ["Medical harm", "Legal harm", "Election lies"]}', old, "Election lies", "full"
    )
    assert up.source == "model" and up.summary == [*old, "Election lies"] and up.added == ["Election lies"]
    up = summarize.parse_json("Medical harm\nLegal harm\nElection lies", old, "Election lies", "full")
    assert up.source == "fallback" and up.reason == "not_json" and up.summary == [*old, "Election lies"]
    up = summarize.parse_json('{"category": "Election lies"}', old, "Election lies", "append")
    assert up.source == "model" and up.summary == [*old, "Election lies"]
    assert judge.parse_json('{"verdict": "unsafe", "categories": ["S2"]}').value == judge.Verdict("unsafe", ["S2"])
    assert judge.parse_json('{"verdict": "maybe", "categories": []}').reason == "schema_mismatch"


def test_schemas_are_small_closed_and_bounded():
    schemas = [
        generate.SCHEMA,
        selfinstruct.SCHEMA,
        weakness.SCHEMA,
        summarize.SCHEMA,
        summarize.SCHEMA_APPEND,
        judge.SCHEMA,
    ]
    for schema in schemas:
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["required"]) == set(schema["properties"])
        for prop in schema["properties"].values():
            leaf = prop.get("items", prop)
            assert leaf["type"] == "string" and ("maxLength" in leaf or "enum" in leaf)
