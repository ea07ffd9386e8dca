"""Lexical metrics that need no model: distinct-n and the near-duplicate rate, both incremental.

distinct-n (Li et al., 2016) is the number of unique word n-grams over the total number of
word n-grams in the whole dataset. Two prompts are near-duplicates when the Jaccard
similarity of their word-bigram sets is at least `NEAR_DUP_JACCARD`; the near-duplicate rate
is the share of rows that have at least one near-duplicate elsewhere in the dataset, so a
set of identical rows has rate 1. Words are lower-cased `\\w+` runs, so case and punctuation
changes do not make a prompt new.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import defaultdict
from collections.abc import Iterable

WORD_RE = re.compile(r"\w+")
NEAR_DUP_JACCARD = 0.7


def words(text: str) -> list[str]:
    return WORD_RE.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def shingles(text: str) -> frozenset[str]:
    """Word bigrams (the single word for one-word texts): the sets near-duplicates are judged on."""
    tokens = words(text)
    if len(tokens) < 2:
        return frozenset(tokens)
    return frozenset(f"{a} {b}" for a, b in itertools.pairwise(tokens))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class DistinctN:
    """Running distinct-n: adding rows costs O(their n-grams); the value is exact at all times."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen: set[tuple[str, ...]] = set()
        self.total = 0

    def add(self, texts: Iterable[str]) -> None:
        for text in texts:
            grams = ngrams(words(text), self.n)
            self.total += len(grams)
            self.seen.update(grams)

    @property
    def value(self) -> float:
        return len(self.seen) / self.total if self.total else 0.0


def _order(shingle: str) -> bytes:
    """A fixed global order of shingles (by hash), needed by prefix filtering."""
    return hashlib.blake2b(shingle.encode(), digest_size=8).digest()


class NearDuplicates:
    """Running near-duplicate rate, exact: prefix filtering finds every pair with Jaccard ≥ t.

    Each row indexes only the first |S| - ceil(t·|S|) + 1 of its shingles (in a fixed hash
    order); two sets with Jaccard ≥ t always share one of those, so only rows sharing a prefix
    shingle are compared. A new row costs O(candidates), not O(all rows).
    """

    def __init__(self, threshold: float = NEAR_DUP_JACCARD) -> None:
        self.threshold = threshold
        self.sets: list[frozenset[str]] = []
        self.index: dict[str, list[int]] = defaultdict(list)
        self.flagged: set[int] = set()
        self.empty: list[int] = []  # rows without words: near-duplicates of each other

    def _prefix(self, s: frozenset[str]) -> list[str]:
        keep = len(s) - math.ceil(self.threshold * len(s)) + 1
        return sorted(s, key=_order)[: max(keep, 1)]

    def add(self, texts: Iterable[str]) -> None:
        for text in texts:
            s = shingles(text)
            i = len(self.sets)
            prefix = self._prefix(s) if s else []
            candidates = {j for token in prefix for j in self.index.get(token, ())}
            if not s:
                candidates = set(self.empty)
                self.empty.append(i)
            for j in candidates:
                if jaccard(s, self.sets[j]) >= self.threshold:
                    self.flagged.update((i, j))
            self.sets.append(s)
            for token in prefix:
                self.index[token].append(i)

    @property
    def rows(self) -> int:
        return len(self.sets)

    @property
    def value(self) -> float:
        return len(self.flagged) / len(self.sets) if self.sets else 0.0


def distinct_n(texts: Iterable[str], n: int) -> float:
    d = DistinctN(n)
    d.add(texts)
    return d.value


def near_duplicate_rate(texts: Iterable[str], threshold: float = NEAR_DUP_JACCARD) -> float:
    nd = NearDuplicates(threshold)
    nd.add(texts)
    return nd.value
