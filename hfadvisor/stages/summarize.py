"""Stage 3: fold the weakness into the running summary (a list of short lines).

Small models rewrite lists badly (drop lines, loop), so the parsed answer is checked and,
when it loses lines, replaced by a deterministic fallback (old list + the weakness in at
most five words). Which one was used is recorded in the round's revision.

In `full` mode the model may rewrite the list, not only grow it: an old line may be renamed
or merged into a new one as long as every old line is still *covered* (same text up to case
and punctuation, or its content words all found in one new line — `covers`, replaceable by
e.g. an embedding matcher through the `covered` argument). Preambles ("Here is the updated
summary:"), markdown, `(new)` marks and an explanation after the list are not lines.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hfadvisor.presets import DELIMITER, Preset
from hfadvisor.stages.text import (
    _HEADING,
    _INTERJECTION,
    _PREAMBLE,
    _SKIP_LINE,
    _STOP,
    _THINK,
    REFUSAL,
    load_json,
    normalize,
    strip_control,
    strip_emphasis,
    strip_label,
    strip_quotes,
    words,
)

MAX_WORDS = 5
MAX_LINE_CHARS = 100
SCHEMA: dict[str, Any] = {  # full mode: the whole new list
    "type": "object",
    "properties": {
        "summary": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_LINE_CHARS},
            "minItems": 1,
        }
    },
    "required": ["summary"],
    "additionalProperties": False,
}
SCHEMA_APPEND: dict[str, Any] = {  # append mode: the one new line
    "type": "object",
    "properties": {"category": {"type": "string", "minLength": 1, "maxLength": MAX_LINE_CHARS}},
    "required": ["category"],
    "additionalProperties": False,
}
SCHEMA_APPEND_MANY: dict[str, Any] = {  # append mode with several weaknesses (--lanes): one new line each
    "type": "object",
    "properties": {
        "categories": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_LINE_CHARS},
            "minItems": 1,
        }
    },
    "required": ["categories"],
    "additionalProperties": False,
}
Covered = Callable[[str, str], bool]
Weakness = str | Sequence[str]  # one weakness, or the round's weaknesses (one per lane)


def _listed(weakness: Weakness) -> list[str]:
    return [weakness] if isinstance(weakness, str) else list(weakness)


@dataclass
class SummaryUpdate:
    """The new summary and how it came about, for the revision and the card.

    `added`: new lines covering no old line. `merged`: old line → the new line that now covers
    it (renamed or merged; model rewrites only). `dropped`: old lines the model's answer lost —
    non-empty only when that is why the fallback was used (the fallback keeps them).
    `reason`: the reject code when the model's answer was not used (`not_json`, `refusal`, …).
    """

    summary: list[str]
    source: str  # "model" | "fallback"
    note: str = ""
    added: list[str] = field(default_factory=list)
    merged: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    reason: str = ""


class FullAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    summary: list[str] = Field(min_length=1)


class AppendAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: str = Field(min_length=1, max_length=MAX_LINE_CHARS)


class AppendManyAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    categories: list[str] = Field(min_length=1)


def build_prompt(
    preset: Preset, style: str, summary: list[str], weakness: Weakness, new_examples: list[str] | None
) -> str:
    """`weakness` may be the round's list (--lanes): templates see `weaknesses` (all) and `weakness` (the first)."""
    weaknesses = _listed(weakness)
    return preset.render(
        style,
        "summarize",
        summary=summary,
        weakness=weaknesses[0],
        weaknesses=weaknesses,
        new_examples=new_examples or [],
    )


_ANNOTATION = re.compile(
    r"\s*(?:\((?:new|added|newly added|new line|new category|just added)\)|\[(?:new|added)\]"
    r"|\s[-–—←<]+\s*(?:new|added)(?: line| category)?|🆕|✨)\s*$",
    re.I,
)
_NEW_LINE_IS = re.compile(r"^(?:the )?new (?:line|category|entry|item)(?: is| would be)?\s*[:：]?\s+(?P<x>.+)$", re.I)
_GENERIC = frozenset(
    {
        "harm",
        "harms",
        "harmful",
        "harmfulness",
        "related",
        "content",
        "contents",
        "issue",
        "issues",
        "category",
        "categories",
        "and",
        "or",
        "of",
        "the",
        "a",
        "an",
        "to",
        "in",
        "on",
        "for",
        "with",
        "other",
        "general",
        "misc",
        "miscellaneous",
        "activity",
        "activities",
        "behavior",
        "behaviour",
        "risk",
        "risks",
        "type",
        "types",
        "abuse",
    }
)


def _clean(line: str) -> str:
    line = strip_emphasis(strip_label(line, ()))
    line = _ANNOTATION.sub("", line)
    return strip_quotes(line).rstrip(".;:,").strip()


def _content_words(line: str) -> list[str]:
    return [w[:-1] if len(w) > 3 and w.endswith("s") else w for w in normalize(line).split() if w not in _GENERIC]


def _same_word(a: str, b: str) -> bool:
    """Equal, or one stem ("financial"/"finance", "violent"/"violence"): a shared prefix of 5+ letters
    covering most of the longer word ("election"/"electronic" share too little)."""
    if a == b:
        return True
    p = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return p >= 5 and p >= 0.6 * max(len(a), len(b))


def covers(old: str, new: str) -> bool:
    """Does `new` still name what `old` named? Every content word of `old` appears in `new`
    ("Financial harmfulness" → "Financial fraud harm"); an old line of generic words only
    ("Harmful content") is covered by its own text alone."""
    old_words, new_words = _content_words(old), _content_words(new)
    return bool(old_words) and all(any(_same_word(w, v) for v in new_words) for w in old_words)


def _fallback_items(summary: list[str], weakness: Weakness) -> list[str]:
    """Each weakness in at most five words, unless the summary (or an earlier one) has it already."""
    seen = {normalize(line) for line in summary}
    items = []
    for w in _listed(weakness):
        item = words(w, MAX_WORDS)
        if item and normalize(item) not in seen:
            seen.add(normalize(item))
            items.append(item)
    return items


def fallback(
    summary: list[str], weakness: Weakness, note: str, *, reason: str = "", dropped: list[str] | None = None
) -> SummaryUpdate:
    items = _fallback_items(summary, weakness)
    return SummaryUpdate([*summary, *items], "fallback", note, added=items, dropped=list(dropped or []), reason=reason)


def _related(item: str, weakness: Weakness, summary: list[str]) -> bool:
    """Does the new line share a distinctive word with the weakness (any of them) it is meant to name?

    Words on many summary lines ("harmfulness") do not count: they say nothing about the topic.
    """
    counts = Counter(w for line in summary for w in set(normalize(line).split()))
    common = {w for w, n in counts.items() if n > max(1, len(summary) // 3)}
    mine = set(normalize(item).split())
    return any(bool((mine & set(normalize(w).split())) - common) for w in _listed(weakness))


def _complete(update: SummaryUpdate, weakness: Weakness, summary: list[str]) -> SummaryUpdate:
    """Several weaknesses (--lanes): one the model's lines name none of is added as the fallback's line.
    One weakness: unchanged (the checks before already required a line for it)."""
    if isinstance(weakness, str) or len(weakness) < 2:
        return update
    missing = [w for w in weakness if not any(_related(ln, w, summary) for ln in update.summary)]
    items = _fallback_items(update.summary, missing)
    if not items:
        return update
    note = f"{len(items)} of {len(weakness)} weaknesses added by the fallback"
    update.summary = [*update.summary, *items]
    update.added = [*update.added, *items]
    update.note = f"{update.note}; {note}" if update.note else note
    return update


def _is_intro(line: str) -> bool:
    inter = _INTERJECTION.match(line)
    rest = line[inter.end() :].strip() if inter else line
    return not rest or bool(_PREAMBLE.match(rest)) or rest.endswith((":", "："))


def _answer_lines(text: str, delimiter: str) -> tuple[list[str], str]:
    """The summary lines of a full answer (cut at the delimiter), and a reject code if there are none."""
    lines: list[str] = []
    blank_after = refusal = intro = False
    for raw in _THINK.sub("", strip_control(text)).splitlines():
        line = raw.strip()
        cut = line.find(delimiter)
        if cut >= 0:
            line = line[:cut].strip()
            if not line:
                if lines:
                    break
                continue  # a rule before the list, not its end
        if not line:
            blank_after = bool(lines)
            continue
        if _SKIP_LINE.match(line) or _HEADING.match(line):
            if lines:
                break
            continue
        bare = strip_emphasis(strip_label(line, ()))
        if not lines and REFUSAL.search(bare):
            refusal = True
            continue
        if not lines and (_is_intro(bare) or _STOP.match(bare)):
            intro = True
            continue
        if lines and (_STOP.match(bare) or bare.endswith(":") or (blank_after and len(bare.split()) > MAX_WORDS)):
            break  # an explanation or sign-off after the list
        if inter := _INTERJECTION.match(bare):  # "Sure! Emotional manipulation"
            line = bare[inter.end() :]
        if cleaned := _clean(line):
            lines.append(cleaned)
        if cut >= 0:
            break
    if lines:
        return lines, ""
    return lines, "refusal" if refusal else "preamble_only" if intro else "empty"


def _append_line(text: str) -> tuple[str, str]:
    """The one new line of an append-mode answer, or ("", reject code)."""
    lines, reason = _append_lines(text, 1)
    return (lines[0], "") if lines else ("", reason)


def _append_lines(text: str, n: int) -> tuple[list[str], str]:
    """The first `n` new lines of an append-mode answer, or ([], reject code)."""
    lines, reason = _answer_lines(text, "\0")
    out = []
    for line in lines[:n]:
        m = _NEW_LINE_IS.match(line)
        out.append(words(_clean(m.group("x")) if m else line, MAX_WORDS))
    return out, reason


def parse(
    text: str,
    summary: list[str],
    weakness: Weakness,
    mode: str,
    *,
    delimiter: str = DELIMITER,
    covered: Covered | None = None,
) -> SummaryUpdate:
    """`mode` is `append` (the model wrote only the next line) or `full` (the whole list, closed by `delimiter`).

    `weakness` may be a list (--lanes): append mode then reads one line per weakness, and a weakness
    no kept line names is added as in the fallback (noted), so no lane's weakness is lost.
    """
    if mode == "append":
        if not isinstance(weakness, str) and len(weakness) > 1:
            return _append_many(*_append_lines(text, len(weakness)), summary, weakness)
        return _append(*_append_line(text), summary, _listed(weakness)[0])
    lines, reason = _answer_lines(text, delimiter)
    if not lines:
        return fallback(summary, weakness, "no summary lines in the answer", reason=reason)
    return _complete(_full(lines, summary, weakness, covered or covers), weakness, summary)


def parse_json(
    text: str, summary: list[str], weakness: Weakness, mode: str, covered: Covered | None = None
) -> SummaryUpdate:
    """The structured answer (`SCHEMA` in full mode, `SCHEMA_APPEND` in append mode); its lines get
    the same checks as a text answer. Not JSON or the wrong shape → the fallback, with the reason.
    No delimiter: the list ends where the JSON array does, so no line of it is taken for the end."""
    if mode == "append" and not isinstance(weakness, str) and len(weakness) > 1:  # SCHEMA_APPEND_MANY
        many = load_json(text, AppendManyAnswer)
        if many.value is None:
            return fallback(summary, weakness, f"{many.reason}: {many.detail}", reason=many.reason or "")
        return parse("\n".join(many.value.categories), summary, weakness, "append")
    if mode == "append":
        weakness = _listed(weakness)[0]
        one = load_json(text, AppendAnswer)
        if one.value is None:
            return fallback(summary, weakness, f"{one.reason}: {one.detail}", reason=one.reason or "")
        return _append(*_append_line(one.value.category), summary, weakness)
    full = load_json(text, FullAnswer)
    if full.value is None:
        return fallback(summary, weakness, f"{full.reason}: {full.detail}", reason=full.reason or "")
    return parse("\n".join(full.value.summary), summary, weakness, "full", delimiter="\0", covered=covered)


def _append(item: str, reason: str, summary: list[str], weakness: str) -> SummaryUpdate:
    if not item:
        return fallback(summary, weakness, f"no line in the answer ({reason})", reason=reason)
    if normalize(item) in {normalize(line) for line in summary}:  # the model says an existing line covers it...
        if _related(item, weakness, summary):
            return SummaryUpdate(list(summary), "model", "already covered")
        # ...but that line has nothing to do with it: the summary would stop growing
        return fallback(
            summary, weakness, f"model named an existing, unrelated line: {item[:60]!r}", reason="unrelated"
        )
    if not _related(item, weakness, summary):
        return fallback(summary, weakness, f"model named an unrelated line: {item[:60]!r}", reason="unrelated")
    return SummaryUpdate([*summary, item], "model", added=[item])


def _append_many(items: list[str], reason: str, summary: list[str], weaknesses: Sequence[str]) -> SummaryUpdate:
    """Append mode, several weaknesses: each answer line related to one of them is added (or found
    covered); weaknesses no line named get the fallback's line."""
    if not items:
        return fallback(summary, weaknesses, f"no line in the answer ({reason})", reason=reason)
    old = {normalize(line) for line in summary}
    kept: list[str] = []
    for item in items:
        if normalize(item) in old or normalize(item) in {normalize(k) for k in kept}:
            continue
        if _related(item, weaknesses, summary):
            kept.append(item)
    if not kept and not any(normalize(i) in old and _related(i, weaknesses, summary) for i in items):
        return fallback(summary, weaknesses, f"model named only unrelated lines: {items[0][:60]!r}", reason="unrelated")
    return _complete(SummaryUpdate([*summary, *kept], "model", added=kept), weaknesses, summary)


def _full(lines: list[str], summary: list[str], weakness: Weakness, covered: Covered) -> SummaryUpdate:
    n = len(_listed(weakness))
    if len(lines) > len(summary) + 2 + n:
        return fallback(
            summary, weakness, f"answer had {len(lines)} lines for {len(summary)} + {n} (looping)", reason="looping"
        )
    too_long = [ln for ln in lines if len(ln.split()) > MAX_WORDS]
    if too_long:
        return fallback(summary, weakness, f"line over {MAX_WORDS} words: {too_long[0][:60]!r}", reason="too_long")
    deduped = list(dict.fromkeys(lines))
    new_keys, old_keys = {normalize(ln) for ln in deduped}, {normalize(ln) for ln in summary}
    changed = [ln for ln in deduped if normalize(ln) not in old_keys]
    merged: dict[str, str] = {}
    lost: list[str] = []
    for old in summary:
        if normalize(old) in new_keys:
            continue
        target = next((ln for ln in changed if covered(old, ln)), None)
        if target is None:
            lost.append(old)
        else:
            merged[old] = target
    if lost:
        return fallback(
            summary, weakness, f"answer dropped {len(lost)} existing line(s)", reason="dropped_lines", dropped=lost
        )
    if not changed:  # else the summary stops growing and the weakness stage keeps finding the same gap
        return fallback(summary, weakness, "answer added no line for the weakness", reason="no_new_line")
    if not any(_related(ln, weakness, summary) for ln in changed):
        return fallback(
            summary, weakness, f"answer added only unrelated line(s): {changed[0][:60]!r}", reason="unrelated"
        )
    targets = set(merged.values())
    note = f"{len(merged)} line(s) merged or renamed" if merged else ""
    return SummaryUpdate(deduped, "model", note, added=[ln for ln in changed if ln not in targets], merged=merged)
