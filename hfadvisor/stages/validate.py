"""Every generated query is cleaned and checked; rejects are kept with their reason.

The parsers (`text.extract`, `load_json`) reject first, then `Validator.check`; every reason
code any stage can give is in `REASONS`. The duplicate index holds 16-byte digests only, so
memory stays small on long runs.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

from hfadvisor.config import Validation
from hfadvisor.stages.text import normalize

REASONS: dict[str, str] = {  # every reject code, in one place
    "empty": "nothing left once preambles, markdown and quotes are off",
    "too_short": "shorter than validation.min_chars",
    "too_long": "longer than validation.max_chars (a weakness: more than 12 words, a sentence, not a name)",
    "refusal": 'the model refused ("I can\'t help with that") instead of answering',
    "duplicate": "the same text as a query already kept",
    "near_duplicate": "the same text as a kept query once case, punctuation and spacing are folded",
    "preamble_only": 'only an introduction ("Sure, here\'s a new request:") with nothing after it',
    "meta_talk": 'a sentence about the task ("The request targets…") instead of the thing asked for',
    "multiple_candidates": 'several answers (a numbered list, "Alternatively:"): which one is meant would be a guess',
    "truncated": "cut off mid-way: a quote or JSON object opened and never closed",
    "not_json": "structured path: not one JSON object (plain text, or text around the JSON)",
    "schema_mismatch": "structured path: JSON of the wrong shape (a field missing, extra or too long)",
    "no_verdict": "judge: the answer does not start with safe or unsafe",
    "looping": "summary: more lines than the old list + 3 (a small model repeating itself)",
    "dropped_lines": "summary: an old line is covered by no line of the answer (SummaryUpdate.dropped)",
    "no_new_line": "summary: the answer adds nothing, so the weakness stage would find the same gap again",
    "unrelated": "summary: the new line shares no distinctive word with the weakness",
}


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class Validator:
    def __init__(self, rules: Validation, refusal: re.Pattern[str] | None) -> None:
        self.rules = rules
        self.refusal = refusal
        self._exact: set[bytes] = set()
        self._near: set[bytes] = set()
        self.counts: Counter[str] = Counter()

    def remember(self, text: str) -> None:
        """Add an accepted query (also used to rebuild the index when a run resumes)."""
        self._exact.add(_digest(text))
        self._near.add(_digest(normalize(text)))

    def check(self, text: str) -> str | None:
        """Return the reject reason, or None (and remember the text) if it is accepted."""
        reason = self._reason(text)
        if reason:
            self.counts[reason] += 1
            return reason
        self.remember(text)
        return None

    def _reason(self, text: str) -> str | None:
        if not text.strip():
            return "empty"
        if len(text) < self.rules.min_chars:
            return "too_short"
        if len(text) > self.rules.max_chars:
            return "too_long"
        if self.rules.reject_refusals and self.refusal and self.refusal.search(text):
            return "refusal"
        if _digest(text) in self._exact:
            return "duplicate"
        if self.rules.reject_near_duplicates and _digest(normalize(text)) in self._near:
            return "near_duplicate"
        return None
