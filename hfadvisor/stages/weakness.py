"""Stage 1: ask what the dataset does not cover yet (the weakness).

The answer should be a category name of a few words. Instruct models answer with sentences
("The harm category not covered yet is emotional manipulation."), labels, bold, and an
explanation after a dash or in brackets: the name is taken when that is unambiguous, and
anything else (several candidates, a question, more than `MAX_WORDS` words) is a reject.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hfadvisor.presets import Preset
from hfadvisor.stages.summarize import covers
from hfadvisor.stages.text import Parsed, extract, load_json, reject, strip_emphasis, strip_quotes

MAX_WORDS = 12
MAX_CHARS = 200
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"category": {"type": "string", "minLength": 1, "maxLength": MAX_CHARS}},
    "required": ["category"],
    "additionalProperties": False,
}
STOP_LABELS = (
    r"explanation|note|notes|rationale|reasoning|reason|why|justification|description|definition|details"
    r"|examples?|example requests?|requests?|prompts?|scope|covers|includes"
)
_SENTENCES = [
    re.compile(  # "The harm category not covered yet is X", "A missing category would be X"
        r"^.*?\b(?:not (?:yet )?(?:covered|included|listed|represented|present|addressed)(?: yet)?|missing|uncovered"
        r"|absent|lacking)\b.{0,60}?\b(?:is|would be|could be|might be|are)\s*[:：]?\s+(?P<x>.+)$",
        re.I,
    ),
    re.compile(  # "The dataset lacks X", "The list does not cover X"
        r"^(?:the |this |your )?(?:dataset|list|summary)\s+(?:is (?:missing|lacking)|lacks|does not (?:yet )?"
        r"(?:cover|include)|doesn't (?:yet )?(?:cover|include)|could (?:also )?(?:include|cover|use)"
        r"|should (?:also )?(?:include|cover))\s+(?P<x>.+)$",
        re.I,
    ),
    re.compile(r"^i (?:would )?(?:suggest|propose|recommend)(?: adding)?\s*:?\s+(?P<x>.+)$", re.I),
    re.compile(  # "X is not covered yet."
        r"^(?P<x>.{2,80}?)(?:,?\s+which)?\s+(?:is|are)\s+(?:not (?:yet )?(?:covered|included|listed|represented)"
        r"|missing)\b.*$",
        re.I,
    ),
]
# an explanation after the name: "X - using…", "X (e.g. …)", "X: …", "X, which…"
_TAIL = re.compile(r"\s+[-–—]\s+|\s*\(|:\s|,\s*(?:which|such as|including|e\.g\.|i\.e\.|like|where|as)\b|\.\s+\S")
_ARTICLE = re.compile(r"^(?:the|a|an)\s+(?:(?:category|area|topic) of\s+)?", re.I)


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: str = Field(min_length=1, max_length=MAX_CHARS)


def build_prompt(preset: Preset, style: str, summary: list[str], feedback: str | None = None) -> str:
    """`feedback` (e.g. what human labellers found) is shown to the model when given."""
    return preset.render(style, "weakness", summary=summary, feedback=feedback or "")


@functools.lru_cache(maxsize=16)
def _labels(noun: str) -> str:
    nouns = "|".join(re.escape(n) for n in {noun, noun.split()[-1]} if n)
    return rf"{nouns}|category|answer|weakness|gap|topic|area|missing|not covered yet|output|response|harm"


def _rewrite(line: str) -> str:
    """A sentence naming the category → the category; a name with an explanation → the name."""
    if line.endswith("?"):
        return line  # a question is never a category; `_check` rejects it
    for pattern in _SENTENCES:
        m = pattern.match(line.rstrip(" .!"))
        if m:
            line = _ARTICLE.sub("", strip_quotes(strip_emphasis(m.group("x"))))
            break
    head = _TAIL.split(line, maxsplit=1)[0].strip()
    return head or line


def _check(name: str) -> Parsed[str]:
    name = strip_quotes(name.strip().rstrip(".;:,!").strip())
    if not name:
        return reject("empty")
    if name.endswith("?"):
        return reject("meta_talk", name)  # a question (often the prompt's own) is not a category
    if len(name.split()) > MAX_WORDS:
        return reject("too_long", name)
    return Parsed(name)


def parse(text: str, preset: Preset) -> Parsed[str]:
    """The category named by a text answer (at most 12 words), or the reject reason."""
    found = extract(text, _labels(preset.noun), stop_labels=STOP_LABELS, rewrite=_rewrite)
    return _check(found.value) if found.value is not None else found


def parse_json(text: str, preset: Preset) -> Parsed[str]:
    """The structured answer `{"category": ...}`; the field gets the same checks as a text answer."""
    loaded = load_json(text, Answer)
    if loaded.value is None:
        return Parsed(reason=loaded.reason, detail=loaded.detail)
    return parse(loaded.value.category, preset)


def same_category(candidate: str, found: list[str]) -> bool:
    """Does `candidate` name what a lane of this round already aims at? ("Financial fraud" and
    "Financial fraud schemes": every content word of one is in the other.) Without it, two lanes
    proposed from the same summary could spend a round on one category (--lanes; K = 1 never asks)."""
    return any(covers(f, candidate) or covers(candidate, f) for f in found)
