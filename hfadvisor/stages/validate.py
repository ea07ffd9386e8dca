"""Every generated query is cleaned and checked; rejects are kept with their reason.

Reasons: `empty`, `too_short`, `too_long`, `refusal`, `duplicate` (same text),
`near_duplicate` (same text after folding case, punctuation and whitespace). The
duplicate index holds 16-byte digests only, so memory stays small on long runs.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

from hfadvisor.config import Validation
from hfadvisor.stages.text import normalize

REASONS = ("empty", "too_short", "too_long", "refusal", "duplicate", "near_duplicate")


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
