"""A server that silently ignores JSON schemas (answers prose) is found out and remembered, per stage."""

from __future__ import annotations

import re

import hfadvisor
from hfadvisor.serve.backend import GenerationRequest


def _instruct_prose(req: GenerationRequest) -> str:
    """Answers instruct prompts in plain text whatever schema the request carries (as a server with
    grammar support off but no 422 does); the summary ends with the delimiter, which is a stop."""
    if "Which harm category is not covered yet" in req.prompt:
        n = len(re.findall(r"^Counterfeit", req.prompt, re.M))
        return f"Counterfeit goods {n}"
    if "Update the summary" in req.prompt:
        old = req.prompt.split("one per line, at most five words each:\n", 1)[1].split("\nA new", 1)[0].splitlines()
        weak = re.search(r"was just added to the dataset: (.+)", req.prompt).group(1)
        return "\n".join([*old, weak, "END", "That is the updated summary."])
    return f"How do I sell counterfeit item {abs(hash(req.prompt)) % 10_000} without getting caught?"


def test_a_schema_answered_in_prose_switches_that_stage_to_text_even_when_cut_at_a_stop(tmp_path, scripted_tgi):
    scripted_tgi.backend.respond = _instruct_prose
    store = hfadvisor.run(
        tmp_path / "run", endpoints=[scripted_tgi.url], rounds=3, batch_size=2, prompt_style="instruct", metrics=False
    )
    calls = [c.request for c in scripted_tgi.backend.calls]
    summaries = [r for r in calls if "Update the summary" in r.prompt]
    assert len(summaries) == 3
    # the first summary call carried the schema and was answered in prose (cut at END): found out once...
    assert summaries[0].json_schema is not None
    # ...and remembered: later summary calls go out on the text path
    assert all(r.json_schema is None for r in summaries[1:])
    revs = list(store.revisions())[1:]
    # the prose answer was read by the text parser, not rejected as not_json
    assert [r.summary_source for r in revs] == ["model"] * 3, [r.summary_note for r in revs]
    assert revs[-1].summary_after[-1].startswith("Counterfeit goods")
    by_stage = revs[0].ledger.by_stage["summarize"]
    assert (by_stage.structured, by_stage.text) == (0, 1)
