"""Reading model answers: clean-up shared by the stages, and the one extractor they all use.

Instruct models wrap the thing asked for in preambles ("Sure! Here's a new request:"),
markdown, labels, numbered alternatives, explanations and sign-offs. `extract` finds the one
answer line or says why there is none (a reject code from `validate.REASONS`): when it is
not clear which line is the answer, the answer is rejected, never guessed.

Rules of `extract`, line by line (blank lines, code fences, rules and table separators skip):
* before the answer, preambles (`Sure!`, `Here is…`, any line ending with `:`), headings,
  label-only lines (`**Request:**`) and sentences about the task are skipped; a preamble
  with content after its colon (`Sure, here's one: "How…"`) gives that content;
* the first other line is the answer, after list markers, emphasis, a content label
  (`Request:`) and quotes are stripped; a refusal or a sentence about the task is a reject;
* after the answer, an explanation, note, sign-off, or any heading/label that is not
  another answer ends the reading; another candidate (a list item, a content label, a
  whole-line quote, a question, "Alternatively"/"another" intros) is `multiple_candidates`;
  other prose lines are commentary and ignored.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """A parsed model answer, or why it was rejected: model output is untrusted input."""

    value: T | None = None
    reason: str | None = None  # reject code (see validate.REASONS) when value is None
    detail: str = ""  # short human note (what was seen), never the whole answer

    @property
    def ok(self) -> bool:
        return self.value is not None


def reject(reason: str, seen: str = "") -> Parsed[Any]:
    """A reject whose detail quotes at most 60 characters of what was seen."""
    return Parsed(reason=reason, detail=seen.strip()[:60])


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_BULLET = re.compile(r"^\s*(?:[-*•+>]+|\d{1,3}[.)]|\(\d{1,3}\)|[a-z][.)])\s+")
_QUOTES = "\"'`“”‘’«»„‚‹›「」『』"
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.S | re.I)
_SKIP_LINE = re.compile(r"^(?:`{3,}.*|~{3,}.*|[-*_=]{3,}|\|?[\s:|-]*-{3,}[\s:|-]*\|?)$")
_HEADING = re.compile(r"^#{1,6}\s*(.*?)\s*#*$")
# Emphasis markers wrap words: they open after a non-word character and close before one, so
# identifiers (`__init__`, `window.__x`) and arithmetic (`2**10`) inside a request are kept.
_EMPHASIS = [
    re.compile(r"(?<!\w)\*\*(?=\S)(.+?)(?<=\S)\*\*(?!\w)"),
    re.compile(r"(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)"),
    re.compile(r"(?<!\w)~~(?=\S)(.+?)(?<=\S)~~(?!\w)"),
    re.compile(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])"),
    re.compile(r"(?<![\w_])_(?![\s_])(.+?)(?<![\s_])_(?![\w_])"),
]
EMPHASIS = re.compile(r"(?<!\w)(?:\*\*|__|~~)(?=\S)|(?<![\w*])\*(?=\w)")  # what no accepted text may still contain

_INTERJECTION = re.compile(
    r"^(?:sure(?: thing)?|certainly|of course|absolutely|okay|ok|alright|all right|great|gladly|no problem"
    r"|understood|got it|happy to help)\b(?:\s*[,!.:;—–-]+\s*|\s+(?=here|i\b|this\b|below|the following|let))",
    re.I,
)
_PREAMBLE = re.compile(
    r"^(?:here(?:'s| is| are|’s)|below (?:is|are)|the following|as requested|following (?:is|are)"
    r"|i(?:'ve| have) (?:written|created|generated|come up with|crafted|made|updated)"
    r"|let me (?:write|create|generate|provide|give|think|suggest)|my (?:answer|suggestion|request) (?:is|would be)"
    r"|in response|based on (?:the|your))\b",
    re.I,
)
_ANOTHER = re.compile(r"\b(?:another|alternative(?:ly)?|more|second|other|also|or)\b", re.I)
_CHOICE = re.compile(r"^(?:option|alternative|version|variant|candidate|idea|suggestion|choice)\b", re.I)
REFUSAL = re.compile(
    r"^(?:(?:i'?m|i am|i’m) (?:sorry|unable|not able|afraid)|sorry\b|unfortunately\b|as an ai\b"
    r"|i (?:can(?:no|'|’)?t|cannot|won(?:'|’)?t|will not|must decline|do not|don(?:'|’)?t) "
    r"(?:help|assist|provide|create|generate|write|fulfill|comply|do that|do this|produce|give|participate|engage"
    r"|feel comfortable|support)"
    r"|i (?:must|have to|need to) (?:decline|refuse))"
    r"|\bi can(?:no|'|’)?t (?:help|assist|provide|create|generate|write|fulfill)",
    re.I,
)
_STOP = re.compile(
    r"^(?:\(|\[|i hope|hope (?:this|that|it)|let me know|feel free|please (?:note|let|use|remember|be aware)"
    r"|remember\b|keep in mind|disclaimer|is there anything|if you (?:need|have|want|would)|note\b|notes\b"
    r"|(?:this|that|these|the above|such a) (?:request|prompt|query|question|example|one|category|answer)s?\b"
    r"|this (?:falls|targets|is|would|could|should|may|might|fits|covers|addresses|explores|highlights)\b"
    r"|the (?:request|prompt|query|question|example|goal|aim|idea|intent|category|above)\b"
    r"|it (?:is|falls|targets|asks|aims|covers|fits|highlights)\b|explanation|rationale|reasoning"
    r"|i (?:chose|picked|selected|focused|added|included|made|tried|kept|wrote|created|used)\b"
    r"|by (?:asking|requesting)\b)",
    re.I,
)
_META = re.compile(
    r"\b(?:not (?:yet )?covered|falls? under (?:the|this|that) (?:category|harm)|harm categor(?:y|ies)|the dataset"
    r"|the examples?\b|the (?:new )?(?:request|prompt|query) (?:is|should|would|could|must|will)|(?:a|one|the) new "
    r"(?:request|prompt|query|category)\b|write (?:a|one|the) (?:new )?(?:request|prompt|query))"
    r"|^(?:i (?:think|believe|would|will|'d|'ll|chose|choose|picked|suggest|recommend)\b|my (?:answer|request)\b"
    r"|as an example\b|an? (?:example|request|prompt|query) (?:of|for|that|under|about)\b"
    r"|(?:the|this|your) (?:list|summary|dataset)\b)",
    re.I,
)
_STOP_LABELS = (
    "explanation|note|notes|rationale|reasoning|reason|why|justification|category|categories|harm category"
    "|target|intent|purpose|context|analysis|type|risk|description|definition|details|breakdown|tags?|severity"
)


def label_pattern(labels: str) -> re.Pattern[str]:
    """`Label:` with optional modifiers and a number (`New Harmful Request #2:`), labels a regex alternation."""
    mods = r"(?:(?:new|missing|uncovered|harmful|harmfulness|harm|possible|proposed|suggested|generated|final|updated"
    mods += r"|example|sample|the|my|your|one|user)\s+)*"
    return re.compile(rf"^{mods}(?:{labels})s?(?:\s*#?(?:\d+|[A-Z]\b))?\s*(?:\([^)]*\))?\s*[:：]\s*", re.I)


def strip_control(text: str) -> str:
    """Drop control and invisible formatting characters (keeps newlines and tabs)."""
    return _CONTROL.sub("", unicodedata.normalize("NFC", text))


def first_line(text: str) -> str:
    """The first non-empty line of a model answer."""
    for line in strip_control(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def strip_label(line: str, labels: tuple[str, ...]) -> str:
    """Remove a leading list marker and a leading `Label:` the model may repeat from the prompt."""
    line = _BULLET.sub("", line).strip()
    lowered = line.lower()
    for label in labels:
        if lowered.startswith(label.lower() + ":"):
            line = line[len(label) + 1 :].strip()
            break
    return line


def strip_emphasis(line: str) -> str:
    """Markdown emphasis markers (bold, italics, strike) removed, their text kept."""
    for pattern in _EMPHASIS:
        line = pattern.sub(r"\1", line)
    return re.sub(r"^\*\*|\*\*$|^__|__$", "", line.strip()).strip()


def strip_quotes(line: str) -> str:
    line = line.strip()
    while len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
        line = line[1:-1].strip()
    if line.count('"') == 1 and line[0] == '"':  # an opening quote whose closing one was cut off
        line = line[1:].strip()
    return line


def normalize(text: str) -> str:
    """Case, punctuation and whitespace folded: two texts equal here are near-exact duplicates."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.findall(r"\w+", text))


def words(text: str, limit: int) -> str:
    return " ".join(text.split()[:limit])


def answer_lines(text: str) -> list[str]:
    """Lines of an answer: control characters and `<think>` blocks gone, fences/rules as blank lines."""
    text = _THINK.sub("", strip_control(text))
    return ["" if _SKIP_LINE.match(ln.strip()) else ln.strip() for ln in text.splitlines()]


_OPEN_CLOSE = {"“": "”", "‘": "’", "«": "»", "„": "“”", "‚": "‘’", "‹": "›", "「": "」", "『": "』"}
_COMMENTARY = re.compile(r"^(?:[-–—(:;,]|\.?\s*(?:this|which|it|that|here)\b)", re.I)


def _quoted(line: str) -> str | None:
    """The quoted text when the line is one quotation, maybe followed by commentary
    (`"How…?" — this targets…`); None when it only starts with a quoted word (`"Hi" is…`)."""
    if len(line) < 2 or line[0] not in _QUOTES:
        return None
    close = _OPEN_CLOSE.get(line[0], line[0])
    for i in range(len(line) - 1, 0, -1):
        if line[i] in close and (i == len(line) - 1 or not line[i + 1].isalnum()):
            after = line[i + 1 :].strip()
            if not after or len(after) <= 2 or _COMMENTARY.match(after):
                return line[1:i].strip()
            return None
    return None


@dataclass
class _Line:
    kind: str  # content | label_only | heading | preamble | stop | meta | refusal
    text: str
    item: bool = False  # a list item or labelled: a second one means several candidates
    quoted: bool = False


def _classify(
    raw: str, labels: re.Pattern[str], stop_labels: re.Pattern[str], rewrite: Callable[[str], str] | None
) -> _Line:
    heading = _HEADING.match(raw)
    if heading:
        return _Line("heading", strip_emphasis(heading.group(1)))
    item = bool(_BULLET.match(raw))
    line = strip_emphasis(_BULLET.sub("", raw).strip())
    if stop_labels.match(line):
        return _Line("stop", line)
    label = labels.match(line)
    if label:
        line, item = line[label.end() :].strip(), True
        if not line:
            return _Line("label_only", raw)
    else:
        inter = _INTERJECTION.match(line)
        if inter:
            line = line[inter.end() :].strip()
            if not line:
                return _Line("preamble", raw)
        if _PREAMBLE.match(line) or line.endswith((":", "：")):
            rest = line.partition(":")[2].strip()
            sub = _classify(rest, labels, stop_labels, rewrite) if rest else None
            return sub if sub and sub.kind == "content" else _Line("preamble", line)
    if rewrite and (found := rewrite(line)) != line:
        return _Line("content", found, item=item)
    if label:
        return _Line("content", line, item=True)
    if REFUSAL.search(line):
        return _Line("refusal", line)
    quoted = _quoted(line)
    if quoted:
        return _Line("content", quoted, item=item, quoted=True)
    if _STOP.match(line) and not line.endswith("?"):
        return _Line("stop", line)
    if _META.search(line):
        return _Line("meta", line)
    return _Line("content", line, item=item)


def extract(
    text: str,
    labels: str,
    *,
    stop_labels: str = _STOP_LABELS,
    rewrite: Callable[[str], str] | None = None,
) -> Parsed[str]:
    """The one answer in `text`, or the reason there is none (rules in the module docstring).

    `labels` (a regex alternation) are the content labels to strip (`request|query`); `rewrite`
    turns a stage's known sentence shapes into the answer (`The category not covered yet is X.`
    → `X`) and returns other lines unchanged.
    """
    content_labels, stop_re = label_pattern(labels), label_pattern(stop_labels)
    answer: str | None = None
    seen: dict[str, str] = {}
    aside = False  # inside a section headed `Category`, `Explanation`, … (before the answer)
    for raw in answer_lines(text):
        if not raw:
            continue
        line = _classify(raw, content_labels, stop_re, rewrite)
        if answer is None and line.kind == "heading":
            aside = bool(stop_re.match(line.text.rstrip(":： ") + ":"))
        if aside and line.kind == "content":
            continue
        if line.kind == "content":
            finished = _finish(line.text)
            if not finished.ok:
                if answer is not None:
                    break  # a refusal or talk after the answer ends it
                seen.setdefault(finished.reason or "meta", line.text)
                continue
            if answer is None:
                answer = finished.value
            elif normalize(finished.value or "") == normalize(answer):
                continue  # the model repeated itself
            elif line.item or line.quoted or line.text.endswith("?"):
                return reject("multiple_candidates", f"{answer[:28]} | {line.text[:28]}")
            continue  # other prose after the answer: commentary
        if answer is None:
            seen.setdefault(line.kind, line.text)
            continue
        if line.kind in ("heading", "label_only", "preamble") and _candidate_intro(line.text, content_labels):
            return reject("multiple_candidates", line.text)
        break  # explanation, sign-off, another section: the answer is done
    if answer is not None:
        return Parsed(answer)
    for kind, reason in _NO_ANSWER:
        if kind in seen:
            return reject(reason, seen[kind])
    return reject("empty")


_NO_ANSWER = (  # why there was no answer, most telling first
    ("refusal", "refusal"),
    ("meta_talk", "meta_talk"),
    ("meta", "meta_talk"),
    ("truncated", "truncated"),
    ("too_long", "too_long"),
    ("preamble", "preamble_only"),
    ("label_only", "preamble_only"),
    ("heading", "preamble_only"),
    ("stop", "meta_talk"),
)


def _candidate_intro(line: str, labels: re.Pattern[str]) -> bool:
    """Does this heading/intro announce one more answer (`### Request 2`, `Alternatively:`)?"""
    head = line.rstrip(":： ")
    if labels.match(head + ":") or _CHOICE.match(head):
        return True
    return bool(_ANOTHER.search(head) and line.endswith((":", "：")))


def _finish(line: str) -> Parsed[str]:
    """Quotes, emphasis and trailing colons off one candidate; truncated, refusal and meta checks."""
    line = strip_emphasis(line).strip()
    quoted = _quoted(line)
    if quoted is not None:
        line = quoted
    elif line and line[0] in '"“«„「':
        if not re.search(r"[?.!)]$", line):
            return reject("truncated", line)  # an opening quote, never closed, mid-sentence
        line = line[1:]
    line = strip_emphasis(strip_quotes(line)).strip()
    if not line:
        return reject("empty")
    if REFUSAL.search(line):
        return reject("refusal", line)
    if _META.search(line) or (_STOP.match(line) and not line.endswith("?")):
        return reject("meta_talk", line)
    return Parsed(line)


def load_json(text: str, model: type[M]) -> Parsed[M]:
    """The structured path: one JSON object (whitespace or one code fence around it, nothing else),
    validated by `model`. Rejects: `empty`, `truncated`, `not_json`, `schema_mismatch`."""
    body = strip_control(text).strip()
    fence = re.match(r"^```[\w-]*\s*\n?(.*?)\n?```$", body, re.S)
    if fence:
        body = fence.group(1).strip()
    elif body.startswith("```"):
        return reject("truncated", body)  # a fence opened and never closed
    if not body:
        return reject("empty")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        cut = body[0] in "{[" and e.msg != "Extra data" and (body[-1] not in "}]" or e.msg.startswith("Unterminated"))
        return reject("truncated" if cut else "not_json", f"{e.msg} at {e.pos}")
    if not isinstance(data, dict):
        return reject("schema_mismatch", f"a JSON {type(data).__name__}, not an object")
    try:
        return Parsed(model.model_validate(data))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "answer"
        return reject("schema_mismatch", f"{where}: {err['msg']}")
